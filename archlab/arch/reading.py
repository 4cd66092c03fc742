"""Reading descriptions from plain data and files (YAML or JSON), every field checked by the one config reader."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any, Mapping

from archlab.arch.description import TOP_FIELDS, BLOCK_TYPES, Block, Description, Stage, TextTimeEmbedding, stage_names
from archlab.config import check_keys, read, read_value, read_yaml
from archlab.errors import ConfigError


def _block_from_data(data: Any, where: str, defaults: Mapping[str, Mapping[str, Any]]) -> Block:
    if isinstance(data, str):
        kind, values = data, {}
    elif isinstance(data, Mapping) and len(data) == 1:
        kind, values = next(iter(data.items()))
        values = values or {}
    else:
        raise ConfigError(where, f"a block is a kind ({', '.join(BLOCK_TYPES)}) or {{kind: {{field: value}}}}, got {data!r}")
    if kind not in BLOCK_TYPES:
        raise ConfigError(where, f"unknown block kind {kind!r}; allowed: {', '.join(BLOCK_TYPES)}")
    if not isinstance(values, Mapping):
        raise ConfigError(where, f"fields of a {kind} block must be a mapping, got {values!r}")
    return read(BLOCK_TYPES[kind], {**defaults.get(kind, {}), **values}, where)


def description_from_dict(data: Any) -> Description:
    """Build and validate a description from plain data (a parsed YAML or JSON file)."""
    if not isinstance(data, Mapping):
        raise ConfigError("", f"a description is a mapping with name, channels and stages, got {type(data).__name__}")
    check_keys(data, [*TOP_FIELDS, "defaults"], "", required=("name", "channels", "stages"))
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, Mapping):
        raise ConfigError("defaults", "must map a block kind to its default fields")
    check_keys(defaults, BLOCK_TYPES, "defaults")
    for kind, values in defaults.items():
        read(BLOCK_TYPES[kind], values, f"defaults.{kind}")
    channels = data["channels"]
    if not isinstance(channels, (list, tuple)):
        raise ConfigError("channels", f"must be a list of level widths, got {channels!r}")
    channels = read_value(tuple[int, ...], channels, "channels")
    stages_data = data["stages"]
    if not isinstance(stages_data, Mapping):
        raise ConfigError("stages", "must map stage names (down0, ..., mid, ..., up0) to {blocks: [...]}")
    stages = []
    for name, body in stages_data.items():
        where = f"stages.{name}"
        if not isinstance(body, Mapping) or set(body) - {"blocks"}:
            raise ConfigError(where, "a stage is {blocks: [...]}")
        blocks = body.get("blocks") or []
        if not isinstance(blocks, list):
            raise ConfigError(f"{where}.blocks", "must be a list")
        stages.append(Stage(str(name), tuple(_block_from_data(b, f"{where}.blocks[{i}]", defaults) for i, b in enumerate(blocks))))
    order = {n: i for i, n in enumerate(stage_names(len(channels)))}
    stages.sort(key=lambda s: order.get(s.name, len(order)))  # a mapping's order is not the user's intent
    hints = typing.get_type_hints(Description)
    kwargs = {k: read_value(hints[k], v, k) for k, v in data.items() if k in TOP_FIELDS and k not in ("stages", "channels", "addition")}
    if data.get("addition") is not None:
        kwargs["addition"] = read(TextTimeEmbedding, data["addition"], "addition")
    return Description(channels=tuple(channels), stages=tuple(stages), **kwargs)


def load_description(path: str | Path) -> Description:
    """Read a description from a YAML or JSON file (parsed safely; YAML reads both)."""
    data = read_yaml(path)
    if not isinstance(data, Mapping):
        raise ConfigError(str(path), f"a description is a mapping with name, channels and stages, got "
                          f"{'an empty file' if data is None else type(data).__name__}")
    return description_from_dict(data)
