"""The proxy rule: a full-size description shrunk so a candidate trains in minutes on a CPU.

A proxy keeps the candidate's topology exactly: the same levels, the same blocks in the
same order in every stage, self-/cross-attention where the candidate has them, separable
convs, FF kind and ratio, shared KV, attention kind and transformer depth. Only three
things change:

1. channel widths are multiplied by ``width`` (rounded to multiples of 8; head counts kept
   where they divide the new width and leave heads ``min_head_dim`` (16) wide, else the
   largest count that does; GroupNorm groups the largest divisor of 32 that fits);
2. the feature maps shrink with the input: ``resolution`` replaces the latent side, so each
   level keeps its place in the pyramid (level i is resolution / 2^i);
3. the input is the data's (3 pixel channels on the synthetic domain, or a VAE's latent
   channels) and the text the encoder's (its width x its tokens).

What goes on at 64x64 in the full model goes on at the proxy's top level, so where
attention sits (and so what it costs and adds) ranks candidates the same way, as far as a
smaller model can. With ``width: 1`` and ``resolution: null`` the proxy is the full model
(a pretrained UNet fine-tuned in place).

>>> from archlab import preset, count
>>> p = proxy_description(preset("mobilediffusion"), ProxyConfig(), channels=3, text_dim=64, text_tokens=20)
>>> p.channels, p.resolution, count(p).self_attention
((40, 80, 128), 16, 15)
"""

from __future__ import annotations

from archlab.arch.description import Description
from archlab.arch.scaling import scale
from archlab.quality.config import ProxyConfig


def proxy_description(desc: Description, cfg: ProxyConfig, *, channels: int, text_dim: int, text_tokens: int) -> Description:
    """``desc`` under the proxy rule, for data of ``channels`` and a text encoder of ``text_dim`` x ``text_tokens``."""
    small = desc if cfg.width == 1 and cfg.resolution is None else \
        scale(desc, width=cfg.width, resolution=cfg.resolution, min_head_dim=cfg.min_head_dim)
    changes = dict(in_channels=channels, out_channels=channels, text_dim=text_dim, text_tokens=text_tokens)
    if all(getattr(small, k) == v for k, v in changes.items()):
        return small
    return small.replace(name=f"{desc.name}-proxy", **changes)
