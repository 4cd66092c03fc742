"""DDPM training targets and DDIM sampling with classifier-free guidance."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from archlab.errors import ConfigError

PREDICTIONS = ("eps", "v")


@dataclass(frozen=True)
class Schedule:
    """A discrete DDPM noise schedule of ``steps`` timesteps."""

    steps: int = 1000
    kind: str = "linear"  # "linear" (DDPM) or "scaled_linear" (Stable Diffusion)
    beta_start: float = 1e-4
    beta_end: float = 0.02

    def alphas_cumprod(self) -> torch.Tensor:
        if self.kind == "linear":
            betas = torch.linspace(self.beta_start, self.beta_end, self.steps, dtype=torch.float64)
        elif self.kind == "scaled_linear":
            betas = torch.linspace(self.beta_start**0.5, self.beta_end**0.5, self.steps, dtype=torch.float64) ** 2
        else:
            raise ConfigError("schedule.kind", f"{self.kind!r} is not one of linear, scaled_linear")
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


@torch.no_grad()
def ddim_sample(model: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor], shape: tuple[int, ...],
                cond: torch.Tensor, uncond: torch.Tensor, *, schedule: Schedule, steps: int = 20, guidance: float = 3.0,
                prediction: str = "eps", generator: torch.Generator | None = None) -> torch.Tensor:
    """Deterministic DDIM (eta 0) in ``steps`` steps; guidance w: eps_u + w (eps_c - eps_u)."""
    acp = schedule.alphas_cumprod()
    times = torch.linspace(schedule.steps - 1, 0, steps).round().long()
    x = torch.randn(shape, generator=generator)
    both = torch.cat([uncond, cond])
    for i, t in enumerate(times):
        a = acp[t]
        out = model(torch.cat([x, x]), torch.full((2 * shape[0],), float(t)), both)
        out_u, out_c = out.chunk(2)
        out = out_u + guidance * (out_c - out_u)
        eps, x0 = to_eps_x0(out, x, a, prediction)
        x0 = x0.clamp(-1, 1)
        a_next = acp[times[i + 1]] if i + 1 < len(times) else torch.tensor(1.0)
        x = a_next.sqrt() * x0 + (1 - a_next).sqrt() * eps
    return x.clamp(-1, 1)
