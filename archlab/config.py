"""One reader for every file archlab reads: typed, frozen dataclasses from YAML or JSON.

A file kind (a study, an evolve run, a search space, a quality section...) is a frozen
dataclass with typed fields. :func:`read` turns parsed YAML into it and is the only code
that checks a file's structure:

- a key that is not a field is refused, naming the allowed ones;
- a missing field without a default is refused as required;
- types are checked from the annotations (``int``, ``float``, ``bool``, ``str``,
  ``Literal[...]`` choices, ``X | None``, ``tuple[X, ...]``, ``dict[str, X]``, nested
  dataclasses); a tuple field also takes a single value;
- defaults are the dataclass's own, written once;
- value rules live in the dataclass's ``__post_init__`` (through :func:`require`), so they
  hold for objects made in Python too; the reader adds the field's path to their message.

Paths in a file are relative to the file: a field typed :data:`FilePath` is resolved
against the file's folder, a :data:`NameOrPath` field only when it looks like a path (a
registry name such as ``mobilediffusion`` stays a name).

>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class Budget:
...     trials: int = 20
...     timeout_s: float | None = None
...     def __post_init__(self):
...         require(self.trials >= 1, "trials", f"{self.trials} is not a positive integer")
>>> read(Budget, {"trials": 3})
Budget(trials=3, timeout_s=None)
>>> read(Budget, {"trails": 3}, "budget")
Traceback (most recent call last):
...
archlab.errors.ConfigError: budget.trails: unknown field; allowed: trials, timeout_s
>>> read(Budget, {"trials": 0}, "budget")
Traceback (most recent call last):
...
archlab.errors.ConfigError: budget.trials: 0 is not a positive integer
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Iterable, Literal, Mapping, TypeVar, Union, get_args, get_origin

import yaml

from archlab.errors import ConfigError
from archlab.resources import looks_like_path

T = TypeVar("T")

# markers for string fields that name files (see the module docstring)
_FILE = "archlab:file-path"
_NAME_OR_PATH = "archlab:name-or-path"
FilePath = Annotated[str, _FILE]
NameOrPath = Annotated[str, _NAME_OR_PATH]
# a field with this metadata is set by archlab (e.g. the file a config came from), never read from a file
INTERNAL = {"archlab_internal": True}


def require(ok: bool, field: str, message: str) -> None:
    """Raise :class:`ConfigError` for ``field`` unless ``ok``: the value rules of a config class."""
    if not ok:
        raise ConfigError(field, message)


def join(where: str, field: str) -> str:
    """``"quality.train" + "steps" -> "quality.train.steps"``; index paths stay glued (``a[0]``)."""
    if not where:
        return field
    if not field:
        return where
    return where + field if field.startswith("[") else f"{where}.{field}"


def check_keys(data: Mapping[str, Any], allowed: Iterable[str], where: str, *, required: Iterable[str] = ()) -> None:
    """Refuse keys outside ``allowed`` (listing them) and missing ``required`` ones."""
    allowed = list(allowed)
    for key in data:
        if key not in allowed:
            raise ConfigError(join(where, str(key)), f"unknown field; allowed: {', '.join(allowed)}")
    for key in required:
        if key not in data:
            raise ConfigError(join(where, key), "is required")


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (YAML lets the last one win silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, typing.Hashable) and key in seen:
                mark = key_node.start_mark
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r} (line {seen[key] + 1} and "
                                                        f"line {mark.line + 1}): give it once", mark)
            if isinstance(key, typing.Hashable):
                seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str, where: str) -> Any:
    """Parsed YAML or JSON (safe: plain data only); a malformed text or a duplicate key names the place."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(where, f"not valid YAML/JSON{at}: {problem}") from None


def read_yaml(path: str | Path) -> Any:
    """A YAML or JSON file, parsed safely; a missing, binary or malformed file names itself."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(str(path), "is not a text file (YAML or JSON, UTF-8); is it the file you meant?") from None
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read: {exc.strerror or exc}") from None
    return parse_yaml(text, str(path))


def load(cls: type[T], path: str | Path, **internal: Any) -> T:
    """Read a file of kind ``cls``; relative paths in it are taken from the file's folder."""
    path = Path(path)
    data = read_yaml(path)
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(str(path), f"must be a mapping of fields, got {_kind(data)}")
    return read(cls, data, "", base=path.resolve().parent, internal=internal)


def read(cls: type[T], data: Any, where: str = "", *, base: Path | None = None, internal: Mapping[str, Any] | None = None) -> T:
    """``data`` (parsed YAML) as an instance of the dataclass ``cls``; see the module docstring."""
    return _parse(cls, data, where, base, dict(internal or {}))


def read_value(tp: Any, value: Any, where: str) -> Any:
    """One value checked against a type annotation (``int``, ``tuple[int, ...]``, ``int | None``...), as fields are."""
    return _parse(tp, value, where, None, {})


# --------------------------------------------------------------------------- internals


@functools.lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


def _describe(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Annotated:
        return _describe(get_args(tp)[0])
    if origin is Literal:
        return " | ".join(map(str, get_args(tp)))
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in get_args(tp) if a is not type(None))
    if origin is tuple:
        return f"a list of {_describe(get_args(tp)[0])}"
    if origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping of fields"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(tp, getattr(tp, "__name__", str(tp)))


def _kind(value: Any) -> str:
    """What a parsed value is, in words (``an empty file`` for None)."""
    if value is None:
        return "an empty file"
    return {list: "a list", str: "a string", int: "a number", float: "a number", bool: "true or false"}.get(type(value),
                                                                                                        type(value).__name__)


def _resolve(value: str, base: Path | None) -> str:
    p = Path(value).expanduser()
    if p.is_absolute() or base is None:
        return str(p)
    return str((base / p).resolve())


def _parse(tp: Any, value: Any, where: str, base: Path | None, internal: dict[str, Any]) -> Any:
    origin = get_origin(tp)
    if origin is Annotated:
        inner, *marks = get_args(tp)
        out = _parse(inner, value, where, base, internal)
        if isinstance(out, str) and _FILE in marks:
            return _resolve(out, base)
        if isinstance(out, str) and _NAME_OR_PATH in marks and looks_like_path(out, base):
            return _resolve(out, base)
        return out
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        options = get_args(tp)
        if value is None:
            if type(None) in options:
                return None
            raise ConfigError(where, f"is required ({_describe(tp)})")
        real = [o for o in options if o is not type(None)]
        if len(real) == 1:
            return _parse(real[0], value, where, base, internal)
        for option in real:  # e.g. int | str: the first that takes the value
            try:
                return _parse(option, value, where, base, internal)
            except ConfigError:
                continue
        raise ConfigError(where, f"{value!r} is not {_describe(tp)}")
    if origin is Literal:
        choices = get_args(tp)
        if not any(value == c and type(value) is type(c) for c in choices):  # True is not 1
            raise ConfigError(where, f"{value!r} is not one of {', '.join(map(str, choices))}")
        return value
    if origin is tuple:
        item = get_args(tp)[0]
        values = value if isinstance(value, (list, tuple)) else [value]
        return tuple(_parse(item, v, f"{where}[{i}]", base, internal) for i, v in enumerate(values))
    if origin is dict:
        key_tp, item = get_args(tp)
        if not isinstance(value, Mapping):
            raise ConfigError(where, f"must be a mapping, got {value!r}")
        return {_parse(key_tp, k, where, base, internal): _parse(item, v, join(where, str(k)), base, internal)
                for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return _parse_dataclass(tp, value, where, base, internal)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(where, f"{value!r} is not true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(where, f"{value!r} is not an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(where, f"{value!r} is not a number")
        if not math.isfinite(value):
            raise ConfigError(where, f"{value!r} is not a finite number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(where, f"{value!r} is not a string")
        return value
    raise TypeError(f"archlab.config cannot read a field of type {tp!r} ({where})")


def _parse_dataclass(cls: type, value: Any, where: str, base: Path | None, internal: dict[str, Any]) -> Any:
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise ConfigError(where, f"must be a mapping of fields, got {value!r}")
    fields = [f for f in dataclasses.fields(cls) if f.init]
    public = [f.name for f in fields if not f.metadata.get("archlab_internal")]
    required = [f.name for f in fields if f.name in public and f.default is dataclasses.MISSING
                and f.default_factory is dataclasses.MISSING]
    check_keys(value, public, where, required=required)
    hints = _hints(cls)
    kwargs = {name: _parse(hints[name], value[name], join(where, name), base, {}) for name in public if name in value}
    kwargs.update({k: v for k, v in internal.items() if k in {f.name for f in fields}})
    try:
        return cls(**kwargs)
    except ConfigError as exc:  # a value rule from __post_init__: prefix the path
        raise ConfigError(join(where, exc.field), exc.message) from None


def to_data(obj: Any) -> Any:
    """A config object as plain data (mappings, lists, scalars) that :func:`read` accepts back."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_data(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if f.init and not f.metadata.get("archlab_internal")}
    if isinstance(obj, (list, tuple)):
        return [to_data(v) for v in obj]
    if isinstance(obj, Mapping):
        return {k: to_data(v) for k, v in obj.items()}
    return obj
