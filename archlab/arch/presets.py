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

from archlab import resources
from archlab.arch.description import Description
from archlab.arch.reading import load_description
from archlab.errors import ConfigError



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
    """A preset name (optionally ``preset:NAME``), or a path to a description file (one rule for which:
    :func:`archlab.resources.locate`)."""
    path = resources.locate("presets", name_or_path)
    return preset(path.stem) if path == resources.find("presets", path.stem) else load_description(path)
