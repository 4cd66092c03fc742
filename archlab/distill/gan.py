"""One-step diffusion-GAN finetuning (UFOGen / DiffusionGAN, as MobileDiffusion describes it).

Generator and discriminator both start from the diffusion UNet: the generator *is* a copy of
it; the discriminator is its encoder (stem, down stages and mid stage, which already attend
to the text) with a small head (GroupNorm, SiLU, global average pooling, a linear layer).
Each iteration, for a clean sample x0 and a level t in [``min_timestep``, T - 1]:

- the generator denoises x_t = alpha_t x0 + sigma_t eps in one step to x0_hat;
- its reconstruction loss is ||x0_hat - x0||^2, as in diffusion training;
- noise is added to x0_hat and to x0 at a level t' in [0, ``discriminator_max_timestep``], and
  the discriminator (given t' and the caption) tells them apart: a non-saturating GAN loss
  for both, the generator's weighted by ``adversarial_weight``.

Sampling is then one step from pure noise (t = T - 1). Batches, levels and noise derive
from ``(seed, step)``; checkpoints (generator, discriminator, both optimizers) are safetensors.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from archlab.arch.builder import UNet
from archlab.config import to_data
from archlab.distill.config import GanConfig
from archlab.distill.step import StageLoop
from archlab.quality.diffusion import noisy, to_eps_x0
from archlab.quality.pipeline import QualityPipeline
from archlab.quality.train import (
    ProxyModel,
    autocast,
    draw_batch,
    pack_optimizer,
    read_checkpoint,
    unpack_optimizer,
    write_checkpoint,
)

CHECKPOINT = "gan-checkpoint.safetensors"
ENCODER = ("conv_in.", "time_embedding.", "add_embedding.", "stages.down", "stages.mid.")


class Discriminator(nn.Module):
    """The diffusion UNet's encoder (its weights copied) and a small head: a logit per image."""

    def __init__(self, unet: UNet):
        super().__init__()
        self.trunk = copy.deepcopy(unet)
        channels = unet.description.channels[-1]
        self.head = nn.Sequential(nn.GroupNorm(unet.description.norm_groups, channels), nn.SiLU(), nn.AdaptiveAvgPool2d(1),
                                  nn.Flatten(), nn.Linear(channels, 1))

    def trained_parameters(self) -> list[nn.Parameter]:
        """The encoder's and the head's parameters (the copied decoder is never used)."""
        return [p for n, p in self.trunk.named_parameters() if n.startswith(ENCODER)] + list(self.head.parameters())

    def forward(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk.features(x, t, context)).squeeze(1)


class GanFinetuner(StageLoop):
    """Turns a diffusion model (``init``) into a one-step generator."""

    label, checkpoint = "one-step GAN finetuning", CHECKPOINT

    def __init__(self, init: ProxyModel, pipeline: QualityPipeline, cfg: GanConfig, *, out_dir: str | Path | None = None):
        self.pipe, self.cfg = pipeline, cfg
        self.generator = self.trained = copy.deepcopy(init).train()
        self.generator.text.requires_grad_(False)
        self.generator.unet.requires_grad_(True)
        torch.manual_seed(cfg.seed)  # the discriminator's new head: the same start every run
        self.discriminator = Discriminator(init.unet).to(pipeline.device).train()
        self.device, self.precision = pipeline.device, pipeline.precision
        train = pipeline.cfg.train
        self.schedule, self.prediction = train.schedule, train.prediction
        self.acp = train.schedule.alphas_cumprod().to(self.device)
        self.data = pipeline.data(init.description.resolution).train
        if not cfg.min_timestep < train.schedule.steps:
            from archlab.errors import ConfigError

            raise ConfigError("gan.min_timestep", f"{cfg.min_timestep} is past the schedule's {train.schedule.steps} steps")
        betas = (0.5, 0.999)  # a GAN's usual Adam momentum
        self.opt_g = torch.optim.AdamW(self.generator.unet.parameters(), lr=cfg.lr_generator, betas=betas, weight_decay=0.0, fused=True)
        self.opt_d = torch.optim.AdamW(self.discriminator.trained_parameters(), lr=cfg.lr_discriminator, betas=betas,
                                       weight_decay=0.0, fused=True)
        self.step = 0
        self.out_dir = Path(out_dir) if out_dir else None
        if self.out_dir is not None and (self.out_dir / CHECKPOINT).exists():
            self.load(self.out_dir / CHECKPOINT)

    def iteration(self, step: int) -> float:
        """One discriminator step and one generator step; the reconstruction loss is what is reported."""
        return self.losses(step)["reconstruction"]

    def losses(self, step: int) -> dict[str, float]:
        cfg, steps = self.cfg, self.schedule.steps
        x0, captions = draw_batch(self.data, np.random.default_rng([cfg.seed, step]), cfg.batch)
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        t = torch.randint(cfg.min_timestep, steps, (x0.shape[0],), generator=g)
        t_d = torch.randint(0, min(cfg.discriminator_max_timestep, steps - 1) + 1, (x0.shape[0],), generator=g)
        noise, noise_real, noise_fake = (torch.randn(x0.shape, generator=g) for _ in range(3))
        x0, t, t_d = x0.to(self.device), t.to(self.device), t_d.to(self.device)
        noise, noise_real, noise_fake = noise.to(self.device), noise_real.to(self.device), noise_fake.to(self.device)
        context = self.generator.encode(captions)
        x_t = noisy(x0, noise, t, self.acp)
        with autocast(self.device, self.precision):
            out = self.generator(x_t, t.float(), context).float()
        x0_hat = to_eps_x0(out, x_t, self.acp[t].view(-1, 1, 1, 1), self.prediction)[1]
        real = noisy(x0, noise_real, t_d, self.acp)
        fake = noisy(x0_hat, noise_fake, t_d, self.acp)
        # the discriminator's step: real noised images against generated ones
        self.discriminator.requires_grad_(True)
        with autocast(self.device, self.precision):
            d_real = self.discriminator(real, t_d.float(), context).float()
            d_fake = self.discriminator(fake.detach(), t_d.float(), context).float()
        d_loss = F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        torch.nn.utils.clip_grad_norm_(self.discriminator.trained_parameters(), 1.0)
        self.opt_d.step()
        # the generator's step: reconstruct, and fool the (now fixed) discriminator
        self.discriminator.requires_grad_(False)
        with autocast(self.device, self.precision):
            adversarial = F.softplus(-self.discriminator(fake, t_d.float(), context).float()).mean()
        reconstruction = F.mse_loss(x0_hat, x0)
        g_loss = reconstruction + cfg.adversarial_weight * adversarial
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        torch.nn.utils.clip_grad_norm_(self.generator.unet.parameters(), 1.0)
        self.opt_g.step()
        return {"generator": g_loss.item(), "reconstruction": reconstruction.item(), "adversarial": adversarial.item(),
                "discriminator": d_loss.item()}

    def save(self, path: Path) -> None:
        tensors = {f"generator.{k}": v.detach().contiguous().cpu() for k, v in self.generator.unet.state_dict().items()}
        tensors.update({f"discriminator.{k}": v.detach().contiguous().cpu() for k, v in self.discriminator.state_dict().items()})
        tensors.update(pack_optimizer("optim_g", self.opt_g))
        tensors.update(pack_optimizer("optim_d", self.opt_d))
        write_checkpoint(path, tensors, {"step": str(self.step), "config": json.dumps(to_data(self.cfg)),
                                         "description": json.dumps(self.generator.description.to_dict())})

    def load(self, path: Path) -> None:
        meta, tensors = read_checkpoint(path, self.generator.description, device=self.device)
        self.generator.unet.load_state_dict({k[10:]: v for k, v in tensors.items() if k.startswith("generator.")})
        self.discriminator.load_state_dict({k[14:]: v for k, v in tensors.items() if k.startswith("discriminator.")})
        unpack_optimizer("optim_g", self.opt_g, tensors)
        unpack_optimizer("optim_d", self.opt_d, tensors)
        self.step = int(meta["step"])
