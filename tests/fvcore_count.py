"""FLOPs by tracing with fvcore, with the attention handle plain fvcore lacks.

fvcore skips ``aten::scaled_dot_product_attention`` with only a warning (SD-1.5 at 64x64:
339 G instead of 402 G). :func:`sdpa_flop_jit` counts it as QK^T plus AV, the same
convention fvcore uses for matmuls. This is the slow reference the analytic counter in
:mod:`archlab.cost.counting` is tested against.
"""

from __future__ import annotations

import logging
from math import prod
from typing import Any

import torch
from fvcore.nn import FlopCountAnalysis
from fvcore.nn.jit_handles import get_shape

from archlab.arch.builder import build
from archlab.arch.description import Description, Site
from archlab.arch.modules import block_inputs, build_block


def sdpa_flop_jit(inputs: list[Any], outputs: list[Any]) -> int:
    """(B, heads, N, d) x (B, heads, M, d): QK^T and AV, one multiply-add each."""
    q, k, v = (get_shape(t) for t in inputs[:3])
    return prod(q[:-1]) * k[-2] * q[-1] + prod(q[:-1]) * k[-2] * v[-1]


def fvcore_flops(module: torch.nn.Module, inputs: tuple[Any, ...]) -> int:
    analysis = FlopCountAnalysis(module.eval(), inputs)
    analysis.set_op_handle("aten::scaled_dot_product_attention", sdpa_flop_jit)
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    logger = logging.getLogger("fvcore")
    level = logger.level
    logger.setLevel(logging.ERROR)  # for this count only: fvcore logs every op it skips
    try:
        with torch.no_grad():
            return int(analysis.total())
    finally:
        logger.setLevel(level)


def block_flops(site: Site, desc: Description, batch: int = 1) -> int:
    """fvcore's count for the module of one placed block."""
    module = build_block(site, time_dim=desc.time_embed_dim, text_dim=desc.text_dim, groups=desc.norm_groups)
    inputs = block_inputs(site, batch=batch, time_dim=desc.time_embed_dim, text_dim=desc.text_dim, text_tokens=desc.text_tokens)
    return fvcore_flops(module, inputs)


def model_flops(desc: Description, resolution: int | None = None, batch: int = 1) -> int:
    """fvcore's count for the whole built UNet (slow for full-size models)."""
    res = desc.resolution if resolution is None else resolution
    model = build(desc)
    x = torch.randn(batch, desc.in_channels, res, res)
    ctx = torch.randn(batch, desc.text_tokens, desc.text_dim)
    return fvcore_flops(model, (x, torch.tensor([1.0] * batch), ctx))
