"""The PyTorch blocks a description is built from.

Submodule names follow diffusers' UNet2DConditionModel (``norm1``, ``conv1``,
``time_emb_proj``, ``attn1.to_q``, ``ff.net.0.proj``, ...) so that a pretrained SD UNet's
weights map onto ours block by block. Design axes that diffusers lacks add their own names:
``to_kv`` (shared key-value projection), ``conv1.depthwise``/``conv1.pointwise``.

Every block takes only the tensors it needs: ResNet ``(x, temb)``, transformer
``(x, context)``, resamplers ``(x)``. :func:`block_inputs` makes example inputs for a site.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from archlab.arch.description import Downsample, ResnetBlock, Site, TransformerBlock, Upsample

_ACTIVATIONS = {"silu": nn.SiLU, "gelu": nn.GELU, "relu": nn.ReLU}


class SeparableConv2d(nn.Module):
    """Depthwise kxk conv then pointwise 1x1 conv (MobileNet-style); with ``expansion`` above 1, a pointwise
    expansion to ``expansion`` x the input width first, each of the first two followed by ``activation`` (an
    inverted bottleneck, as SnapGen's separable convs)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1, expansion: float = 1.0,
                 activation: str = "silu"):
        super().__init__()
        mid = expanded_width(in_channels, expansion)
        if mid != in_channels:
            self.expand = nn.Conv2d(in_channels, mid, 1)
            self.act = _ACTIVATIONS[activation]()
        self.depthwise = nn.Conv2d(mid, mid, kernel, stride=stride, padding=kernel // 2, groups=mid)
        self.pointwise = nn.Conv2d(mid, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "expand"):
            return self.pointwise(self.act(self.depthwise(self.act(self.expand(x)))))
        return self.pointwise(self.depthwise(x))


def expanded_width(channels: int, expansion: float) -> int:
    """The inverted bottleneck's width: ``expansion`` x ``channels``, rounded."""
    return max(channels, round(channels * expansion))


def make_conv(kind: str, in_channels: int, out_channels: int, kernel: int = 3, stride: int = 1, expansion: float = 1.0,
              activation: str = "silu") -> nn.Module:
    if kind == "separable":
        return SeparableConv2d(in_channels, out_channels, kernel, stride, expansion, activation)
    return nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2)


class ResnetBlock2D(nn.Module):
    def __init__(self, spec: ResnetBlock, in_channels: int, out_channels: int, time_dim: int, groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_channels, eps=1e-5)
        self.conv1 = make_conv(spec.conv, in_channels, out_channels, spec.kernel, expansion=spec.expansion, activation=spec.activation)
        self.time_emb_proj = nn.Linear(time_dim, out_channels)
        self.norm2 = nn.GroupNorm(groups, out_channels, eps=1e-5)
        self.conv2 = make_conv(spec.conv, out_channels, out_channels, spec.kernel, expansion=spec.expansion, activation=spec.activation)
        self.nonlinearity = _ACTIVATIONS[spec.activation]()
        self.conv_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(self.nonlinearity(self.norm1(x)))
        h = h + self.time_emb_proj(self.nonlinearity(temb))[:, :, None, None]
        h = self.conv2(self.nonlinearity(self.norm2(h)))
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(x)
        return x + h


class RMSNorm(nn.Module):
    """Root-mean-square norm over the last dimension, written out (exports to every runtime; ``nn.RMSNorm``
    needs ONNX opset 23)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def share_kv_heads(t: torch.Tensor, heads: int) -> torch.Tensor:
    """Key or value heads (b, kv_heads, tokens, d) repeated to ``heads``, each serving ``heads / kv_heads`` query heads.

    Concatenated copies, not ``expand`` (or ``repeat_interleave``): litert-torch 0.10 lowers the expand of a single
    key/value head wrongly when keys and values are separate tensors (outputs off by a quarter of their size;
    ``tests/test_snapgen_axes.py`` runs the converted model against PyTorch)."""
    b, kv_heads, n, d = t.shape
    return torch.cat([t[:, :, None]] * (heads // kv_heads), dim=2).reshape(b, heads, n, d)


class Attention(nn.Module):
    """Attention with ``heads`` query heads; keys/values from ``context`` (cross) or from ``x`` (self).

    ``kv_heads`` below ``heads``: multi-query (1) or grouped-query attention, each key/value head shared by
    ``heads / kv_heads`` query heads. ``qk_norm``: queries and keys normalised per head. ``kv_compression``
    s: self-attention's keys and values come from an s x s stride-s depthwise conv of the feature map and a
    LayerNorm (s^2 fewer tokens; SnapGen++'s outer stages, PixArt-Sigma)."""

    def __init__(self, dim: int, context_dim: int, heads: int, shared_kv: bool, kind: str, kv_heads: int | None = None,
                 qk_norm: str = "none", kv_compression: int = 1):
        super().__init__()
        self.heads, self.kind = heads, kind
        self.kv_heads = kv_heads or heads
        self.head_dim = head_dim = dim // heads  # a constant, not computed from shapes: tracers (coremltools) need that
        kv_dim = self.kv_heads * head_dim
        self.to_q = nn.Linear(dim, dim, bias=False)
        if shared_kv:
            self.to_kv = nn.Linear(context_dim, kv_dim, bias=False)
        else:
            self.to_k = nn.Linear(context_dim, kv_dim, bias=False)
            self.to_v = nn.Linear(context_dim, kv_dim, bias=False)
        if qk_norm != "none":
            norm = (lambda: RMSNorm(head_dim)) if qk_norm == "rms" else (lambda: nn.LayerNorm(head_dim))
            self.norm_q, self.norm_k = norm(), norm()
        if kv_compression > 1:
            self.kv_compress = nn.Conv2d(dim, dim, kv_compression, stride=kv_compression, groups=dim)
            self.kv_norm = nn.LayerNorm(dim)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim)])

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, hw: tuple[int, int] | None = None) -> torch.Tensor:
        b, n, c = x.shape
        if context is None:
            context = x
            if hasattr(self, "kv_compress"):
                h, w = hw
                fmap = self.kv_compress(x.transpose(1, 2).reshape(b, c, h, w))
                context = self.kv_norm(fmap.flatten(2).transpose(1, 2))
        q = self.to_q(x)
        if hasattr(self, "to_kv"):
            k = v = self.to_kv(context)
        else:
            k, v = self.to_k(context), self.to_v(context)
        d = self.head_dim
        q = q.reshape(b, n, self.heads, d).transpose(1, 2)
        k, v = (t.reshape(b, -1, self.kv_heads, d).transpose(1, 2) for t in (k, v))
        if hasattr(self, "norm_q"):
            q, k = self.norm_q(q), self.norm_k(k)
        if self.kv_heads != self.heads:  # each key/value head serves heads / kv_heads query heads
            k, v = share_kv_heads(k, self.heads), share_kv_heads(v, self.heads)
        if self.kind == "relu":
            # ReLU attention (MobileDiffusion): no softmax; normalise by the number of keys.
            scores = torch.relu(q @ k.transpose(-1, -2) * (1.0 / math.sqrt(q.shape[-1])))
            out = scores @ v / k.shape[2]
        else:
            out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(1, 2).reshape(b, n, c)
        return self.to_out[0](out)


class GatedProjection(nn.Module):
    """GEGLU / SwiGLU: one projection to 2 x hidden, value * act(gate) (diffusers' GEGLU)."""

    def __init__(self, dim: int, hidden: int, act: str):
        super().__init__()
        self.proj = nn.Linear(dim, hidden * 2)
        self.act = F.gelu if act == "gelu" else F.silu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.proj(x).chunk(2, dim=-1)
        return value * self.act(gate)


class PlainProjection(nn.Module):
    def __init__(self, dim: int, hidden: int, act: str):
        super().__init__()
        self.proj = nn.Linear(dim, hidden)
        self.act = nn.GELU() if act == "gelu" else nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.proj(x))


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int, kind: str):
        super().__init__()
        first = {
            "geglu": lambda: GatedProjection(dim, hidden, "gelu"),
            "swiglu": lambda: GatedProjection(dim, hidden, "silu"),
            "gelu": lambda: PlainProjection(dim, hidden, "gelu"),
            "swish": lambda: PlainProjection(dim, hidden, "silu"),
        }[kind]()
        # index 1 is diffusers' dropout; keeping the slot keeps ff.net.2 as the output key
        self.net = nn.Sequential(first, nn.Identity(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class BasicTransformerBlock(nn.Module):
    def __init__(self, spec: TransformerBlock, dim: int, context_dim: int):
        super().__init__()
        heads = spec.num_heads(dim)
        common = dict(kv_heads=spec.kv_heads, qk_norm=spec.qk_norm)
        if spec.self_attention:
            self.norm1 = nn.LayerNorm(dim)
            self.attn1 = Attention(dim, dim, heads, spec.shared_kv, spec.attention, kv_compression=spec.kv_compression, **common)
        if spec.cross_attention:
            self.norm2 = nn.LayerNorm(dim)
            self.attn2 = Attention(dim, context_dim, heads, spec.shared_kv, spec.attention, **common)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, spec.ff_hidden(dim), spec.ff)

    def forward(self, x: torch.Tensor, context: torch.Tensor, hw: tuple[int, int] | None = None) -> torch.Tensor:
        if hasattr(self, "attn1"):
            x = self.attn1(self.norm1(x), hw=hw) + x
        if hasattr(self, "attn2"):
            x = self.attn2(self.norm2(x), context) + x
        return self.ff(self.norm3(x)) + x


class Transformer2D(nn.Module):
    def __init__(self, spec: TransformerBlock, channels: int, context_dim: int, groups: int):
        super().__init__()
        self.linear = spec.projection == "linear"
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6)
        proj = (lambda: nn.Linear(channels, channels)) if self.linear else (lambda: nn.Conv2d(channels, channels, 1))
        self.proj_in = proj()
        self.transformer_blocks = nn.ModuleList(BasicTransformerBlock(spec, channels, context_dim) for _ in range(spec.layers))
        self.proj_out = proj()

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        residual = x
        x = self.norm(x)
        if self.linear:
            x = self.proj_in(x.permute(0, 2, 3, 1).reshape(b, -1, c))  # -1, not h * w: no size arithmetic to trace
        else:
            x = self.proj_in(x).permute(0, 2, 3, 1).reshape(b, -1, c)
        for block in self.transformer_blocks:
            x = block(x, context, (h, w))
        # back to contiguous NCHW (as diffusers does): a permuted view would hand the next
        # convolutions channels-last input, which changes their kernels and their speed
        if self.linear:
            x = self.proj_out(x).reshape(b, h, w, c).permute(0, 3, 1, 2).contiguous()
        else:
            x = self.proj_out(x.reshape(b, h, w, c).permute(0, 3, 1, 2).contiguous())
        return x + residual


class Downsample2D(nn.Module):
    def __init__(self, spec: Downsample, channels: int):
        super().__init__()
        self.conv = make_conv(spec.conv, channels, channels, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample2D(nn.Module):
    def __init__(self, spec: Upsample, channels: int):
        super().__init__()
        self.conv = make_conv(spec.conv, channels, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def build_block(site: Site, *, time_dim: int, text_dim: int, groups: int) -> nn.Module:
    """The module for one placed block (the same module the whole-UNet builder uses)."""
    block = site.block
    if isinstance(block, ResnetBlock):
        return ResnetBlock2D(block, site.in_channels, site.out_channels, time_dim, groups)
    if isinstance(block, TransformerBlock):
        return Transformer2D(block, site.in_channels, text_dim, groups)
    if isinstance(block, Downsample):
        return Downsample2D(block, site.in_channels)
    if isinstance(block, Upsample):
        return Upsample2D(block, site.in_channels)
    raise TypeError(f"not a block: {block!r}")


def block_inputs(site: Site, *, batch: int, time_dim: int, text_dim: int, text_tokens: int,
                 dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
    """Example inputs for the module of ``site``, in its forward's order."""
    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator, dtype=torch.float32).to(device=device, dtype=dtype)

    x = randn(batch, site.in_channels, site.resolution, site.resolution)
    if isinstance(site.block, ResnetBlock):
        return x, randn(batch, time_dim)
    if isinstance(site.block, TransformerBlock):
        return x, randn(batch, text_tokens, text_dim)
    return (x,)
