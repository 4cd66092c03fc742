"""Short proxy training: seeded, budgeted, checkpointed as safetensors, resumable.

Batches, timesteps, noise and guidance dropout all derive from ``(seed, step)``, so a run
resumed from a checkpoint continues exactly as if it had not stopped.
"""

from __future__ import annotations

import json
import resource
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from safetensors.torch import load_file, save_file

from archlab.arch.builder import UNet, build
from archlab.arch.description import Description, description_from_dict
from archlab.errors import ConfigError
from archlab.quality.data import CaptionedImages
from archlab.quality.diffusion import PREDICTIONS, Schedule, noisy, target
from archlab.quality.text import SmallTextEncoder


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 250  # about 1.5 minutes for a MobileDiffusion-sized proxy at 16 px on 2 cores
    time_budget_s: float | None = None  # stop early when this much wall time has passed
    batch: int = 32  # on 2 cores, 32 images a step pass through faster than 16
    lr: float = 2e-3  # proxies are small; a high rate with AdamW converges in few steps
    weight_decay: float = 0.01
    warmup_steps: int = 20
    prediction: str = "v"  # v converges much faster than eps in a few hundred steps (benchmarks/)
    schedule: Schedule = field(default_factory=Schedule)
    guidance_dropout: float = 0.1  # share of captions replaced by "" (classifier-free guidance)
    block_drop: float = 0.0  # SnapFusion's robust training: each droppable block skipped with this probability
    seed: int = 0
    threads: int = 2
    checkpoint_every: int = 100

    def __post_init__(self) -> None:
        if self.prediction not in PREDICTIONS:
            raise ConfigError("train.prediction", f"{self.prediction!r} is not one of {', '.join(PREDICTIONS)}")
        for name in ("steps", "batch"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name}", f"{getattr(self, name)} must be at least 1")
        for name in ("guidance_dropout", "block_drop"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"train.{name}", f"{getattr(self, name)} must be in [0, 1)")


@dataclass
class TrainResult:
    steps: int
    seconds: float
    steps_per_s: float
    peak_memory_mb: float
    final_loss: float
    losses: list[float]


def images_to_tensor(images: list[np.ndarray]) -> torch.Tensor:
    """uint8 (H, W, 3) images to [-1, 1] (B, 3, H, W); float (C, r, r) latents stacked as they are."""
    arr = np.stack(images)
    if arr.dtype == np.uint8:
        return torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return torch.from_numpy(arr).float()


class ProxyModel(torch.nn.Module):
    """A proxy UNet and its text encoder, trained together."""

    def __init__(self, desc: Description, *, text_encoder: torch.nn.Module | None = None):
        super().__init__()
        self.unet: UNet = build(desc)
        self.text = text_encoder if text_encoder is not None else SmallTextEncoder(desc.text_dim, desc.text_tokens)

    @property
    def description(self) -> Description:
        return self.unet.description

    def forward(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor, skip_blocks: frozenset[str] = frozenset()) -> torch.Tensor:
        return self.unet(x, t, context, skip_blocks=skip_blocks)


class Trainer:
    """Trains a :class:`ProxyModel` on captioned images; see :class:`TrainConfig`."""

    def __init__(self, model: ProxyModel, data: CaptionedImages, cfg: TrainConfig, *, out_dir: str | Path | None = None):
        self.model, self.data, self.cfg = model, data, cfg
        self.out_dir = Path(out_dir) if out_dir else None
        self.acp = cfg.schedule.alphas_cumprod()
        self.step = 0
        torch.manual_seed(cfg.seed)
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
        self.droppable = model.unet.droppable()
        if self.out_dir is not None and (self.out_dir / "checkpoint.safetensors").exists():
            self.load(self.out_dir / "checkpoint.safetensors")

    # ------------------------------------------------------------------ one step

    def batch(self, step: int) -> tuple[torch.Tensor, list[str]]:
        rng = np.random.default_rng([self.cfg.seed, step])
        idx = rng.integers(0, len(self.data), size=self.cfg.batch)
        pairs = [self.data.get(int(i)) for i in idx]
        captions = ["" if rng.random() < self.cfg.guidance_dropout else c for _, c in pairs]
        return images_to_tensor([p[0] for p in pairs]), captions

    def loss(self, step: int) -> torch.Tensor:
        x0, captions = self.batch(step)
        g = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + step)
        t = torch.randint(0, self.cfg.schedule.steps, (x0.shape[0],), generator=g)
        noise = torch.randn(x0.shape, generator=g)
        skip: frozenset[str] = frozenset()
        if self.cfg.block_drop and self.droppable:
            draws = torch.rand(len(self.droppable), generator=g)
            skip = frozenset(n for n, d in zip(self.droppable, draws) if d < self.cfg.block_drop)
        out = self.model(noisy(x0, noise, t, self.acp), t.float(), self.model.text(captions), skip_blocks=skip)
        return F.mse_loss(out, target(x0, noise, t, self.acp, self.cfg.prediction))

    def _lr(self, step: int) -> float:
        return self.cfg.lr * min(1.0, (step + 1) / max(1, self.cfg.warmup_steps))

    # ------------------------------------------------------------------ the loop

    def train(self, *, steps: int | None = None, progress: bool = True) -> TrainResult:
        torch.set_num_threads(self.cfg.threads)
        total = self.cfg.steps if steps is None else steps
        losses: list[float] = []
        self.model.train()
        start = time.perf_counter()
        first = self.step
        with Progress(TextColumn("proxy training"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      TextColumn("loss {task.fields[loss]}"), disable=not progress) as bar:
            task = bar.add_task("train", total=total, completed=self.step, loss="-")
            while self.step < total:
                if self.cfg.time_budget_s is not None and time.perf_counter() - start > self.cfg.time_budget_s:
                    break
                for group in self.optimizer.param_groups:
                    group["lr"] = self._lr(self.step)
                loss = self.loss(self.step)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"loss is {loss.item()} at step {self.step}")
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
                self.optimizer.step()
                self.step += 1
                losses.append(loss.item())
                bar.update(task, completed=self.step, loss=f"{np.mean(losses[-20:]):.4f}")
                if self.out_dir is not None and self.step % self.cfg.checkpoint_every == 0:
                    self.save(self.out_dir / "checkpoint.safetensors")
        seconds = time.perf_counter() - start
        if self.out_dir is not None:
            self.save(self.out_dir / "checkpoint.safetensors")
        done = self.step - first
        self.model.eval()
        return TrainResult(self.step, seconds, done / seconds if seconds else 0.0,
                           resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
                           float(np.mean(losses[-20:])) if losses else float("nan"), losses)

    # ------------------------------------------------------------------ checkpoints

    def save(self, path: Path) -> None:
        """Weights and optimizer state in one safetensors file; step and settings in its metadata."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {f"model.{k}": v.detach().contiguous() for k, v in self.model.state_dict().items()}
        state = self.optimizer.state_dict()
        for i, s in state["state"].items():
            for name, value in s.items():
                tensors[f"optim.{i}.{name}"] = value.detach().reshape(-1).contiguous() if value.ndim == 0 else value.detach().contiguous()
        meta = {"step": str(self.step), "config": json.dumps(asdict(self.cfg), default=str),
                "description": json.dumps(self.model.description.to_dict())}
        tmp = path.with_suffix(".tmp")
        save_file(tensors, str(tmp), metadata=meta)
        tmp.replace(path)

    def load(self, path: Path) -> None:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata()
        if description_from_dict(json.loads(meta["description"])) != self.model.description:
            raise ConfigError(str(path), "is a checkpoint of another architecture")
        tensors = load_file(str(path))
        self.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        state = self.optimizer.state_dict()
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, i, name = key.split(".", 2)
                entry = state["state"].setdefault(int(i), {})
                entry[name] = value.reshape(()) if name == "step" else value
        self.optimizer.load_state_dict(state)
        self.step = int(meta["step"])


def train_proxy(desc: Description, data: CaptionedImages, cfg: TrainConfig, *, out_dir: str | Path | None = None,
                progress: bool = True, text_encoder: torch.nn.Module | None = None) -> tuple[ProxyModel, TrainResult]:
    torch.manual_seed(cfg.seed)
    model = ProxyModel(desc, text_encoder=text_encoder)
    trainer = Trainer(model, data, cfg, out_dir=out_dir)
    return model, trainer.train(progress=progress)

