"""Quality metrics of a proxy, each named and documented.

- ``heldout_loss``: the training loss (eps or v MSE) on held-out images at fixed
  (timestep, noise) pairs: deterministic, cheap, lower is better.
- ``eval_score`` (synthetic domain): images sampled with DDIM (k steps, CFG scale w) for
  held-out captions, parsed by the exact evaluator; the mean per-attribute accuracy, 0..1,
  higher is better; ``eval_<attribute>`` for each attribute.
- ``fd`` (synthetic domain): Fréchet distance between the evaluator's features of the
  samples and of real held-out images; lower is better.
- ``clip_score`` (real data, with a local open_clip model): 100 x cosine similarity of
  sample and caption embeddings, as SnapFusion and MobileDiffusion report it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from archlab.quality.data import CaptionedImages, SyntheticData
from archlab.quality.diffusion import Schedule, ddim_sample, noisy, target
from archlab.quality.synthetic import evaluate_many, frechet_distance
from archlab.quality.train import ProxyModel, images_to_tensor

HELDOUT_OFFSET = 10_000_000  # synthetic scenes from here on are never trained on


@dataclass(frozen=True)
class EvalConfig:
    heldout: int = 64  # images for the held-out loss
    samples: int = 64  # captions sampled for eval_score / fd
    ddim_steps: int = 20
    guidance: float = 3.0
    seed: int = 1234


def heldout_set(data: CaptionedImages, n: int) -> CaptionedImages:
    if isinstance(data, SyntheticData):
        return SyntheticData(seed=data.seed, resolution=data.resolution, size=n, offset=HELDOUT_OFFSET)
    return data  # real data: the caller passes a held-out split


@torch.no_grad()
def heldout_loss(model: ProxyModel, data: CaptionedImages, *, schedule: Schedule, prediction: str, n: int = 64,
                 seed: int = 1234, skip_blocks: frozenset[str] = frozenset(), batch: int = 32) -> float:
    """Mean loss over n held-out images, timesteps evenly spread, noise from ``seed``."""
    model.eval()
    acp = schedule.alphas_cumprod()
    g = torch.Generator().manual_seed(seed)
    ts = torch.linspace(0, schedule.steps - 1, n).round().long()
    total = 0.0
    for start in range(0, n, batch):
        pairs = [data.get(i) for i in range(start, min(n, start + batch))]
        x0 = images_to_tensor([p[0] for p in pairs])
        t = ts[start:start + len(pairs)]
        noise = torch.randn(x0.shape, generator=g)
        out = model(noisy(x0, noise, t, acp), t.float(), model.text([p[1] for p in pairs]), skip_blocks=skip_blocks)
        total += F.mse_loss(out, target(x0, noise, t, acp, prediction), reduction="sum").item() / x0[0].numel()
    return total / n


@torch.no_grad()
def sample_images(model: ProxyModel, captions: list[str], *, schedule: Schedule, prediction: str, cfg: EvalConfig,
                  skip_blocks: frozenset[str] = frozenset()) -> list[np.ndarray]:
    model.eval()
    desc = model.description
    g = torch.Generator().manual_seed(cfg.seed)
    out = []
    for start in range(0, len(captions), 32):
        chunk = captions[start:start + 32]
        cond, uncond = model.text(chunk), model.text([""] * len(chunk))
        x = ddim_sample(lambda x, t, c: model(x, t, c, skip_blocks=skip_blocks),
                        (len(chunk), desc.in_channels, desc.resolution, desc.resolution), cond, uncond,
                        schedule=schedule, steps=cfg.ddim_steps, guidance=cfg.guidance, prediction=prediction, generator=g)
        out.extend(((x.permute(0, 2, 3, 1).numpy() + 1) * 127.5).clip(0, 255).astype(np.uint8))
    return out


def evaluate_proxy(model: ProxyModel, data: CaptionedImages, *, schedule: Schedule, prediction: str,
                   cfg: EvalConfig = EvalConfig(), skip_blocks: frozenset[str] = frozenset(),
                   captions_override: list[str] | None = None) -> dict[str, Any]:
    """Every metric that applies to ``data`` (see the module docstring)."""
    held = heldout_set(data, max(cfg.heldout, cfg.samples))
    result: dict[str, Any] = {"heldout_loss": heldout_loss(model, held, schedule=schedule, prediction=prediction,
                                                           n=min(cfg.heldout, len(held)), seed=cfg.seed, skip_blocks=skip_blocks)}
    if isinstance(held, SyntheticData):
        scenes = [held.scene(i) for i in range(cfg.samples)]
        captions = captions_override or [s.caption for s in scenes]
        images = sample_images(model, captions, schedule=schedule, prediction=prediction, cfg=cfg, skip_blocks=skip_blocks)
        scores = evaluate_many(images, scenes)
        result["eval_score"] = scores.pop("score")
        result.update({f"eval_{k}": v for k, v in scores.items()})
        result["fd"] = frechet_distance(images, [held.get(i)[0] for i in range(cfg.samples)])
    return result
