"""Shrink a description while keeping its topology: for proxies, tests and quick looks.

Every block keeps its kind, position and design choices (self-/cross-attention placement,
separable convs, FF kind and ratio, shared KV, attention kind, layers); only widths,
head counts and the resolution change, so a shrunken model ranks like its full-size self
as far as topology can make it.
"""

from __future__ import annotations

import dataclasses
import math

from archlab.arch.description import Description, Stage, TransformerBlock, stage_level


def _round_width(c: int, multiplier: float, quantum: int) -> int:
    return max(quantum, int(math.floor(c * multiplier / quantum + 0.5)) * quantum)  # halves round up


def scale(desc: Description, *, width: float, resolution: int | None = None, text_dim: int | None = None,
          quantum: int = 8, min_head_dim: int = 0) -> Description:
    """``desc`` with channels x ``width`` (multiples of ``quantum``), at ``resolution``.

    Heads keep their count where it divides the new width and leaves each head at least
    ``min_head_dim`` wide (else the largest count that does); GroupNorm groups become the
    largest divisor of 32 that fits every width.

    >>> from archlab import preset, count
    >>> small = scale(preset("sd15"), width=0.1, resolution=16, text_dim=32)
    >>> small.channels, count(small).conv_blocks == count(preset("sd15")).conv_blocks
    ((32, 64, 128, 128), True)
    """
    channels = tuple(_round_width(c, width, quantum) for c in desc.channels)
    groups = math.gcd(desc.norm_groups, *channels)
    stages = []
    for stage in desc.stages:
        level = stage_level(stage.name, desc.levels)
        old, new = desc.channels[level], channels[level]
        blocks = []
        for b in stage.blocks:
            if isinstance(b, TransformerBlock):
                heads = b.num_heads(old)
                while heads > 1 and (new % heads or new // heads < min_head_dim):
                    heads -= 1
                kv = None if b.kv_heads is None else math.gcd(b.kv_heads, heads)  # still divides the query heads
                b = dataclasses.replace(b, heads=heads, head_dim=None, kv_heads=kv)
                if abs(new * b.ff_ratio - round(new * b.ff_ratio)) > 1e-6:
                    b = dataclasses.replace(b, ff_ratio=round(new * b.ff_ratio) / new)
            blocks.append(b)
        stages.append(Stage(stage.name, tuple(blocks)))
    res = desc.resolution if resolution is None else resolution
    time_dim = None if desc.time_dim is None else _round_width(desc.time_dim, width, quantum)
    addition = desc.addition
    if addition is not None:
        addition = dataclasses.replace(addition, pooled_dim=_round_width(addition.pooled_dim, width, quantum),
                                       time_proj_dim=max(8, _round_width(addition.time_proj_dim, width, 2)))
    return dataclasses.replace(desc, name=f"{desc.name}-x{width:g}", channels=channels, stages=tuple(stages),
                               norm_groups=groups, resolution=res, time_dim=time_dim, addition=addition,
                               text_dim=desc.text_dim if text_dim is None else text_dim)
