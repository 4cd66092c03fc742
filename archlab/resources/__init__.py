"""Files shipped inside the package: reference presets, search spaces, latency tables.

They are package data, so an installed wheel has them as a checkout does; the repository's
top-level ``search_spaces/`` and ``latency_tables/`` are links to these folders, where
users read them and write their own. A name (``mobilediffusion``, ``x86-2core_torch-cpu``)
resolves here; a path is read as it is.

>>> "mobilediffusion" in names("spaces") and "sd15" in names("presets")
True
"""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

from archlab.errors import ConfigError

# kind -> (folder inside this package, file suffix, the word for one, the prefix that forces a name)
KINDS: dict[str, tuple[str, str]] = {
    "presets": ("search_spaces/presets", ".yaml"),
    "spaces": ("search_spaces", ".yaml"),
    "tables": ("latency_tables", ".csv"),
}
_WORDS = {"presets": ("preset", "preset:"), "spaces": ("search space", "space:"), "tables": ("latency table", "table:")}
PATH_SUFFIXES = (".yaml", ".yml", ".json", ".csv", ".parquet", ".safetensors", ".bin", ".pt")


def looks_like_path(text: str, base: Path | None = None) -> bool:
    """The one rule for "a name or a path?": a path has a folder separator, starts with ``.`` or ``~``, ends
    with a file suffix, or names a file that exists beside ``base`` (the folder of the file that mentions it)."""
    if os.sep in text or "/" in text or text.startswith((".", "~")) or text.lower().endswith(PATH_SUFFIXES):
        return True
    return base is not None and (base / text).exists()


def locate(kind: str, name_or_path: str | os.PathLike) -> Path:
    """A path as given, or the packaged file of ``kind`` by name (``preset:NAME``, ``space:NAME``, ``table:NAME``
    force a name). An unknown name lists the known ones; a missing path says whether a packaged name was meant."""
    word, prefix = _WORDS[kind]
    text = str(name_or_path)
    forced = text.startswith(prefix)
    if forced:
        text = text[len(prefix):]
    if not forced and looks_like_path(text):
        path = Path(text).expanduser()
        if not path.exists() and find(kind, path.stem) is not None:
            raise ConfigError(str(path), f"no such file; the shipped {word} is named {path.stem!r} (without a suffix)")
        return path
    found = find(kind, text)
    if found is None:
        raise ConfigError(word.split()[-1], f"unknown {word} {text!r}; known: {', '.join(names(kind))} (or give a file path)")
    return found


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
