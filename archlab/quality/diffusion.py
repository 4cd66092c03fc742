"""DDPM training targets and DDIM sampling with classifier-free guidance."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import torch

from archlab.config import require

PREDICTIONS = ("eps", "v")


@dataclass(frozen=True)
class Schedule:
    """A discrete DDPM noise schedule of ``steps`` timesteps."""

    steps: int = 1000
    kind: Literal["linear", "scaled_linear"] = "linear"  # DDPM's, or Stable Diffusion's
    beta_start: float = 1e-4
    beta_end: float = 0.02

    def __post_init__(self) -> None:
        require(self.steps >= 2, "steps", f"{self.steps} must be at least 2")
        require(0 < self.beta_start < self.beta_end < 1, "beta_end", f"betas must satisfy 0 < {self.beta_start} < {self.beta_end} < 1")

    def alphas_cumprod(self) -> torch.Tensor:
        if self.kind == "linear":
            betas = torch.linspace(self.beta_start, self.beta_end, self.steps, dtype=torch.float64)
        else:
            betas = torch.linspace(self.beta_start**0.5, self.beta_end**0.5, self.steps, dtype=torch.float64) ** 2
        return torch.cumprod(1.0 - betas, 0).float()


def noisy(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, acp: torch.Tensor) -> torch.Tensor:
    a = acp[t].view(-1, 1, 1, 1)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def target(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, acp: torch.Tensor, prediction: str) -> torch.Tensor:
    """What the network learns to output: the noise (eps) or v = sqrt(a) eps - sqrt(1-a) x0."""
    if prediction == "eps":
        return noise
    a = acp[t].view(-1, 1, 1, 1)
    return a.sqrt() * noise - (1 - a).sqrt() * x0


def to_eps_x0(out: torch.Tensor, x_t: torch.Tensor, a: torch.Tensor, prediction: str) -> tuple[torch.Tensor, torch.Tensor]:
    if prediction == "eps":
        eps = out
        x0 = (x_t - (1 - a).sqrt() * eps) / a.sqrt()
    else:
        x0 = a.sqrt() * x_t - (1 - a).sqrt() * out
        eps = (1 - a).sqrt() * x_t + a.sqrt() * out
    return eps, x0


def ddim_times(schedule: Schedule, steps: int) -> torch.Tensor:
    """``steps`` timesteps from the noisiest to 0, evenly spread (DDIM's direct schedule)."""
    return torch.linspace(schedule.steps - 1, 0, steps).round().long()


def ddim_step(x: torch.Tensor, out: torch.Tensor, a: torch.Tensor, a_next: torch.Tensor, prediction: str,
              clip: float | None = 1.0) -> torch.Tensor:
    """One deterministic DDIM step (eta 0) from alpha-bar ``a`` to ``a_next`` given the model's output.

    ``clip`` bounds the predicted clean sample (pixels live in [-1, 1]; None for latents).
    """
    eps, x0 = to_eps_x0(out, x, a, prediction)
    if clip is not None:
        x0 = x0.clamp(-clip, clip)
        eps = (x - a.sqrt() * x0) / (1 - a).sqrt().clamp(min=1e-8)
    return a_next.sqrt() * x0 + (1 - a_next).sqrt() * eps


def guided(model: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor, t: torch.Tensor,
           cond: torch.Tensor, uncond: torch.Tensor, guidance: float) -> torch.Tensor:
    """Classifier-free guidance: out_u + w (out_c - out_u), both halves in one batch."""
    if guidance == 1.0:
        return model(x, t, cond)
    out_u, out_c = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([uncond, cond])).chunk(2)
    return out_u + guidance * (out_c - out_u)


@torch.no_grad()
def ddim_sample(model: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor], shape: tuple[int, ...],
                cond: torch.Tensor, uncond: torch.Tensor, *, schedule: Schedule, steps: int = 20, guidance: float = 3.0,
                prediction: str = "eps", generator: torch.Generator | None = None, clip: float | None = 1.0) -> torch.Tensor:
    """Deterministic DDIM (eta 0) in ``steps`` steps with guidance ``w``.

    The starting noise is drawn on the CPU from ``generator`` and moved to the text's device,
    so every candidate (and every device) starts from the same noise.
    """
    device = cond.device
    acp = schedule.alphas_cumprod().to(device)
    times = ddim_times(schedule, steps)
    x = torch.randn(shape, generator=generator).to(device)
    for i, t in enumerate(times):
        out = guided(model, x, torch.full((shape[0],), float(t), device=device), cond, uncond, guidance)
        a_next = acp[times[i + 1]] if i + 1 < len(times) else torch.ones((), device=device)
        x = ddim_step(x, out.float(), acp[t], a_next, prediction, clip)
    return x.clamp(-clip, clip) if clip is not None else x
