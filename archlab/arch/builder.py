"""Build a description into a PyTorch UNet whose submodules mirror it one to one.

``model.stages["down1"][2]`` is the module of ``stages.down1.blocks[2]``; the stem
(``conv_in``, ``time_embedding``, ``add_embedding``) and head (``conv_norm_out``,
``conv_out``) keep diffusers' names.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from archlab.arch.description import Description, ResnetBlock, TransformerBlock, layout
from archlab.arch.modules import build_block


def timestep_embedding(timesteps: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding as diffusers' Timesteps(dim, flip_sin_to_cos=True, shift=0)."""
    half = dim // 2
    exponent = -math.log(10000) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half
    args = timesteps.float()[:, None] * torch.exp(exponent)[None, :]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.nn.functional.pad(emb, (0, 1))
    return emb


class TimestepEmbedding(nn.Module):
    def __init__(self, in_features: int, dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(in_features, dim)
        self.act = nn.SiLU()
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(x)))


class UNet(nn.Module):
    """``forward(latents, timesteps, text_embeddings)`` -> predicted noise (or v).

    SDXL-style descriptions (``addition``) also take ``pooled_text`` and ``time_ids``;
    zeros stand in when they are not given.
    """

    def __init__(self, desc: Description):
        super().__init__()
        self.description = desc
        c0, t = desc.channels[0], desc.time_embed_dim
        self.conv_in = nn.Conv2d(desc.in_channels, c0, 3, padding=1)
        self.time_embedding = TimestepEmbedding(c0, t)
        if desc.addition is not None:
            self.add_embedding = TimestepEmbedding(desc.addition.in_features, t)
        self.layout = tuple(layout(desc))
        self.stages = nn.ModuleDict({s.name: nn.ModuleList() for s in desc.stages})
        for site in self.layout:
            self.stages[site.stage].append(build_block(site, time_dim=t, text_dim=desc.text_dim, groups=desc.norm_groups))
        self.conv_norm_out = nn.GroupNorm(desc.norm_groups, c0, eps=1e-5)
        self.conv_act = nn.SiLU()
        self.conv_out = nn.Conv2d(c0, desc.out_channels, 3, padding=1)

    def embed_time(self, timesteps: torch.Tensor, batch: int, pooled_text: torch.Tensor | None = None,
                   time_ids: torch.Tensor | None = None) -> torch.Tensor:
        desc = self.description
        if timesteps.ndim == 0:
            timesteps = timesteps[None]
        timesteps = timesteps.expand(batch)
        dtype = self.conv_in.weight.dtype
        emb = self.time_embedding(timestep_embedding(timesteps, desc.channels[0]).to(dtype))
        if desc.addition is not None:
            add = desc.addition
            if pooled_text is None:
                pooled_text = torch.zeros(batch, add.pooled_dim, dtype=dtype, device=emb.device)
            if time_ids is None:
                time_ids = torch.zeros(batch, add.time_ids, dtype=dtype, device=emb.device)
            ids = timestep_embedding(time_ids.flatten(), add.time_proj_dim).reshape(batch, -1).to(dtype)
            emb = emb + self.add_embedding(torch.cat([pooled_text.to(dtype), ids], dim=-1))
        return emb

    def forward(self, latents: torch.Tensor, timesteps: torch.Tensor | float | int, text_embeddings: torch.Tensor,
                pooled_text: torch.Tensor | None = None, time_ids: torch.Tensor | None = None,
                skip_blocks: frozenset[str] = frozenset()) -> torch.Tensor:
        """``skip_blocks`` names blocks (``"mid.1"``) to replace by the identity: SnapFusion's
        stochastic depth in training and its block-removal evaluation. Only blocks that
        :func:`~archlab.arch.description.removable` lists may be skipped."""
        h = self.run(latents, timesteps, text_embeddings, pooled_text, time_ids, skip_blocks)
        return self.conv_out(self.conv_act(self.conv_norm_out(h)))

    def features(self, latents: torch.Tensor, timesteps: torch.Tensor | float | int, text_embeddings: torch.Tensor) -> torch.Tensor:
        """The encoder's output: the feature map after the mid stage (a discriminator's trunk in one-step GAN finetuning)."""
        return self.run(latents, timesteps, text_embeddings, through="mid")

    def run(self, latents: torch.Tensor, timesteps: torch.Tensor | float | int, text_embeddings: torch.Tensor,
            pooled_text: torch.Tensor | None = None, time_ids: torch.Tensor | None = None,
            skip_blocks: frozenset[str] = frozenset(), through: str | None = None) -> torch.Tensor:
        """The feature map after every block (or after stage ``through``), before the output head."""
        if not torch.is_tensor(timesteps):
            timesteps = torch.tensor([timesteps], device=latents.device)
        temb = self.embed_time(timesteps.to(latents.device), latents.shape[0], pooled_text, time_ids)
        h = self.conv_in(latents)
        skips: list[list[torch.Tensor]] = [[h]] + [[] for _ in self.description.channels[1:]]
        last = max((i for i, s in enumerate(self.layout) if s.stage == through), default=None) if through else None
        for i, site in enumerate(self.layout):
            module = self.stages[site.stage][site.index]
            if site.push_before:
                skips[site.level].append(h)
            if site.skip_channels:
                h = torch.cat([h, skips[site.level].pop()], dim=1)
            if skip_blocks and site.name in skip_blocks:
                pass
            elif isinstance(site.block, ResnetBlock):
                h = module(h, temb)
            elif isinstance(site.block, TransformerBlock):
                h = module(h, text_embeddings)
            else:
                h = module(h)
            if site.push_after is not None:
                skips[site.push_after].append(h)
            if i == last:
                break
        return h

    def block(self, stage: str, index: int) -> nn.Module:
        return self.stages[stage][index]


def build(desc: Description) -> UNet:
    """Build the UNet of a description (random init, float32, CPU).

    >>> import torch
    >>> from archlab import build, preset
    >>> model = build(preset("tiny"))
    >>> desc = model.description
    >>> x = torch.randn(1, desc.in_channels, 16, 16)
    >>> model(x, torch.tensor([10]), torch.randn(1, desc.text_tokens, desc.text_dim)).shape
    torch.Size([1, 4, 16, 16])
    """
    return UNet(desc)
