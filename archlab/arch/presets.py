"""Named reference architectures, shipped as YAML in the package (``search_spaces/presets/``).

>>> from archlab import preset, presets
>>> "mobilediffusion" in presets()
True
>>> preset("sd15").channels
(320, 640, 1280, 1280)
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from archlab import resources
from archlab.arch.description import Description, load_description
from archlab.errors import ConfigError

DESCRIPTION_SUFFIXES = (".yaml", ".yml", ".json")


def presets() -> list[str]:
    """The registered preset names, sorted."""
    return resources.names("presets")


@lru_cache(maxsize=None)
def preset(name: str) -> Description:
    """The description registered as ``name``."""
    path = resources.find("presets", name)
    if path is None:
        raise ConfigError("preset", f"unknown preset {name!r}; known: {', '.join(presets())}")
    return load_description(path)


def resolve(name_or_path: str | os.PathLike) -> Description:
    """A preset name (optionally ``preset:NAME``), or a path to a description file."""
    text = str(name_or_path)
    if text.startswith("preset:"):
        return preset(text.split(":", 1)[1])
    if text in presets():
        return preset(text)
    if text.endswith(DESCRIPTION_SUFFIXES) or os.sep in text:
        return load_description(Path(text))
    raise ConfigError("architecture", f"{text!r} is neither a preset ({', '.join(presets())}) nor a .yaml/.json file")
