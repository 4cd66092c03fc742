"""Latent data: images encoded once by a local diffusers AutoencoderKL and cached.

The VAE is read from a local folder (``config.json`` + safetensors); nothing is
downloaded. Latents are scaled by the VAE's ``scaling_factor`` and cached as safetensors,
one file per image index, so a second candidate trains on the same latents for free.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from archlab.errors import ConfigError
from archlab.quality.data import CaptionedImages


def load_vae(folder: str | Path):
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise ConfigError("vae", f"{folder} has no config.json (give a local diffusers AutoencoderKL folder)")
    try:
        from diffusers import AutoencoderKL
    except ImportError:
        raise ConfigError("vae", "diffusers is not installed (pip install diffusers)") from None
    return AutoencoderKL.from_pretrained(str(folder), local_files_only=True, use_safetensors=True).eval()


class LatentData:
    """Wraps captioned images: ``get(i)`` returns a float32 latent (C, r, r) instead of pixels."""

    def __init__(self, data: CaptionedImages, vae_folder: str | Path, *, cache: str | Path):
        self.data = data
        self.vae = load_vae(vae_folder)
        self.scale = float(getattr(self.vae.config, "scaling_factor", 0.18215))
        self.channels = int(self.vae.config.latent_channels)
        factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.resolution = data.resolution // factor
        tag = hashlib.sha1(f"{Path(vae_folder).resolve()}@{data.resolution}".encode()).hexdigest()[:12]
        self.cache = Path(cache) / f"latents-{tag}"
        self.cache.mkdir(parents=True, exist_ok=True)

    def __len__(self) -> int:
        return len(self.data)

    @torch.no_grad()
    def get(self, index: int) -> tuple[np.ndarray, str]:
        path = self.cache / f"{index}.safetensors"
        image, caption = self.data.get(index)
        if path.exists():
            return load_file(str(path))["latent"].numpy(), caption
        x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 127.5 - 1.0
        latent = self.vae.encode(x).latent_dist.mean[0] * self.scale
        save_file({"latent": latent.contiguous()}, str(path))
        return latent.numpy(), caption
