"""Quality metrics of a proxy, each with its standard error.

Every metric is measured with common random numbers: the same held-out images, timesteps,
noise, captions and sampling noise for every candidate (all seeded by ``EvalConfig.seed``),
so differences between candidates are not differences in the draw. Each per-item metric
keeps its items, so two models (or a model with and without a block) can be compared
pair by pair (:func:`paired`), which cancels most of the items' own spread.

- ``heldout_loss``: the training loss (eps or v MSE) per held-out image at fixed, evenly
  spread timesteps and fixed noise; lower is better.
- ``text_gap``: how much the model uses its text: the same loss with each image given
  another image's caption minus the loss with its own; higher is better. Needs no sampling.
- ``eval_score`` (synthetic domain): images sampled with DDIM (k steps, CFG scale w) for
  held-out captions, parsed by the exact evaluator; per caption the mean per-attribute
  accuracy, 0..1, higher is better; ``eval_<attribute>`` for each attribute.
- ``fd`` (synthetic domain): Fréchet distance between the evaluator's features of the
  samples and of real held-out images (lower is better); its standard error is a bootstrap
  over both sets. Like FID it is biased at small sample sizes: compare at equal sizes.
- ``clip_score`` (with a local OpenCLIP model): 100 x cosine of sample and caption
  embeddings per caption, as SnapFusion and MobileDiffusion report it; higher is better.
- ``few_step_score``: eval_score (or clip_score on real data) of a copy distilled briefly to
  a few sampling steps (``EvalConfig.few_step``): how well the candidate survives step
  reduction; higher is better.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from archlab.quality.config import EvalConfig
from archlab.quality.diffusion import Schedule, ddim_sample, noisy, target
from archlab.quality.synthetic import Scene, evaluate, features, frechet_of_features
from archlab.quality.train import ProxyModel, autocast, images_to_tensor


@dataclass(frozen=True)
class Estimate:
    """A measured value with its standard error over ``n`` items."""

    value: float
    se: float
    n: int

    def __str__(self) -> str:
        return f"{self.value:.4g} ± {self.se:.2g}"

    def as_dict(self) -> dict[str, float]:
        return {"value": self.value, "se": self.se, "n": self.n}

    def within(self, k: float = 2.0) -> bool:
        """Whether zero lies within ``k`` standard errors of the value (a difference that is noise)."""
        return abs(self.value) <= k * self.se


def mean_se(values: Sequence[float] | np.ndarray) -> Estimate:
    """Mean and its standard error (sample standard deviation / sqrt(n))."""
    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        return Estimate(math.nan, math.nan, 0)
    se = float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else math.nan
    return Estimate(float(x.mean()), se, len(x))


def paired(a: np.ndarray, b: np.ndarray) -> Estimate:
    """``b - a`` item by item: the difference of two measurements on the same items, with its SE."""
    return mean_se(np.asarray(b, float) - np.asarray(a, float))


def mismatched(captions: Sequence[str]) -> list[str]:
    """Each item's caption replaced by the next item's (a fixed derangement of the held-out set)."""
    return list(captions[1:]) + list(captions[:1])


@torch.no_grad()
def item_losses(model: ProxyModel, items: Sequence[tuple[np.ndarray, str]], *, schedule: Schedule, prediction: str,
                seed: int, batch: int = 64, captions: Sequence[str] | None = None, skip_blocks: frozenset[str] = frozenset(),
                precision: str = "fp32", against: ProxyModel | None = None) -> np.ndarray:
    """The loss of every held-out item at fixed timesteps (evenly spread) and noise (from ``seed``); with
    ``against`` (another model), the distance to that model's prediction instead of to the target."""
    model.eval()
    device = model.device
    acp = schedule.alphas_cumprod().to(device)
    n = len(items)
    ts = torch.linspace(0, schedule.steps - 1, n).round().long()
    g = torch.Generator().manual_seed(seed)
    texts = list(captions) if captions is not None else [c for _, c in items]
    out = np.empty(n)
    for start in range(0, n, batch):
        chunk = items[start:start + batch]
        x0 = images_to_tensor([x for x, _ in chunk])
        noise = torch.randn(x0.shape, generator=g)
        x0, noise, t = x0.to(device), noise.to(device), ts[start:start + len(chunk)].to(device)
        with autocast(str(device), precision):
            xt, chunk_texts = noisy(x0, noise, t, acp), texts[start:start + len(chunk)]
            pred = model(xt, t.float(), model.encode(chunk_texts), skip_blocks=skip_blocks)
            goal = target(x0, noise, t, acp, prediction) if against is None else \
                against(xt, t.float(), against.encode(chunk_texts)).float()
        err = F.mse_loss(pred.float(), goal, reduction="none")
        out[start:start + len(chunk)] = err.flatten(1).mean(1).cpu().numpy()
    return out


@torch.no_grad()
def sample(model: ProxyModel, captions: Sequence[str], *, schedule: Schedule, prediction: str, cfg: EvalConfig,
           clip: float | None = 1.0, skip_blocks: frozenset[str] = frozenset(), precision: str = "fp32",
           steps: int | None = None, guidance: float | None = None) -> torch.Tensor:
    """Samples for ``captions`` in the model's space (pixels in [-1, 1] or latents), on the CPU."""
    model.eval()
    desc = model.description
    g = torch.Generator().manual_seed(cfg.seed)
    out = []
    fn = lambda x, t, c: model(x, t, c, skip_blocks=skip_blocks)  # noqa: E731
    for start in range(0, len(captions), cfg.batch):
        chunk = list(captions[start:start + cfg.batch])
        cond, uncond = model.encode(chunk), model.encode([""] * len(chunk))
        with autocast(str(model.device), precision):
            x = ddim_sample(fn, (len(chunk), desc.in_channels, desc.resolution, desc.resolution), cond, uncond,
                            schedule=schedule, steps=steps or cfg.ddim_steps, guidance=cfg.guidance if guidance is None else guidance,
                            prediction=prediction, generator=g, clip=clip)
        out.append(x.float().cpu())
    return torch.cat(out)


def to_uint8(pixels: torch.Tensor) -> list[np.ndarray]:
    """[-1, 1] (B, 3, H, W) pixels to uint8 (H, W, 3) images."""
    return list(((pixels.permute(0, 2, 3, 1).numpy() + 1) * 127.5).clip(0, 255).astype(np.uint8))


def evaluator_scores(images: Sequence[np.ndarray], scenes: Sequence[Scene]) -> dict[str, np.ndarray]:
    """Per-scene ``eval_score`` and per-attribute ``eval_<attribute>`` values (attributes over the scenes that have them)."""
    rows = [evaluate(img, scene) for img, scene in zip(images, scenes)]
    out: dict[str, list[float]] = {"eval_score": [r["score"] for r in rows]}
    for r in rows:
        for k, v in r.items():
            if k != "score":
                out.setdefault(f"eval_{k}", []).append(v)
    return {k: np.asarray(v) for k, v in out.items()}


def fd_estimate(generated: Sequence[np.ndarray], real: Sequence[np.ndarray], *, seed: int, rounds: int = 50) -> Estimate:
    """Fréchet distance of the evaluator's features, with a bootstrap standard error over both sets."""
    fa = np.stack([features(x) for x in generated])
    fb = np.stack([features(x) for x in real])
    value = frechet_of_features(fa, fb)
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(rounds):
        ia, ib = rng.integers(0, len(fa), len(fa)), rng.integers(0, len(fb), len(fb))
        boots.append(frechet_of_features(fa[ia], fb[ib]))
    return Estimate(value, float(np.std(boots, ddof=1)), len(generated))


def summarise(samples: dict[str, np.ndarray], extra: dict[str, Estimate] | None = None) -> dict[str, Estimate]:
    """Per-item values to estimates, plus metrics measured otherwise (fd)."""
    out = {k: mean_se(v) for k, v in samples.items()}
    out.update(extra or {})
    return out


def flat(estimates: dict[str, Estimate]) -> dict[str, float]:
    """``{name: value, name_se: se}``: how metrics go into JSON, CSV and trial attributes."""
    out: dict[str, float] = {}
    for k, e in estimates.items():
        out[k] = e.value
        out[f"{k}_se"] = e.se
    return out
