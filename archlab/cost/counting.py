"""Parameters and FLOPs of a description, computed from the description alone.

FLOPs follow fvcore's convention: one multiply-add is one FLOP; convolutions, linear
layers and attention matmuls (2 x B x N x M x C for QK^T and AV) are counted, norms as
5 x their input size, nearest upsampling as its output size; elementwise ops, softmax and
activations are not. :mod:`fvcore_count` checks these formulas against
fvcore's traced count block by block (tests/test_counting.py).

No module is built and nothing is traced; :mod:`archlab.cost.predict` adds these per
block (and latency from tables) for whole descriptions.

>>> from archlab import preset
>>> from archlab.arch.description import layout
>>> site = next(iter(layout(preset("sd15"))))
>>> cost = site_cost(site, time_dim=1280, text_dim=768, text_tokens=77)
>>> cost.params, round(cost.flops / 1e9, 2)
(2255040, 7.56)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from archlab.arch.description import Description, Downsample, ResnetBlock, Site, TransformerBlock, Upsample
from archlab.arch.modules import expanded_width


@dataclass(frozen=True)
class Cost:
    params: int
    flops: int  # multiply-adds, fvcore's convention

    @property
    def gflops(self) -> float:
        return self.flops / 1e9

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(self.params + other.params, self.flops + other.flops)


ZERO = Cost(0, 0)


def _conv(kind: str, cin: int, cout: int, k: int, out_pixels: int, batch: int, expansion: float = 1.0) -> Cost:
    if kind == "separable":
        mid = expanded_width(cin, expansion)
        expand = Cost(cin * mid + mid, batch * out_pixels * cin * mid) if mid != cin else ZERO  # stride-1 convs only
        return expand + Cost(mid * k * k + mid + mid * cout + cout, batch * out_pixels * (mid * k * k + mid * cout))
    return Cost(cin * cout * k * k + cout, batch * out_pixels * cin * cout * k * k)


def _linear(cin: int, cout: int, rows: int, bias: bool = True) -> Cost:
    return Cost(cin * cout + (cout if bias else 0), rows * cin * cout)


def _norm(channels: int, numel: int) -> Cost:
    return Cost(2 * channels, 5 * numel)


def _resnet(b: ResnetBlock, cin: int, cout: int, res: int, time_dim: int, batch: int) -> Cost:
    px = res * res
    cost = _norm(cin, batch * cin * px) + _conv(b.conv, cin, cout, b.kernel, px, batch, b.expansion)
    cost += _linear(time_dim, cout, batch)
    cost += _norm(cout, batch * cout * px) + _conv(b.conv, cout, cout, b.kernel, px, batch, b.expansion)
    if cin != cout:
        cost += _conv("regular", cin, cout, 1, px, batch)
    return cost


def _attention(b: TransformerBlock, dim: int, context_dim: int, n: int, m: int, batch: int, res: int = 0) -> Cost:
    """One attention: projections (keys and values at ``kv_heads`` x head width), QK^T and AV over every query
    head, a LayerNorm QK-norm (an RMS one is elementwise, uncounted as fvcore traces it), and self-attention's
    key/value compression (a depthwise s x s stride-s conv and a LayerNorm on the s^2 fewer tokens)."""
    heads = b.num_heads(dim)
    kv_dim = b.num_kv_heads(dim) * (dim // heads)
    cost = _linear(dim, dim, batch * n, bias=False) + _linear(dim, dim, batch * n)  # to_q, to_out
    s = b.kv_compression  # 1 for cross-attention (its keys are the text's)
    if s > 1:
        m = (res // s) ** 2
        cost += Cost(dim * s * s + dim, batch * m * dim * s * s) + _norm(dim, batch * m * dim)
    for _ in range(1 if b.shared_kv else 2):
        cost += _linear(context_dim, kv_dim, batch * m, bias=False)
    if b.qk_norm == "layer":
        head = dim // heads
        cost += _norm(head, batch * n * dim) + _norm(head, batch * m * kv_dim)
    elif b.qk_norm == "rms":
        cost += Cost(2 * (dim // heads), 0)
    return cost + Cost(0, 2 * batch * n * m * dim)  # QK^T and AV over all query heads


def _transformer(b: TransformerBlock, c: int, res: int, text_dim: int, tokens: int, batch: int) -> Cost:
    n = res * res
    rows = batch * n
    proj = _linear(c, c, rows)  # a 1x1 conv has the same count as a linear layer
    cost = _norm(c, rows * c) + proj + proj
    hidden = b.ff_hidden(c)
    gated = b.ff in ("geglu", "swiglu")
    layer = ZERO
    if b.self_attention:
        layer += _norm(c, rows * c) + _attention(b, c, c, n, n, batch, res)
    if b.cross_attention:
        layer += _norm(c, rows * c) + _attention(dataclasses.replace(b, kv_compression=1), c, text_dim, n, tokens, batch)
    layer += _norm(c, rows * c) + _linear(c, hidden * (2 if gated else 1), rows) + _linear(hidden, c, rows)
    return cost + Cost(layer.params * b.layers, layer.flops * b.layers)


def site_cost(site: Site, *, time_dim: int, text_dim: int, text_tokens: int, batch: int = 1) -> Cost:
    """Parameters and FLOPs of one placed block."""
    b = site.block
    if isinstance(b, ResnetBlock):
        return _resnet(b, site.in_channels, site.out_channels, site.resolution, time_dim, batch)
    if isinstance(b, TransformerBlock):
        return _transformer(b, site.in_channels, site.resolution, text_dim, text_tokens, batch)
    if isinstance(b, Downsample):
        out = (site.resolution // 2) ** 2
        return _conv(b.conv, site.in_channels, site.in_channels, 3, out, batch)
    if isinstance(b, Upsample):
        out = (site.resolution * 2) ** 2
        return _conv(b.conv, site.in_channels, site.in_channels, 3, out, batch) + Cost(0, batch * site.in_channels * out)
    raise TypeError(f"not a block: {b!r}")


def stem_cost(desc: Description, resolution: int, batch: int = 1) -> Cost:
    """conv_in, the time (and SDXL's extra) embedding, and the output head."""
    c0, t, px = desc.channels[0], desc.time_embed_dim, resolution * resolution
    cost = _conv("regular", desc.in_channels, c0, 3, px, batch)
    cost += _linear(c0, t, batch) + _linear(t, t, batch)
    if desc.addition is not None:
        cost += _linear(desc.addition.in_features, t, batch) + _linear(t, t, batch)
    cost += _norm(c0, batch * c0 * px) + _conv("regular", c0, desc.out_channels, 3, px, batch)
    return cost
