"""Block keys: one canonical string per distinct block, shared by counter, table and builder.

A key holds the block's kind, every design choice that changes its module, and the
tensors it sees (channels, resolution, text tokens, batch, dtype)::

    resnet(conv=regular,k=3,act=silu)|in=960,out=320,res=64,temb=1280,g=32|b=1,float32

A skip connection's concatenation is not part of any block (it is in the table's
overhead term), so an up-stage ResNet's key only says its input width.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable

import torch
from torch import nn

from archlab.arch.description import Block, Description, ResnetBlock, Site, TransformerBlock, layout
from archlab.arch.modules import block_inputs, build_block
from archlab.cost.counting import Cost, site_cost


@dataclass(frozen=True)
class BlockSpec:
    """Everything needed to build, run, count and name one block, without its position."""

    block: Block
    in_channels: int
    out_channels: int
    resolution: int
    time_dim: int
    text_dim: int
    text_tokens: int
    groups: int
    batch: int = 1
    dtype: str = "float32"

    @property
    def key(self) -> str:
        return _key(self)

    @property
    def kind(self) -> str:
        return self.block.kind

    def site(self) -> Site:
        return Site("block", 0, self.block, self.in_channels, self.out_channels, self.resolution)

    def module(self) -> nn.Module:
        return build_block(self.site(), time_dim=self.time_dim, text_dim=self.text_dim, groups=self.groups).eval()

    def inputs(self, seed: int = 0) -> tuple[torch.Tensor, ...]:
        g = torch.Generator().manual_seed(seed)
        return block_inputs(self.site(), batch=self.batch, time_dim=self.time_dim, text_dim=self.text_dim,
                            text_tokens=self.text_tokens, dtype=getattr(torch, self.dtype), generator=g)

    def cost(self) -> Cost:
        return site_cost(self.site(), time_dim=self.time_dim, text_dim=self.text_dim, text_tokens=self.text_tokens, batch=self.batch)


@lru_cache(maxsize=200_000)
def _key(spec: BlockSpec) -> str:
    b = spec.block
    tail = f"|b={spec.batch},{spec.dtype}"
    if isinstance(b, ResnetBlock):  # the newer axes appear only when set: keys of older blocks (and tables) stay as they were
        return (f"resnet(conv={b.conv},k={b.kernel},act={b.activation}{f',exp={b.expansion:g}' if b.expansion != 1 else ''})"
                f"|in={spec.in_channels},out={spec.out_channels},res={spec.resolution},temb={spec.time_dim},g={spec.groups}{tail}")
    if isinstance(b, TransformerBlock):
        return (f"transformer(layers={b.layers},sa={int(b.self_attention)},ca={int(b.cross_attention)},"
                f"heads={b.num_heads(spec.in_channels)},ff={b.ff},ffr={b.ff_ratio:g},kv={int(b.shared_kv)},"
                f"att={b.attention},proj={b.projection}{_new_attention_axes(b, spec.in_channels)})"
                f"|c={spec.in_channels},res={spec.resolution},ctx={spec.text_tokens}x{spec.text_dim},g={spec.groups}{tail}")
    return f"{b.kind}(conv={b.conv})|c={spec.in_channels},res={spec.resolution}{tail}"


def _new_attention_axes(b: TransformerBlock, channels: int) -> str:
    out = ""
    if b.num_kv_heads(channels) != b.num_heads(channels):
        out += f",kvh={b.num_kv_heads(channels)}"
    if b.qk_norm != "none":
        out += f",qkn={b.qk_norm}"
    if b.kv_compression > 1:
        out += f",kvc={b.kv_compression}"
    return out


@lru_cache(maxsize=500_000)
def spec_of(site: Site, time_dim: int, text_dim: int, text_tokens: int, groups: int, batch: int, dtype: str) -> BlockSpec:
    return BlockSpec(site.block, site.in_channels, site.out_channels, site.resolution, time_dim, text_dim, text_tokens,
                     groups, batch, dtype)


def block_specs(desc: Description, *, batch: int = 1, dtype: str = "float32", resolution: int | None = None) -> list[tuple[Site, BlockSpec]]:
    """Each placed block of ``desc`` with its spec, in execution order."""
    return [(s, spec_of(s, desc.time_embed_dim, desc.text_dim, desc.text_tokens, desc.norm_groups, batch, dtype))
            for s in layout(desc, resolution)]


def distinct_specs(descs: Iterable[Description], *, batch: int = 1, dtype: str = "float32") -> dict[str, BlockSpec]:
    """Key -> spec over many descriptions, in first-seen order."""
    out: dict[str, BlockSpec] = {}
    for desc in descs:
        for _, spec in block_specs(desc, batch=batch, dtype=dtype):
            out.setdefault(spec.key, spec)
    return out


