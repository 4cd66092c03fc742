"""Files shipped inside the package: reference presets, search spaces, latency tables.

They are package data, so an installed wheel has them as a checkout does; the repository's
top-level ``search_spaces/`` and ``latency_tables/`` are links to these folders, where
users read them and write their own. A name (``mobilediffusion``, ``x86-2core_torch-cpu``)
resolves here; a path is read as it is.

>>> "mobilediffusion" in names("spaces") and "sd15" in names("presets")
True
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

# kind -> (folder inside this package, file suffix)
KINDS: dict[str, tuple[str, str]] = {
    "presets": ("search_spaces/presets", ".yaml"),
    "spaces": ("search_spaces", ".yaml"),
    "tables": ("latency_tables", ".csv"),
}


def folder(kind: str) -> Path:
    """The packaged folder of ``kind`` (presets, spaces or tables)."""
    sub, _ = KINDS[kind]
    return Path(str(files(__name__).joinpath(sub)))


def names(kind: str) -> list[str]:
    """Names of the packaged files of ``kind``, sorted."""
    _, suffix = KINDS[kind]
    return sorted(p.stem for p in folder(kind).glob(f"*{suffix}"))


def find(kind: str, name: str) -> Path | None:
    """The packaged file ``name`` of ``kind``, or None."""
    _, suffix = KINDS[kind]
    path = folder(kind) / f"{name}{suffix}"
    return path if path.is_file() else None
