"""Latent data: images encoded once by a local diffusers AutoencoderKL and cached.

The VAE is read from a local folder (``config.json`` + safetensors); nothing is
downloaded. Latents are scaled by the VAE's ``scaling_factor`` and cached as safetensors,
one file per image, so every later candidate trains on the same latents for free. The same
VAE decodes samples back to pixels for ``clip_score``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from archlab.errors import ConfigError
from archlab.quality.data import CaptionedImages


def load_vae(folder: str | Path):
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise ConfigError("data.vae", f"{folder} has no config.json (give a local diffusers AutoencoderKL folder)")
    try:
        from diffusers import AutoencoderKL
    except ImportError:
        raise ConfigError("data.vae", "diffusers is not installed (pip install diffusers)") from None
    return AutoencoderKL.from_pretrained(str(folder), local_files_only=True, use_safetensors=True).eval().requires_grad_(False)


def vae_factor(folder: str | Path) -> int:
    """How many pixels one latent spans (8 for SD's VAE), from the config alone."""
    import json

    config = json.loads((Path(folder) / "config.json").read_text())
    return 2 ** (len(config.get("block_out_channels", (1,))) - 1)


class LatentData:
    """Wraps captioned images: ``get(i)`` returns a float32 latent (C, r, r) instead of pixels."""

    def __init__(self, data: CaptionedImages, vae_folder: str | Path, *, cache: str | Path, device: str = "cpu"):
        self.data = data
        self.vae = load_vae(vae_folder).to(device)
        self.device = device
        self.scale = float(getattr(self.vae.config, "scaling_factor", 0.18215))
        self.channels = int(self.vae.config.latent_channels)
        self.factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.resolution = data.resolution // self.factor
        tag = hashlib.sha1(f"{Path(vae_folder).resolve()}@{data.resolution}".encode()).hexdigest()[:12]
        self.cache = Path(cache) / f"latents-{tag}"  # made on the first latent stored

    def __len__(self) -> int:
        return len(self.data)

    @torch.no_grad()
    def get(self, index: int) -> tuple[np.ndarray, str]:
        path = self.cache / f"{index}.safetensors"
        image, caption = self.data.get(index)
        if path.exists():
            return load_file(str(path))["latent"].numpy(), caption
        x = torch.from_numpy(image).permute(2, 0, 1)[None].float().to(self.device) / 127.5 - 1.0
        latent = (self.vae.encode(x).latent_dist.mean[0] * self.scale).float().cpu()
        self.cache.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        save_file({"latent": latent.contiguous()}, str(tmp))
        os.replace(tmp, path)
        return latent.numpy(), caption

    def captions(self) -> Iterable[str]:
        return self.data.captions()

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents (B, C, r, r) to images in [0, 1], (B, 3, R, R)."""
        images = self.vae.decode(latents.to(self.device, torch.float32) / self.scale).sample
        return ((images.float().clamp(-1, 1) + 1) / 2).cpu()
