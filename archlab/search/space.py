"""Search spaces: named categorical choices that decode into descriptions.

A space file (YAML) gives, per resolution level, the allowed channel widths, ResNet units,
transformer layers after each ResNet (down and up stage separately), self-attention on/off
(off: cross-attention only), separable convs on/off; the bottleneck's layers; the choices
shared by every transformer block (FF kind and ratio, shared KV, attention kind, head
width); and constraints (``max_params``, ``max_gflops``, ``min_params``, ``min_gflops``).

The decoding rule, SD's: each down stage has ``down_resnets`` ResNet units, each followed
by one transformer block of ``down_layers`` layers (none when 0), then a downsampler; the
up stage has one ResNet more, each followed by ``up_layers`` layers; the mid stage is
ResNet, transformer (``mid.layers``), ResNet.

Every choice has a name (``depth``, ``level2.channels``, ``mid.layers``,
``transformer.ff_ratio``); a candidate is the dict of the choices that are active for it
(``level3.*`` only when depth is 4). :meth:`SearchSpace.decode` turns it into a description,
:meth:`SearchSpace.sample` draws one with a numpy Generator, and
:meth:`SearchSpace.suggest` asks an Optuna trial for each choice, define-by-run.

>>> import numpy as np
>>> space = load_space("tiny")
>>> choices, desc = space.sample(np.random.default_rng(0))
>>> desc.channels[0]
32
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from archlab.arch.description import (
    ATTENTION_KINDS,
    FF_KINDS,
    Description,
    Downsample,
    ResnetBlock,
    Stage,
    TransformerBlock,
    Upsample,
)
from archlab.arch.presets import repo_root
from archlab.errors import ConfigError
from archlab.yamlio import read_yaml

LEVEL_CHOICES = ("channels", "down_resnets", "down_layers", "up_layers", "self_attention", "separable")
MID_CHOICES = ("layers", "separable")
TRANSFORMER_CHOICES = ("ff", "ff_ratio", "shared_kv", "attention", "head_dim")
CONSTRAINTS = ("max_params", "max_gflops", "min_params", "min_gflops")
BASE_FIELDS = ("in_channels", "out_channels", "text_dim", "text_tokens", "resolution", "time_dim", "norm_groups")
MAX_SAMPLE_TRIES = 1000  # bounded rejection sampling under constraints

Choices = dict[str, Any]


@dataclass(frozen=True)
class SearchSpace:
    name: str
    options: dict[str, tuple[Any, ...]]  # every choice name -> its allowed values, in order
    base: dict[str, Any] = field(default_factory=dict)
    constraints: dict[str, float] = field(default_factory=dict)
    max_depth: int = 4

    # ------------------------------------------------------------------ choices

    def active(self, depth: int) -> list[str]:
        """Choice names that matter for a candidate of ``depth`` levels, in asking order."""
        names = ["depth"]
        for level in range(depth):
            names += [f"level{level}.{c}" for c in LEVEL_CHOICES]
        names += [f"mid.{c}" for c in MID_CHOICES] + [f"transformer.{c}" for c in TRANSFORMER_CHOICES]
        return names

    def size(self) -> int:
        """How many architectures the space holds (constraints not applied)."""
        total = 0
        for depth in self.options["depth"]:
            total += math.prod(len(self.options[n]) for n in self.active(depth) if n != "depth")
        return total

    def pick(self, chooser: Callable[[str, tuple[Any, ...]], Any]) -> Choices:
        """Ask ``chooser(name, options)`` for each active choice, define-by-run."""
        choices: Choices = {"depth": chooser("depth", self.options["depth"])}
        for name in self.active(choices["depth"])[1:]:
            choices[name] = chooser(name, self.options[name])
        return choices

    # ------------------------------------------------------------------ decoding

    def decode(self, choices: Mapping[str, Any], name: str | None = None) -> Description:
        """The description a set of choices stands for (validated)."""
        depth = choices["depth"]
        for n in self.active(depth):
            if n not in choices:
                raise ConfigError(f"choices.{n}", "is missing")
            if choices[n] not in self.options[n]:
                raise ConfigError(f"choices.{n}", f"{choices[n]!r} is not one of {list(self.options[n])}")
        t = {c: choices[f"transformer.{c}"] for c in TRANSFORMER_CHOICES}

        def transformer(layers: int, self_attention: bool) -> TransformerBlock:
            return TransformerBlock(layers=layers, self_attention=self_attention, head_dim=t["head_dim"], ff=t["ff"],
                                    ff_ratio=float(t["ff_ratio"]), shared_kv=t["shared_kv"], attention=t["attention"])

        def units(level: int, resnets: int, layers: int) -> list[Any]:
            conv = "separable" if choices[f"level{level}.separable"] else "regular"
            blocks: list[Any] = []
            for _ in range(resnets):
                blocks.append(ResnetBlock(conv=conv))
                if layers:
                    blocks.append(transformer(layers, choices[f"level{level}.self_attention"]))
            return blocks

        stages = []
        for level in range(depth):
            blocks = units(level, choices[f"level{level}.down_resnets"], choices[f"level{level}.down_layers"])
            if level < depth - 1:
                blocks.append(Downsample())
            stages.append(Stage(f"down{level}", tuple(blocks)))
        mid_conv = "separable" if choices["mid.separable"] else "regular"
        mid: list[Any] = [ResnetBlock(conv=mid_conv)]
        if choices["mid.layers"]:
            mid.append(transformer(choices["mid.layers"], True))
        mid.append(ResnetBlock(conv=mid_conv))
        stages.append(Stage("mid", tuple(mid)))
        for level in reversed(range(depth)):
            blocks = units(level, choices[f"level{level}.down_resnets"] + 1, choices[f"level{level}.up_layers"])
            if level > 0:
                blocks.append(Upsample())
            stages.append(Stage(f"up{level}", tuple(blocks)))
        channels = tuple(choices[f"level{i}.channels"] for i in range(depth))
        return Description(name=name or f"{self.name}-candidate", channels=channels, stages=tuple(stages), **self.base)

    def feasible(self, desc: Description) -> str | None:
        """None when ``desc`` meets the space's constraints, else which one it breaks."""
        if not self.constraints:
            return None
        from archlab.cost.counting import count

        c = count(desc)
        values = {"params": c.params, "gflops": c.gflops}
        for key, bound in self.constraints.items():
            kind, what = key.split("_", 1)
            if (kind == "max" and values[what] > bound) or (kind == "min" and values[what] < bound):
                return f"{what} {values[what]:.4g} breaks {key} {bound:.4g}"
        return None

    def sample(self, rng: np.random.Generator, *, max_tries: int = MAX_SAMPLE_TRIES) -> tuple[Choices, Description]:
        """One feasible candidate drawn with ``rng`` (bounded retries, never an endless loop)."""
        last = ""
        for _ in range(max_tries):
            choices = self.pick(lambda name, opts: opts[int(rng.integers(len(opts)))])
            desc = self.decode(choices)
            problem = self.feasible(desc)
            if problem is None:
                return choices, desc
            last = problem
        raise ConfigError(f"{self.name}.constraints", f"no feasible architecture in {max_tries} draws (last: {last}); loosen the constraints")

    def samples(self, n: int, seed: int) -> list[tuple[Choices, Description]]:
        """``n`` distinct feasible candidates from one seeded generator."""
        rng = np.random.default_rng(seed)
        out: list[tuple[Choices, Description]] = []
        seen: set[str] = set()
        for _ in range(n * 50):
            if len(out) == n:
                break
            choices, desc = self.sample(rng)
            key = repr(sorted(choices.items()))
            if key not in seen:
                seen.add(key)
                out.append((choices, desc.replace(name=f"{self.name}-s{seed}-{len(out)}")))
        if len(out) < n:
            raise ConfigError(self.name, f"holds fewer than {n} distinct feasible architectures")
        return out

    def suggest(self, trial: Any) -> tuple[Choices, Description]:
        """Ask an Optuna trial for every active choice (categorical) and decode."""
        choices = self.pick(lambda name, opts: trial.suggest_categorical(name, list(opts)))
        return choices, self.decode(choices, name=f"{self.name}-trial{trial.number}")

    # ------------------------------------------------------------------ enumeration

    def stage_dependencies(self, stage: str, depth: int) -> list[str]:
        """The choices that determine the blocks (and their input shapes) of one stage."""
        last = depth - 1
        level = last if stage == "mid" else int(stage.lstrip("downup"))
        # level 0's width sets the time embedding every ResNet projects from
        deps = ["depth", "level0.channels"] + [f"transformer.{c}" for c in TRANSFORMER_CHOICES]
        if stage == "mid":
            return deps + ([f"level{last}.channels"] if last else []) + [f"mid.{c}" for c in MID_CHOICES]
        deps += [f"level{level}.{c}" for c in LEVEL_CHOICES if not (level == 0 and c == "channels")]
        if level > 1:
            deps.append(f"level{level - 1}.channels")  # the input width (down) and entry skip (up)
        if stage.startswith("up") and level < last:
            deps.append(f"level{level + 1}.channels")  # what comes up from below
        return deps

    def iter_stage_variants(self) -> Iterator[Description]:
        """Descriptions that together hold every distinct placed block of the space.

        For each depth and stage, only the choices that shape that stage are enumerated
        (the others stay at their first option), so this is linear in the number of stages,
        not the size of the space. Constraints are ignored: a superset of the keys.
        """
        for depth in self.options["depth"]:
            defaults = {n: self.options[n][0] for n in self.active(depth)}
            defaults["depth"] = depth
            names = [f"down{i}" for i in range(depth)] + ["mid"] + [f"up{i}" for i in range(depth)]
            for stage in names:
                deps = [d for d in self.stage_dependencies(stage, depth) if d != "depth"]
                for values in itertools.product(*(self.options[d] for d in deps)):
                    yield self.decode({**defaults, **dict(zip(deps, values))})


# ---------------------------------------------------------------------- loading


def _as_options(where: str, value: Any, check: Callable[[Any], bool], allowed: str) -> tuple[Any, ...]:
    values = value if isinstance(value, list) else [value]
    if not values:
        raise ConfigError(where, f"needs at least one option ({allowed})")
    for v in values:
        if not check(v):
            raise ConfigError(where, f"{v!r} is not allowed; options must be {allowed}")
    if len(set(map(repr, values))) != len(values):
        raise ConfigError(where, "lists an option twice")
    return tuple(values)


def _is_int(lo: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= lo


def _is_bool(v: Any) -> bool:
    return isinstance(v, bool)


def space_from_dict(data: Any, source: str = "space") -> SearchSpace:
    """Build and check a space; every problem names its field."""
    if not isinstance(data, Mapping):
        raise ConfigError(source, "a search space is a mapping with name, depth, levels, mid, transformer")
    allowed_top = ("name", "base", "depth", "levels", "mid", "transformer", "constraints")
    for key in data:
        if key not in allowed_top:
            raise ConfigError(str(key), f"unknown field; allowed: {', '.join(allowed_top)}")
    for key in ("name", "levels"):
        if key not in data:
            raise ConfigError(key, "is required")
    base = dict(data.get("base") or {})
    for key in base:
        if key not in BASE_FIELDS:
            raise ConfigError(f"base.{key}", f"unknown field; allowed: {', '.join(BASE_FIELDS)}")
    levels = data["levels"]
    if not isinstance(levels, list) or not levels:
        raise ConfigError("levels", "must be a non-empty list, one entry per resolution level (top first)")
    depth = _as_options("depth", data.get("depth", len(levels)), _is_int(1), f"level counts from 1 to {len(levels)}")
    if max(depth) > len(levels):
        raise ConfigError("depth", f"{max(depth)} levels asked but levels describes {len(levels)}")
    options: dict[str, tuple[Any, ...]] = {"depth": depth}
    level_rules: dict[str, tuple[Callable[[Any], bool], str, Any]] = {
        "channels": (_is_int(1), "positive integers", None),
        "down_resnets": (_is_int(1), "integers >= 1", [1]),
        "down_layers": (_is_int(0), "integers >= 0 (0: no transformer)", [0]),
        "up_layers": (_is_int(0), "integers >= 0 (0: no transformer)", [0]),
        "self_attention": (_is_bool, "true or false", [True]),
        "separable": (_is_bool, "true or false", [False]),
    }
    for i, level in enumerate(levels):
        if not isinstance(level, Mapping):
            raise ConfigError(f"levels[{i}]", "must be a mapping of choices")
        for key in level:
            if key not in level_rules:
                raise ConfigError(f"levels[{i}].{key}", f"unknown choice; allowed: {', '.join(level_rules)}")
        for key, (check, allowed, default) in level_rules.items():
            if key not in level and default is None:
                raise ConfigError(f"levels[{i}].{key}", "is required")
            options[f"level{i}.{key}"] = _as_options(f"levels[{i}].{key}", level.get(key, default), check, allowed)
    mid = data.get("mid") or {}
    for key in mid:
        if key not in MID_CHOICES:
            raise ConfigError(f"mid.{key}", f"unknown choice; allowed: {', '.join(MID_CHOICES)}")
    options["mid.layers"] = _as_options("mid.layers", mid.get("layers", [1]), _is_int(0), "integers >= 0")
    options["mid.separable"] = _as_options("mid.separable", mid.get("separable", [False]), _is_bool, "true or false")
    tr = data.get("transformer") or {}
    tr_rules: dict[str, tuple[Callable[[Any], bool], str, Any]] = {
        "ff": (lambda v: v in FF_KINDS, " | ".join(FF_KINDS), ["geglu"]),
        "ff_ratio": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0, "positive numbers", [4]),
        "shared_kv": (_is_bool, "true or false", [False]),
        "attention": (lambda v: v in ATTENTION_KINDS, " | ".join(ATTENTION_KINDS), ["softmax"]),
        "head_dim": (_is_int(1), "positive integers", [64]),
    }
    for key in tr:
        if key not in tr_rules:
            raise ConfigError(f"transformer.{key}", f"unknown choice; allowed: {', '.join(tr_rules)}")
    for key, (check, allowed, default) in tr_rules.items():
        options[f"transformer.{key}"] = _as_options(f"transformer.{key}", tr.get(key, default), check, allowed)
    constraints = dict(data.get("constraints") or {})
    for key, value in constraints.items():
        if key not in CONSTRAINTS:
            raise ConfigError(f"constraints.{key}", f"unknown constraint; allowed: {', '.join(CONSTRAINTS)}")
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"constraints.{key}", f"{value!r} is not a positive number")
    space = SearchSpace(name=str(data["name"]), options=options, base=base, constraints=constraints, max_depth=len(levels))
    _check_widths(space)
    return space


def _check_widths(space: SearchSpace) -> None:
    """Every width must decode with every transformer choice (heads, groups, FF ratio):
    refuse the space now rather than in the middle of a search."""
    for depth in space.options["depth"]:
        first = {n: space.options[n][0] for n in space.active(depth)}
        first["depth"] = depth
        for level in range(depth):
            for width, ratio, head_dim in itertools.product(space.options[f"level{level}.channels"],
                                                            space.options["transformer.ff_ratio"],
                                                            space.options["transformer.head_dim"]):
                choices = {**first, f"level{level}.channels": width, "transformer.ff_ratio": ratio, "transformer.head_dim": head_dim,
                           f"level{level}.down_layers": max(space.options[f"level{level}.down_layers"]),
                           f"level{level}.up_layers": max(space.options[f"level{level}.up_layers"])}
                if level == depth - 1:
                    choices["mid.layers"] = max(space.options["mid.layers"])
                try:
                    space.decode(choices)
                except ConfigError as exc:
                    raise ConfigError(f"levels[{level}].channels",
                                      f"{width} does not fit ff_ratio {ratio} / head_dim {head_dim} ({exc})") from None


def spaces_dir() -> Path:
    return repo_root() / "search_spaces"


def list_spaces() -> list[str]:
    return sorted(p.stem for p in spaces_dir().glob("*.yaml"))


def load_space(name_or_path: str | Path) -> SearchSpace:
    """A space by name (``search_spaces/NAME.yaml``) or path."""
    text = str(name_or_path)
    path = Path(text)
    if not path.suffix:
        path = spaces_dir() / f"{text}.yaml"
        if not path.is_file():
            raise ConfigError("space", f"unknown search space {text!r}; known: {', '.join(list_spaces())}")
    return space_from_dict(read_yaml(path), source=str(path))
