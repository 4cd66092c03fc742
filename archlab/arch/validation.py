"""Validation of descriptions: every field and block checked, the first wrong one named (ConfigError)."""

from __future__ import annotations

import functools
from typing import Any

from archlab.arch.description import (ACTIVATIONS, ATTENTION_KINDS, BLOCK_TYPES, CONV_KINDS, FF_KINDS, PROJECTIONS, QK_NORMS,
                                      Block, Description, Downsample, ResnetBlock, Stage, TransformerBlock, Upsample,
                                      layout, stage_level, stage_names)
from archlab.errors import ConfigError

def _check_choice(where: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ConfigError(where, f"{value!r} is not one of {', '.join(map(str, allowed))}")


def _check_positive_int(where: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(where, f"{value!r} is not a positive integer")


def _check_block(where: str, block: Block, channels: int, groups: int) -> None:
    if isinstance(block, (ResnetBlock, Downsample, Upsample)):
        _check_choice(f"{where}.conv", block.conv, CONV_KINDS)
    if isinstance(block, ResnetBlock):
        _check_positive_int(f"{where}.kernel", block.kernel)
        if block.kernel % 2 == 0:
            raise ConfigError(f"{where}.kernel", f"{block.kernel} is even; kernels must be odd (1, 3, 5, ...)")
        _check_choice(f"{where}.activation", block.activation, ACTIVATIONS)
        if not isinstance(block.expansion, (int, float)) or isinstance(block.expansion, bool) or not block.expansion >= 1:
            raise ConfigError(f"{where}.expansion", f"{block.expansion!r} must be a number of at least 1")
        if block.expansion != 1 and block.conv != "separable":
            raise ConfigError(f"{where}.expansion", "an expansion needs conv: separable (it widens the depthwise conv)")
    if isinstance(block, TransformerBlock):
        _check_positive_int(f"{where}.layers", block.layers)
        for name in ("self_attention", "cross_attention", "shared_kv"):
            if not isinstance(getattr(block, name), bool):
                raise ConfigError(f"{where}.{name}", f"{getattr(block, name)!r} is not true or false")
        if not (block.self_attention or block.cross_attention):
            raise ConfigError(where, "self_attention and cross_attention are both off; drop the block instead")
        _check_choice(f"{where}.ff", block.ff, FF_KINDS)
        _check_choice(f"{where}.attention", block.attention, ATTENTION_KINDS)
        _check_choice(f"{where}.projection", block.projection, PROJECTIONS)
        if block.heads is not None and block.head_dim is not None:
            raise ConfigError(where, "give heads or head_dim, not both")
        if block.heads is not None:
            _check_positive_int(f"{where}.heads", block.heads)
            if channels % block.heads:
                raise ConfigError(f"{where}.heads", f"{channels} channels is not divisible by {block.heads} heads")
        else:
            hd = block.head_dim or 64
            _check_positive_int(f"{where}.head_dim", hd)
            if channels % hd:
                raise ConfigError(f"{where}.head_dim", f"{channels} channels is not divisible by head_dim {hd}")
        if block.kv_heads is not None:
            _check_positive_int(f"{where}.kv_heads", block.kv_heads)
            if block.num_heads(channels) % block.kv_heads:
                raise ConfigError(f"{where}.kv_heads", f"{block.kv_heads} does not divide the {block.num_heads(channels)} query heads")
        _check_choice(f"{where}.qk_norm", block.qk_norm, QK_NORMS)
        _check_positive_int(f"{where}.kv_compression", block.kv_compression)
        if block.kv_compression > 1 and not block.self_attention:
            raise ConfigError(f"{where}.kv_compression", "compresses self-attention's keys and values: it needs self_attention")
        if not isinstance(block.ff_ratio, (int, float)) or isinstance(block.ff_ratio, bool) or block.ff_ratio <= 0:
            raise ConfigError(f"{where}.ff_ratio", f"{block.ff_ratio!r} is not a positive number")
        if abs(channels * block.ff_ratio - round(channels * block.ff_ratio)) > 1e-6:
            raise ConfigError(f"{where}.ff_ratio", f"{channels} x {block.ff_ratio} is not a whole hidden width")
    if channels % groups:
        raise ConfigError(where, f"{channels} channels is not divisible by norm_groups {groups}")


@functools.lru_cache(maxsize=1 << 12)
def _check_fields(channels: tuple, in_channels: Any, out_channels: Any, text_dim: Any, text_tokens: Any, resolution: Any,
                  norm_groups: Any, time_dim: Any) -> None:
    """The description's own fields (memoised: candidates of a space share them)."""
    if not isinstance(channels, tuple) or not channels:
        raise ConfigError("channels", "needs at least one level width")
    for name, value in (("in_channels", in_channels), ("out_channels", out_channels), ("text_dim", text_dim),
                        ("text_tokens", text_tokens), ("resolution", resolution), ("norm_groups", norm_groups)):
        _check_positive_int(name, value)
    for i, c in enumerate(channels):
        _check_positive_int(f"channels[{i}]", c)
        if c % norm_groups:
            raise ConfigError(f"channels[{i}]", f"{c} is not divisible by norm_groups {norm_groups}")
    if time_dim is not None:
        _check_positive_int("time_dim", time_dim)


@functools.lru_cache(maxsize=1 << 16)
def _check_stage(stage: Stage, level: int, last: int, width: int, groups: int) -> None:
    """Every block of one stage, in its place (memoised: stages repeat across candidates)."""
    down = stage.name.startswith("down") and level < last
    up = stage.name.startswith("up") and level > 0
    for i, block in enumerate(stage.blocks):
        where = f"stages.{stage.name}.blocks[{i}]"
        if not isinstance(block, tuple(BLOCK_TYPES.values())):
            raise ConfigError(where, f"{block!r} is not a block")
        is_last = i == len(stage.blocks) - 1
        if isinstance(block, Downsample) and not (down and is_last):
            raise ConfigError(where, "a downsample block may only end a down stage above the lowest level")
        if isinstance(block, Upsample) and not (up and is_last):
            raise ConfigError(where, "an upsample block may only end an up stage below the top level")
        _check_block(where, block, width, groups)
    needed = Downsample if down else Upsample if up else None
    if needed is not None and (not stage.blocks or not isinstance(stage.blocks[-1], needed)):
        raise ConfigError(f"stages.{stage.name}.blocks", f"must end with a {needed.kind} block")


def validate(desc: Description) -> None:
    """Check a description; raise :class:`ConfigError` naming the first wrong field."""
    if not isinstance(desc.name, str) or not desc.name:
        raise ConfigError("name", "must be a non-empty string")
    _check_fields(desc.channels, desc.in_channels, desc.out_channels, desc.text_dim, desc.text_tokens, desc.resolution,
                  desc.norm_groups, desc.time_dim)
    levels = len(desc.channels)
    expected = stage_names(levels)
    got = tuple(s.name for s in desc.stages)
    if got != expected:
        missing = [n for n in expected if n not in got]
        extra = [n for n in got if n not in expected]
        if extra:
            raise ConfigError(f"stages.{extra[0]}", f"is not a stage of a {levels}-level UNet; allowed: {', '.join(expected)}")
        if missing:
            raise ConfigError(f"stages.{missing[0]}", f"is missing; a {levels}-level UNet has {', '.join(expected)}")
        raise ConfigError("stages", f"must be in the order {', '.join(expected)}")
    for stage in desc.stages:
        level = stage_level(stage.name, levels)
        _check_stage(stage, level, levels - 1, desc.channels[level], desc.norm_groups)
    # the layout of a valid description is checked here and kept: scoring reads it again
    placed = layout(desc)
    for site in placed:
        s = getattr(site.block, "kv_compression", 1)
        if s > 1 and site.resolution % s:
            raise ConfigError(f"stages.{site.stage}.blocks[{site.index}].kv_compression",
                              f"{s} does not divide the {site.resolution}x{site.resolution} feature map")
    object.__setattr__(desc, "_layout", placed)


# --------------------------------------------------------------------------- (de)serialisation
