"""Reading user files: one place that turns I/O and YAML errors into one-line ConfigErrors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from archlab.errors import ConfigError


def read_yaml(path: str | Path) -> Any:
    """``yaml.safe_load`` of a file (YAML or JSON); a missing or malformed file names itself."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read: {exc.strerror or exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), f"not valid YAML/JSON: {str(exc).splitlines()[0]}") from None
