"""The architecture description: plain, typed, frozen data that every part of archlab reads.

A UNet is a list of channel widths (one per resolution level) and a list of stages:
``down0 .. down{N-1}``, ``mid``, ``up{N-1} .. up0``, each an ordered list of blocks.
Level 0 is the latent resolution; each level below halves it. A block is one of

- :class:`ResnetBlock`      -- GroupNorm, conv, time embedding, GroupNorm, conv (+ shortcut)
- :class:`TransformerBlock` -- SD's Transformer2DModel: norm, projection, ``layers`` x
  (self-attention, cross-attention, feed-forward), projection, residual
- :class:`Downsample` / :class:`Upsample` -- the resamplers, last block of a down / up stage

Skip connections follow Stable Diffusion: at each level the level's entry (``conv_in`` at
level 0, the downsampler's output below it) and the output of every ResNet unit of the down
stage (a ResNet block plus the transformers after it) are kept; each ResNet block of the up
stage of the same level concatenates one of them, newest first. A ResNet block with none
left takes none, and skips nobody takes are simply not used, so blocks can be removed one
by one (SnapFusion's evolving search) and every result is still a valid UNet.

YAML form (a block is its kind alone, or ``{kind: {field: value}}``; ``defaults`` fills
fields per kind)::

    name: tiny
    channels: [32, 64]
    text_dim: 32
    defaults:
      transformer: {heads: 2}
    stages:
      down0: {blocks: [resnet, downsample]}
      down1: {blocks: [resnet, transformer]}
      mid:   {blocks: [resnet, transformer, resnet]}
      up1:   {blocks: [resnet, transformer, resnet, transformer, upsample]}
      up0:   {blocks: [resnet, resnet]}

Searches build and score thousands of descriptions a second, so validation and placement
are memoised per stage, and the frozen objects keep their hash (see :func:`_hash_cached`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Iterator, Union

import yaml

from archlab.errors import ConfigError

CONV_KINDS = ("regular", "separable")
ACTIVATIONS = ("silu", "gelu", "relu")
FF_KINDS = ("geglu", "swiglu", "gelu", "swish")
ATTENTION_KINDS = ("softmax", "relu")
PROJECTIONS = ("linear", "conv")
QK_NORMS = ("none", "rms", "layer")


def _hash_cached(cls: type) -> type:
    """Keep each frozen object's hash after the first use.

    Scoring looks placed blocks up in dictionaries millions of times; a dataclass recomputes
    its hash from every field on each lookup. The cached value is dropped when pickling
    (string hashes differ between processes).
    """
    compute = cls.__hash__

    def __hash__(self: Any) -> int:
        h = self.__dict__.get("_hash")
        if h is None:
            h = self.__dict__["_hash"] = compute(self)
        return h

    def __getstate__(self: Any) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    cls.__hash__ = __hash__  # type: ignore[method-assign]
    cls.__getstate__ = __getstate__  # type: ignore[attr-defined]
    return cls


@_hash_cached
@dataclass(frozen=True)
class ResnetBlock:
    """SD's ResnetBlock2D. ``separable`` replaces each 3x3 conv by depthwise + pointwise; with an
    ``expansion`` above 1 by pointwise expand (to expansion x its input width), depthwise, pointwise
    project, as SnapGen does to win back the quality plain separable convs lose."""

    kind: ClassVar[str] = "resnet"
    conv: str = "regular"
    kernel: int = 3
    activation: str = "silu"  # SiLU is swish: SD and MobileDiffusion both use it
    expansion: float = 1.0  # separable convs only: the inverted bottleneck's width / input width


@_hash_cached
@dataclass(frozen=True)
class TransformerBlock:
    """SD's Transformer2DModel with ``layers`` BasicTransformerBlocks inside.

    Self- and cross-attention are switched separately (MobileDiffusion skips self-attention
    at high resolution and decouples the two). Give ``heads`` or ``head_dim``, not both.
    """

    kind: ClassVar[str] = "transformer"
    layers: int = 1
    self_attention: bool = True
    cross_attention: bool = True
    heads: int | None = None
    head_dim: int | None = None  # used when heads is None; 64 when both are None
    ff: str = "geglu"
    ff_ratio: float = 4.0  # hidden width / channels; a gated FF's input projection is 2x this
    shared_kv: bool = False  # one projection gives both keys and values
    attention: str = "softmax"  # "relu": relu(q k^T * scale) v / n_keys, no softmax
    projection: str = "linear"  # proj_in/proj_out as Linear (SDXL) or 1x1 conv (SD-1.5)
    kv_heads: int | None = None  # key/value heads: None, as many as query heads; 1 multi-query; between: grouped-query
    qk_norm: str = "none"  # "rms" or "layer": queries and keys normalised per head before attention (SnapGen)
    kv_compression: int = 1  # s > 1: self-attention's keys and values from an s x s stride-s depthwise conv (s^2 fewer)

    def num_heads(self, channels: int) -> int:
        if self.heads is not None:
            return self.heads
        return channels // (self.head_dim or 64)

    def num_kv_heads(self, channels: int) -> int:
        return self.kv_heads if self.kv_heads is not None else self.num_heads(channels)

    def ff_hidden(self, channels: int) -> int:
        return round(channels * self.ff_ratio)


@_hash_cached
@dataclass(frozen=True)
class Downsample:
    """3x3 conv with stride 2, channels unchanged."""

    kind: ClassVar[str] = "downsample"
    conv: str = "regular"


@_hash_cached
@dataclass(frozen=True)
class Upsample:
    """Nearest-neighbour 2x, then a 3x3 conv, channels unchanged."""

    kind: ClassVar[str] = "upsample"
    conv: str = "regular"


Block = Union[ResnetBlock, TransformerBlock, Downsample, Upsample]
BLOCK_TYPES: dict[str, type] = {b.kind: b for b in (ResnetBlock, TransformerBlock, Downsample, Upsample)}


@_hash_cached
@dataclass(frozen=True)
class Stage:
    name: str
    blocks: tuple[Block, ...] = ()


@dataclass(frozen=True)
class TextTimeEmbedding:
    """SDXL's extra conditioning: pooled text embedding + micro-conditioning time ids."""

    pooled_dim: int = 1280
    time_ids: int = 6
    time_proj_dim: int = 256

    @property
    def in_features(self) -> int:
        return self.pooled_dim + self.time_ids * self.time_proj_dim


@_hash_cached
@dataclass(frozen=True)
class Description:
    """A whole UNet. Build it with :func:`archlab.build`, count it with :func:`archlab.count`.

    >>> from archlab import preset
    >>> d = preset("sd15")
    >>> d.channels, len(d.stage("down0").blocks)
    ((320, 640, 1280, 1280), 5)
    """

    name: str
    channels: tuple[int, ...]
    stages: tuple[Stage, ...]
    in_channels: int = 4  # latent channels: 4 as SD, 8 as MobileDiffusion
    out_channels: int = 4
    text_dim: int = 768  # width of the text encoder's token embeddings (CLIP ViT-L/14: 768)
    text_tokens: int = 77
    resolution: int = 64  # latent side the model is described at (64 -> 512x512 images)
    time_dim: int | None = None  # time embedding width; None -> 4 x channels[0] as SD
    norm_groups: int = 32
    addition: TextTimeEmbedding | None = None

    def __post_init__(self) -> None:
        for name in ("channels", "stages"):  # lists from Python callers: keep the object hashable
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))
        from archlab.arch.validation import validate  # beside, not above: it needs these types

        validate(self)

    @property
    def time_embed_dim(self) -> int:
        return self.time_dim if self.time_dim is not None else 4 * self.channels[0]

    @property
    def levels(self) -> int:
        return len(self.channels)

    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(name)

    def block(self, stage: str, index: int) -> Block:
        return self.stage(stage).blocks[index]

    def replace(self, **changes: Any) -> "Description":
        return dataclasses.replace(self, **changes)

    def with_blocks(self, stage: str, blocks: tuple[Block, ...] | list[Block]) -> "Description":
        """A copy whose ``stage`` has ``blocks`` (validated like any description)."""
        new = tuple(Stage(s.name, tuple(blocks)) if s.name == stage else s for s in self.stages)
        return dataclasses.replace(self, stages=new)

    def to_dict(self) -> dict[str, Any]:
        return description_to_dict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None, width=100)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


@functools.lru_cache(maxsize=None)
def stage_names(levels: int) -> tuple[str, ...]:
    """Stage names in execution order."""
    return tuple([f"down{i}" for i in range(levels)] + ["mid"] + [f"up{i}" for i in reversed(range(levels))])


@functools.lru_cache(maxsize=None)
def stage_level(name: str, levels: int) -> int:
    """The resolution level a stage works at (``down2`` -> 2, ``mid`` -> the lowest)."""
    return levels - 1 if name == "mid" else int(name.lstrip("downup"))


# --------------------------------------------------------------------------- layout


@_hash_cached
@dataclass(frozen=True)
class Site:
    """A block placed in a UNet: what it is, where it is, and the tensors it sees.

    ``in_channels`` includes a concatenated skip (``skip_channels`` of it); ``resolution``
    is the side of the feature map the block receives. The skip bookkeeping is explicit so
    that the builder's forward is a plain loop: keep the input as a skip of ``level`` if
    ``push_before``; concatenate the newest skip of ``level`` if ``skip_channels``; keep the
    output as a skip of level ``push_after`` if it is set.
    """

    stage: str
    index: int
    block: Block
    in_channels: int
    out_channels: int
    resolution: int
    level: int = 0
    skip_channels: int = 0
    push_before: bool = False
    push_after: int | None = None

    @property
    def name(self) -> str:
        return f"{self.stage}.{self.index}"


@_hash_cached
@dataclass(frozen=True)
class PlacedStage:
    """One stage's placed blocks, and what it leaves to the stages after it.

    Candidates of a search share most of their stages, so the same placed stage (the same
    object) turns up in many layouts: costs are cached per placed stage.
    """

    sites: tuple[Site, ...]
    pushes: tuple[tuple[int, int], ...]  # (level, channels) kept as skips, in order
    remaining: tuple[int, ...]  # an up stage's level skips left untaken
    channels: int  # width after the stage
    resolution: int  # feature-map side after the stage
    unused: str  # "level L: n of m" when an up stage leaves skips untaken


@dataclass(frozen=True)
class Layout:
    stages: tuple[PlacedStage, ...]  # in execution order
    unused_skips: tuple[str, ...]  # e.g. "level 1: 2 of 3" when an up stage takes fewer

    @property
    def sites(self) -> tuple[Site, ...]:
        return tuple(s for stage in self.stages for s in stage.sites)

    def __iter__(self) -> Iterator[Site]:
        return (s for stage in self.stages for s in stage.sites)

    def __len__(self) -> int:
        return sum(len(s.sites) for s in self.stages)


@functools.lru_cache(maxsize=1 << 16)
def _place(stage: Stage, level: int, width: int, ch: int, res: int, pending: tuple[int, ...]) -> PlacedStage:
    """Place one stage's blocks given what enters it (memoised: stages repeat across candidates)."""
    is_down, is_up = stage.name.startswith("down"), stage.name.startswith("up")
    waiting = list(pending)
    sites: list[Site] = []
    pushes: list[tuple[int, int]] = []
    taken = 0
    seen_resnet = False
    for i, block in enumerate(stage.blocks):
        where = f"stages.{stage.name}.blocks[{i}]"
        if isinstance(block, ResnetBlock):
            push = is_down and seen_resnet  # closes the previous ResNet unit
            if push:
                pushes.append((level, ch))
            skip = waiting.pop() if is_up and waiting else 0
            taken += bool(skip)
            seen_resnet = True
            sites.append(Site(stage.name, i, block, ch + skip, width, res, level, skip, push))
            ch = width
            continue
        if ch != width:
            raise ConfigError(where, f"a {block.kind} block cannot change width {ch} -> {width}; put a resnet block first")
        if isinstance(block, Downsample):
            push = is_down and seen_resnet
            if push:
                pushes.append((level, ch))
            pushes.append((level + 1, ch))
            sites.append(Site(stage.name, i, block, ch, ch, res, level, 0, push, level + 1))
            res //= 2
        else:
            sites.append(Site(stage.name, i, block, ch, ch, res, level))
            if isinstance(block, Upsample):
                res *= 2
    if ch != width:
        raise ConfigError(f"stages.{stage.name}", f"ends at width {ch} but level {level} is {width} wide: add a resnet block")
    if is_down and seen_resnet and not isinstance(stage.blocks[-1], Downsample):
        pushes.append((level, ch))
        sites[-1] = dataclasses.replace(sites[-1], push_after=level)
    unused = f"level {level}: {len(waiting)} of {len(waiting) + taken}" if is_up and waiting else ""
    return PlacedStage(tuple(sites), tuple(pushes), tuple(waiting), ch, res, unused)


def layout(desc: Description, resolution: int | None = None) -> Layout:
    """Place every block: input/output channels, resolution and skip connections.

    Raises :class:`ConfigError` naming the block when the stages do not fit together.
    """
    res = desc.resolution if resolution is None else resolution
    cached = desc.__dict__.get("_layout")
    if cached is not None and res == desc.resolution:
        return cached
    if not isinstance(res, int) or res < 1 or res % (2 ** (desc.levels - 1)):
        raise ConfigError("resolution", f"{res} is not a positive multiple of 2^{desc.levels - 1} for {desc.levels} levels")
    skips: list[tuple[int, ...]] = [() for _ in desc.channels]
    skips[0] = (desc.channels[0],)  # conv_in's output
    ch = desc.channels[0]
    placed_stages, unused = [], []
    for stage in desc.stages:
        level = stage_level(stage.name, desc.levels)
        up = stage.name.startswith("up")
        p = _place(stage, level, desc.channels[level], ch, res, skips[level] if up else ())
        placed_stages.append(p)
        if up:
            skips[level] = p.remaining
        for lvl, c in p.pushes:
            skips[lvl] = skips[lvl] + (c,)
        ch, res = p.channels, p.resolution
        if p.unused:
            unused.append(p.unused)
    return Layout(tuple(placed_stages), tuple(unused))


TOP_FIELDS = [f.name for f in fields(Description)]


def _block_to_data(block: Block) -> Any:
    changed = {f.name: getattr(block, f.name) for f in fields(block) if getattr(block, f.name) != f.default}
    return {block.kind: changed} if changed else block.kind


def description_to_dict(desc: Description) -> dict[str, Any]:
    out: dict[str, Any] = {"name": desc.name, "channels": list(desc.channels)}
    for f in fields(Description):
        if f.name in ("name", "channels", "stages", "addition"):
            continue
        value = getattr(desc, f.name)
        if value != f.default:
            out[f.name] = value
    if desc.addition is not None:
        out["addition"] = dataclasses.asdict(desc.addition)
    out["stages"] = {s.name: {"blocks": [_block_to_data(b) for b in s.blocks]} for s in desc.stages}
    return out
