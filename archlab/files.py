"""Writing files whole or not at all, and refusing an output that cannot be written before any work.

- :func:`check_output_file` / :func:`check_output_folder`: is this path writable as a file
  (as a folder)? Called by every command before its long work, so a read-only folder or a
  file where a folder belongs fails in the first second, not after an hour of training.
- :func:`write_text` / :func:`write_bytes`: a temporary name in the same folder, then a rename.
- :func:`staged_folder`: several files produced together (an export) are written into a
  hidden sibling folder and moved into place only when all of them exist; an interrupted
  run leaves the destination as it was.

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> write_text(d / "a.txt", "hello").read_text()
'hello'
>>> check_output_file(d)
Traceback (most recent call last):
...
archlab.errors.ConfigError: ...: is a folder; give a file name inside it
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Iterator

from archlab.errors import ConfigError


def _nearest_existing(path: Path) -> Path:
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _check_parent(path: Path) -> None:
    anchor = _nearest_existing(path.absolute().parent)
    if not anchor.is_dir():
        raise ConfigError(str(path), f"cannot be created: {anchor} is a file, not a folder")
    if not os.access(anchor, os.W_OK | os.X_OK):
        raise ConfigError(str(path), f"cannot be written: {anchor} is not writable (choose another place)")


def check_output_file(path: str | Path) -> Path:
    """``path`` can be written as a file (it is not a folder; its folder exists or can be made, and is writable)."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(str(path), "is a folder; give a file name inside it")
    if path.exists() and not os.access(path, os.W_OK):
        raise ConfigError(str(path), "exists and is not writable")
    _check_parent(path)
    return path


def check_output_folder(path: str | Path) -> Path:
    """``path`` can hold output files (it is a writable folder, or can be made one)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(str(path), "is a file; give a folder")
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise ConfigError(str(path), "is not writable (choose another folder)")
        return path
    _check_parent(path)
    return path


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` whole: a temporary file beside it, flushed, then renamed over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_text(path: str | Path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def staged_folder(out: str | Path) -> Iterator[Path]:
    """Yield a hidden folder beside ``out`` to write into; on success move each of its entries into ``out`` (replacing
    any of the same name), on failure or interruption remove it and leave ``out`` untouched."""
    out = check_output_folder(out)
    stage = out.absolute().parent / f".{out.name}.partial-{os.getpid()}"
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    try:
        yield stage
        out.mkdir(parents=True, exist_ok=True)
        for entry in stage.iterdir():
            target = out / entry.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            os.replace(entry, target)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
