"""Search spaces: named categorical choices that decode into descriptions.

A space file (YAML, read into :class:`SpaceFile`) gives, per resolution level, the allowed
channel widths, ResNet units, transformer layers after each ResNet (down and up stage
separately), self-attention on/off (off: cross-attention only), separable convs on/off; the
bottleneck's layers; the choices shared by every transformer block (FF kind and ratio,
shared KV, attention kind, head width); and constraints (``max_params``, ``max_gflops``,
``min_params``, ``min_gflops``). Each choice takes one value or a list of them.

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

import functools
import itertools
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Mapping

import numpy as np

from archlab import resources
from archlab.arch.description import (Description, Downsample, ResnetBlock, Stage, TextTimeEmbedding, TransformerBlock, Upsample,
                                      stage_level)
from archlab.config import check_keys, load, read, read_value, require
from archlab.cost.predict import Predictor
from archlab.errors import ConfigError

LEVEL_CHOICES = ("channels", "down_resnets", "down_layers", "up_layers", "self_attention", "separable")
MID_CHOICES = ("layers", "separable")
TRANSFORMER_CHOICES = ("ff", "ff_ratio", "shared_kv", "attention", "head_dim")
# SnapGen's axes: a choice only where a space file gives it other options than this default, so that older
# spaces keep the same choices (and their studies the same parameters)
OPTIONAL_LEVEL_CHOICES = {"expansion": 1.0, "first": "resnet"}
OPTIONAL_TRANSFORMER_CHOICES = {"kv_heads": None, "qk_norm": "none", "kv_compression": 1}
BASE_FIELDS = ("in_channels", "out_channels", "text_dim", "text_tokens", "resolution", "time_dim", "norm_groups", "addition")
MAX_SAMPLE_TRIES = 1000  # bounded rejection sampling under constraints

Choices = dict[str, Any]
_DOWN, _UP = Downsample(), Upsample()


# ---------------------------------------------------------------------- the file


def _options(where: str, values: tuple, lowest: int | None = None) -> None:
    require(len(values) > 0, where, "needs at least one option")
    require(len(set(map(repr, values))) == len(values), where, "lists an option twice")
    if lowest is not None:
        for v in values:
            require(v >= lowest, where, f"{v!r} is not allowed; options must be integers >= {lowest}")


@dataclass(frozen=True)
class LevelOptions:
    """The choices of one resolution level (level 0 is the latent resolution)."""

    channels: tuple[int, ...]
    down_resnets: tuple[int, ...] = (1,)
    down_layers: tuple[int, ...] = (0,)  # transformer layers after each down ResNet; 0: no transformer
    up_layers: tuple[int, ...] = (0,)
    self_attention: tuple[bool, ...] = (True,)  # false: cross-attention only at this level
    separable: tuple[bool, ...] = (False,)
    expansion: tuple[float, ...] = (1.0,)  # separable ResNets' expansion ratio (SnapGen: 2); 1 where convs are regular
    first: tuple[Literal["resnet", "cross"], ...] = ("resnet",)  # cross: the down stage's first ResNet becomes a
    # cross-attention + FF block (SnapGen's text conditioning from stage 1)

    def __post_init__(self) -> None:
        _options("channels", self.channels, 1)
        _options("expansion", self.expansion, 1)
        _options("first", self.first)
        _options("down_resnets", self.down_resnets, 1)
        for name in ("down_layers", "up_layers"):
            _options(name, getattr(self, name), 0)
        _options("self_attention", self.self_attention)
        _options("separable", self.separable)


@dataclass(frozen=True)
class MidOptions:
    layers: tuple[int, ...] = (1,)  # the bottleneck transformer's layers; 0: ResNet, ResNet
    separable: tuple[bool, ...] = (False,)

    def __post_init__(self) -> None:
        _options("layers", self.layers, 0)
        _options("separable", self.separable)


@dataclass(frozen=True)
class TransformerOptions:
    """Choices every transformer block of a candidate shares."""

    ff: tuple[Literal["geglu", "swiglu", "gelu", "swish"], ...] = ("geglu",)
    ff_ratio: tuple[float, ...] = (4.0,)
    shared_kv: tuple[bool, ...] = (False,)
    attention: tuple[Literal["softmax", "relu"], ...] = ("softmax",)
    head_dim: tuple[int, ...] = (64,)
    kv_heads: tuple[int | None, ...] = (None,)  # key/value heads: null as many as query heads, 1 multi-query
    qk_norm: tuple[Literal["none", "rms", "layer"], ...] = ("none",)
    kv_compression: tuple[int, ...] = (1,)  # self-attention keys/values from an s x s stride-s conv (where it has SA)

    def __post_init__(self) -> None:
        for name in TRANSFORMER_CHOICES:
            _options(name, getattr(self, name), 1 if name == "head_dim" else None)
        _options("kv_heads", tuple(v for v in self.kv_heads if v is not None) or (1,), 1)
        _options("qk_norm", self.qk_norm)
        _options("kv_compression", self.kv_compression, 1)
        for v in self.ff_ratio:
            require(v > 0, "ff_ratio", f"{v!r} is not allowed; options must be positive numbers")


@dataclass(frozen=True)
class Constraints:
    max_params: float | None = None
    max_gflops: float | None = None
    min_params: float | None = None
    min_gflops: float | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            require(v is None or v > 0, f.name, f"{v!r} is not a positive number")

    def as_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


@dataclass(frozen=True)
class SpaceFile:
    """A search space file as written (see the module docstring)."""

    name: str
    levels: tuple[LevelOptions, ...]
    depth: tuple[int, ...] = ()  # level counts to search over; default: all the levels listed
    base: dict[str, Any] = field(default_factory=dict)  # description fields every candidate shares (addition: SDXL's)
    mid: MidOptions = field(default_factory=MidOptions)
    transformer: TransformerOptions = field(default_factory=TransformerOptions)
    constraints: Constraints = field(default_factory=Constraints)

    def __post_init__(self) -> None:
        require(len(self.levels) > 0, "levels", "must be a non-empty list, one entry per resolution level (top first)")
        check_keys(self.base, BASE_FIELDS, "base")
        for d in self.depth:
            require(1 <= d <= len(self.levels), "depth", f"{d} levels asked but levels describes {len(self.levels)}")


# ---------------------------------------------------------------------- decoding (memoised: candidates share blocks)


@functools.lru_cache(maxsize=None)
def _resnet(conv: str, expansion: float = 1.0) -> ResnetBlock:
    return ResnetBlock(conv=conv, expansion=float(expansion) if conv == "separable" else 1.0)


@functools.lru_cache(maxsize=None)
def _transformer(layers: int, self_attention: bool, ff: str, ff_ratio: float, shared_kv: bool, attention: str,
                 head_dim: int, kv_heads: int | None = None, qk_norm: str = "none", kv_compression: int = 1,
                 cross_attention: bool = True) -> TransformerBlock:
    return TransformerBlock(layers=layers, self_attention=self_attention, cross_attention=cross_attention, head_dim=head_dim,
                            ff=ff, ff_ratio=float(ff_ratio), shared_kv=shared_kv, attention=attention, kv_heads=kv_heads,
                            qk_norm=qk_norm, kv_compression=kv_compression if self_attention else 1)


@functools.lru_cache(maxsize=1 << 16)
def _level_stage(name: str, resnets: int, layers: int, self_attention: bool, separable: bool, t: tuple,
                 resampler: Downsample | Upsample | None, expansion: float = 1.0, first: str = "resnet") -> Stage:
    """A down or up stage: ``resnets`` x (ResNet, transformer of ``layers`` layers), then the resampler; with
    ``first`` cross, a down stage's first ResNet is a one-layer cross-attention + FF block."""
    resnet = _resnet("separable" if separable else "regular", expansion)
    unit = (resnet, _transformer(layers, self_attention, *t)) if layers else (resnet,)
    blocks = unit * resnets
    if first == "cross" and name.startswith("down"):
        blocks = (_transformer(1, False, *t),) + blocks[1:]
    return Stage(name, blocks + ((resampler,) if resampler is not None else ()))


@functools.lru_cache(maxsize=1 << 12)
def _mid_stage(layers: int, separable: bool, t: tuple, expansion: float = 1.0) -> Stage:
    """ResNet, transformer of ``layers`` layers (none when 0), ResNet."""
    resnet = _resnet("separable" if separable else "regular", expansion)
    return Stage("mid", (resnet, _transformer(layers, True, *t), resnet) if layers else (resnet, resnet))


@dataclass(frozen=True)
class SearchSpace:
    name: str
    options: dict[str, tuple[Any, ...]]  # every choice name -> its allowed values, in order
    base: dict[str, Any] = field(default_factory=dict)
    constraints: dict[str, float] = field(default_factory=dict)
    max_depth: int = 4

    # ------------------------------------------------------------------ choices

    def active(self, depth: int) -> tuple[str, ...]:
        """Choice names that matter for a candidate of ``depth`` levels, in asking order (an optional SnapGen
        choice only where this space gives it options)."""
        return tuple(n for n in _active(depth) if n in self.options or not _optional(n))

    def _choice(self, choices: Mapping[str, Any], name: str) -> Any:
        return choices[name] if name in self.options else _default(name)

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
        depth = choices.get("depth")
        if depth not in self.options["depth"]:
            raise ConfigError("choices.depth", f"{depth!r} is not one of {list(self.options['depth'])}")
        for n in self.active(depth):
            if n not in choices:
                raise ConfigError(f"choices.{n}", "is missing")
            if choices[n] not in self.options[n]:
                raise ConfigError(f"choices.{n}", f"{choices[n]!r} is not one of {list(self.options[n])}")
        t = tuple(self._choice(choices, f"transformer.{c}") for c in (*TRANSFORMER_CHOICES, *OPTIONAL_TRANSFORMER_CHOICES))
        stages = []
        last = depth - 1
        for level in range(depth):
            stages.append(_level_stage(f"down{level}", choices[f"level{level}.down_resnets"], choices[f"level{level}.down_layers"],
                                       choices[f"level{level}.self_attention"], choices[f"level{level}.separable"], t,
                                       _DOWN if level < depth - 1 else None, self._choice(choices, f"level{level}.expansion"),
                                       self._choice(choices, f"level{level}.first")))
        stages.append(_mid_stage(choices["mid.layers"], choices["mid.separable"], t, self._choice(choices, f"level{last}.expansion")))
        for level in reversed(range(depth)):
            stages.append(_level_stage(f"up{level}", choices[f"level{level}.down_resnets"] + 1, choices[f"level{level}.up_layers"],
                                       choices[f"level{level}.self_attention"], choices[f"level{level}.separable"], t,
                                       _UP if level > 0 else None, self._choice(choices, f"level{level}.expansion")))
        channels = tuple(choices[f"level{i}.channels"] for i in range(depth))
        return Description(name=name or f"{self.name}-candidate", channels=channels, stages=tuple(stages), **self.base)

    def encode(self, desc: Description) -> Choices:
        """Choices that decode to ``desc`` (to enqueue a known design in a study); one line naming the first
        choice it does not fit when it is not a member of this space. A choice that changes nothing in ``desc``
        (self-attention at a level without transformers) takes its first option."""
        depth = desc.levels
        if depth not in self.options["depth"]:
            raise ConfigError("enqueue", f"{desc.name} is not a member of the space {self.name}: it has {depth} levels, "
                              f"the space {list(self.options['depth'])}")
        choices: Choices = {"depth": depth}
        transformers = [b for s in desc.stages for b in s.blocks if isinstance(b, TransformerBlock)]
        t0 = transformers[0] if transformers else TransformerBlock()
        for level in range(depth):
            down, up = desc.stage(f"down{level}").blocks, desc.stage(f"up{level}").blocks
            resnets = [b for b in down if isinstance(b, ResnetBlock)]
            first_cross = bool(down) and isinstance(down[0], TransformerBlock) and not down[0].self_attention \
                and (len(down) < 2 or not isinstance(down[1], TransformerBlock))
            level_t = [b for b in down[1 if first_cross else 0:] + up if isinstance(b, TransformerBlock)]
            sample = (resnets or [b for b in up if isinstance(b, ResnetBlock)] or [ResnetBlock()])[0]
            # the expansion shows only in separable ResNets: the level's own, or (lowest level) the mid block's
            pool = [b for b in (*down, *up, *(desc.stage("mid").blocks if level == depth - 1 else ()))
                    if isinstance(b, ResnetBlock) and b.conv == "separable"]
            expansion = pool[0].expansion if pool else sample.expansion
            down_t = [b for b in down[1 if first_cross else 0:] if isinstance(b, TransformerBlock)]
            up_t = [b for b in up if isinstance(b, TransformerBlock)]
            choices.update({f"level{level}.channels": desc.channels[level], f"level{level}.down_resnets": len(resnets) + first_cross,
                            f"level{level}.down_layers": down_t[0].layers if down_t else 0,
                            f"level{level}.up_layers": up_t[0].layers if up_t else 0,
                            f"level{level}.self_attention": level_t[0].self_attention if level_t else self.options[f"level{level}.self_attention"][0],
                            f"level{level}.separable": sample.conv == "separable", f"level{level}.expansion": expansion,
                            f"level{level}.first": "cross" if first_cross else "resnet"})
        mid = desc.stage("mid").blocks
        mid_t = [b for b in mid if isinstance(b, TransformerBlock)]
        choices.update({"mid.layers": mid_t[0].layers if mid_t else 0, "mid.separable": mid[0].conv == "separable"})
        if transformers:
            sa = next((b for b in transformers if b.self_attention), t0)
            width = next(desc.channels[stage_level(s.name, depth)] for s in desc.stages for b in s.blocks if b is t0)
            choices.update({"transformer.ff": t0.ff, "transformer.ff_ratio": t0.ff_ratio, "transformer.shared_kv": t0.shared_kv,
                            "transformer.attention": t0.attention, "transformer.head_dim": t0.head_dim or width // t0.num_heads(width),
                            "transformer.kv_heads": t0.kv_heads, "transformer.qk_norm": t0.qk_norm,
                            "transformer.kv_compression": sa.kv_compression})
        else:  # no transformer: its choices change nothing
            choices.update({n: opts[0] for n, opts in self.options.items() if n.startswith("transformer.")})
        active = self.active(depth)
        choices = {n: v for n, v in choices.items() if n in active}
        for n in active:
            allowed = self.options[n]
            if choices.get(n) not in allowed:
                raise ConfigError("enqueue", f"{desc.name} is not a member of the space {self.name}: {n} would be "
                                  f"{choices.get(n)!r}, the space allows {list(allowed)}")
        if self.decode(choices, name=desc.name) != desc:
            raise ConfigError("enqueue", f"{desc.name} is not a member of the space {self.name}: its blocks do not follow "
                              "the space's rule (each ResNet followed by one transformer, the same in every block)")
        return choices

    def feasible(self, desc: Description) -> str | None:
        """None when ``desc`` meets the space's constraints, else which one it breaks."""
        if not self.constraints:
            return None
        score = _COUNTER.score(desc)
        values = {"params": score.params, "gflops": score.gflops}
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

    def with_constraints(self, **bounds: float) -> "SearchSpace":
        """The space with extra bounds (the tighter of each pair), e.g. a runtime's model-size limit."""
        merged = dict(self.constraints)
        for key, value in bounds.items():
            merged[key] = min(value, merged.get(key, value)) if key.startswith("max") else max(value, merged.get(key, value))
        return SearchSpace(self.name, self.options, self.base, merged, self.max_depth)

    # ------------------------------------------------------------------ enumeration

    def stage_dependencies(self, stage: str, depth: int) -> list[str]:
        """The choices that determine the blocks (and their input shapes) of one stage."""
        last = depth - 1
        level = last if stage == "mid" else int(stage.lstrip("downup"))
        # level 0's width sets the time embedding every ResNet projects from
        present = set(self.active(depth))
        deps = ["depth", "level0.channels"] + [f"transformer.{c}" for c in (*TRANSFORMER_CHOICES, *OPTIONAL_TRANSFORMER_CHOICES)
                                               if f"transformer.{c}" in present]
        if stage == "mid":
            return deps + ([f"level{last}.channels"] if last else []) + [f"mid.{c}" for c in MID_CHOICES] + \
                [n for n in (f"level{last}.expansion",) if n in present]
        deps += [f"level{level}.{c}" for c in (*LEVEL_CHOICES, *OPTIONAL_LEVEL_CHOICES)
                 if not (level == 0 and c == "channels") and f"level{level}.{c}" in present]
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


@functools.lru_cache(maxsize=None)
def _active(depth: int) -> tuple[str, ...]:
    names = ["depth"]
    for level in range(depth):
        names += [f"level{level}.{c}" for c in (*LEVEL_CHOICES, *OPTIONAL_LEVEL_CHOICES)]
    return tuple(names + [f"mid.{c}" for c in MID_CHOICES] +
                 [f"transformer.{c}" for c in (*TRANSFORMER_CHOICES, *OPTIONAL_TRANSFORMER_CHOICES)])


def _optional(name: str) -> bool:
    return name.split(".", 1)[1] in (OPTIONAL_LEVEL_CHOICES if name.startswith("level") else OPTIONAL_TRANSFORMER_CHOICES
                                     if name.startswith("transformer") else ())


def _default(name: str) -> Any:
    field_name = name.split(".", 1)[1]
    return (OPTIONAL_LEVEL_CHOICES if name.startswith("level") else OPTIONAL_TRANSFORMER_CHOICES)[field_name]


_COUNTER = Predictor()  # parameters and FLOPs for constraints


# ---------------------------------------------------------------------- loading


def space_from_file(data: SpaceFile) -> SearchSpace:
    """The space a checked file describes; refused now if a width cannot take a transformer choice."""
    options: dict[str, tuple[Any, ...]] = {"depth": data.depth or (len(data.levels),)}
    for i, level in enumerate(data.levels):
        for c in LEVEL_CHOICES:
            options[f"level{i}.{c}"] = getattr(level, c)
        for c, default in OPTIONAL_LEVEL_CHOICES.items():
            if getattr(level, c) != (default,):
                options[f"level{i}.{c}"] = getattr(level, c)
    for c in MID_CHOICES:
        options[f"mid.{c}"] = getattr(data.mid, c)
    for c in TRANSFORMER_CHOICES:
        options[f"transformer.{c}"] = getattr(data.transformer, c)
    for c, default in OPTIONAL_TRANSFORMER_CHOICES.items():
        if getattr(data.transformer, c) != (default,):
            options[f"transformer.{c}"] = getattr(data.transformer, c)
    base = {k: (read(TextTimeEmbedding, v, "base.addition") if k == "addition" else read_value(int, v, f"base.{k}"))
            for k, v in data.base.items()}
    space = SearchSpace(name=data.name, options=options, base=base, constraints=data.constraints.as_dict(),
                        max_depth=len(data.levels))
    _check_widths(space)
    return space


def space_from_dict(data: Any) -> SearchSpace:
    """Build and check a space from plain data (a parsed file); every problem names its field."""
    return space_from_file(read(SpaceFile, data))


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
                                      f"{width} does not fit ff_ratio {ratio:g} / head_dim {head_dim} ({exc})") from None


def spaces() -> list[str]:
    """The shipped search spaces' names."""
    return resources.names("spaces")


def load_space(name_or_path: str | Path) -> SearchSpace:
    """A shipped space by name (``mobilediffusion``) or a space file (:func:`archlab.resources.locate`)."""
    return space_from_file(load(SpaceFile, resources.locate("spaces", name_or_path)))
