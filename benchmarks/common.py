"""What the benchmarks share: the provenance every results file records (command, commit, host, date) and the
one way results are written (whole, with their experiment folder's manifest)."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def provenance() -> dict[str, Any]:
    """The command line, the commit (and whether the tree had uncommitted changes), the host and the UTC date."""
    import torch

    from archlab.cost.backends.base import cpu_name

    return {"command": " ".join([Path(sys.executable).name, *sys.argv]), "commit": _git("rev-parse", "HEAD"),
            "uncommitted_changes": bool(_git("status", "--porcelain", "--untracked-files=no")),
            "host": {"name": platform.node(), "cpu": cpu_name(), "cores": os.cpu_count(), "torch": torch.__version__,
                     "python": platform.python_version()},
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}


def write_result(path: str | Path, data: Any) -> Path:
    """Write a results file whole (a temporary name, then a rename) and record how it was made in the
    ``manifest.json`` of its experiment folder: command, commit, host, date and archlab version."""
    import json

    from archlab.files import write_text

    path = Path(path)
    write_text(path, json.dumps(data, indent=1, default=str) + "\n")
    record(path)
    return path


def record(path: str | Path) -> None:
    """Name ``path`` in its folder's ``manifest.json`` with how it was made (for files a library wrote)."""
    import json

    from archlab.files import write_text

    path = Path(path)
    manifest_path = path.parent / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"experiment": path.parent.name, "runs": {}}
    manifest["runs"][path.name] = {**provenance(), "archlab_version": archlab_version()}
    write_text(manifest_path, json.dumps(manifest, indent=1) + "\n")


def drop_checkpoint(folder: str | Path) -> None:
    """Remove a finished run's training checkpoint (and its folder when that empties). A checkpoint is
    hundreds of MB for the larger proxies; kept for every finished run of a benchmark they filled the disk."""
    folder = Path(folder)
    (folder / "checkpoint.safetensors").unlink(missing_ok=True)
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


def archlab_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("archlab")
    except PackageNotFoundError:
        return "not installed"
