"""Named reference architectures, stored as YAML in ``search_spaces/presets/``.

>>> from archlab import preset, list_presets
>>> "mobilediffusion" in list_presets()
True
>>> preset("sd15").channels
(320, 640, 1280, 1280)
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from archlab.arch.description import Description, load_description
from archlab.errors import ConfigError


def repo_root() -> Path:
    """The folder holding search_spaces/, latency_tables/ and studies/ (ARCHLAB_HOME overrides)."""
    env = os.environ.get("ARCHLAB_HOME")
    return Path(env) if env else Path(__file__).resolve().parents[2]


def presets_dir() -> Path:
    return repo_root() / "search_spaces" / "presets"


def list_presets() -> list[str]:
    return sorted(p.stem for p in presets_dir().glob("*.yaml"))


@lru_cache(maxsize=None)
def preset(name: str) -> Description:
    """The description registered as ``name``."""
    path = presets_dir() / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError("preset", f"unknown preset {name!r}; known: {', '.join(list_presets())}")
    return load_description(path)


def resolve(name_or_path: str | os.PathLike) -> Description:
    """A preset name (optionally ``preset:NAME``), or a path to a description file."""
    text = str(name_or_path)
    if text.startswith("preset:"):
        return preset(text.split(":", 1)[1])
    if text in list_presets():
        return preset(text)
    if text.endswith((".yaml", ".yml", ".json")) or os.sep in text:
        return load_description(text)
    raise ConfigError("architecture", f"{text!r} is neither a preset ({', '.join(list_presets())}) nor a .yaml/.json file")
