"""Proxy training: seeded, budgeted, checkpointed as safetensors, resumable, on CPU or CUDA.

Batches, timesteps, noise, guidance dropout and dropped blocks all derive from
``(seed, step)`` (noise is drawn on the CPU and moved), so a run resumed from a checkpoint
continues exactly as if it had not stopped, and a candidate sees the same batches whatever
the device.
"""

from __future__ import annotations

import contextlib
import json
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from archlab.arch.builder import UNet, build
from archlab.arch.description import Description, description_from_dict, removable
from archlab.config import to_data
from archlab.errors import ConfigError
from archlab.quality.config import TrainConfig
from archlab.quality.data import CaptionedImages
from archlab.quality.diffusion import noisy, target


@dataclass
class TrainResult:
    steps: int  # the step count reached (a resumed run counts its earlier steps)
    seconds: float  # wall time of this call
    cpu_seconds: float  # CPU time of this process during this call (all threads): robust to other load
    steps_per_s: float
    peak_memory_mb: float
    final_loss: float  # mean of the last 20 steps
    losses: list[float]


def images_to_tensor(images: Sequence[np.ndarray]) -> torch.Tensor:
    """uint8 (H, W, 3) images to [-1, 1] (B, 3, H, W); float (C, r, r) latents stacked as they are."""
    arr = np.stack(images)
    if arr.dtype == np.uint8:
        return torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return torch.from_numpy(arr).float()


def autocast(device: str, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA when asked; nothing otherwise."""
    if precision == "bf16" and device.startswith("cuda"):
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


class ProxyModel(torch.nn.Module):
    """A UNet and its text encoder, trained together (a frozen encoder has no parameters here)."""

    def __init__(self, desc: Description | None = None, *, text_encoder: torch.nn.Module, unet: UNet | None = None):
        super().__init__()
        self.unet: UNet = unet if unet is not None else build(desc)
        self.text = text_encoder

    @property
    def description(self) -> Description:
        return self.unet.description

    @property
    def device(self) -> torch.device:
        return self.unet.conv_in.weight.device

    def encode(self, captions: Sequence[str]) -> torch.Tensor:
        return self.text(list(captions)).to(self.device)

    def forward(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor, skip_blocks: frozenset[str] = frozenset()) -> torch.Tensor:
        return self.unet(x, t, context, skip_blocks=skip_blocks)


class Trainer:
    """Trains a :class:`ProxyModel` on captioned images; see :class:`TrainConfig`.

    ``block_drop`` is SnapFusion's robust training: each removable block (see
    :func:`~archlab.arch.description.removable`) is replaced by the identity with this
    probability at every step.
    """

    def __init__(self, model: ProxyModel, data: CaptionedImages, cfg: TrainConfig, *, device: str = "cpu",
                 precision: str = "fp32", block_drop: float = 0.0, out_dir: str | Path | None = None):
        if not 0 <= block_drop < 1:
            raise ConfigError("block_drop", f"{block_drop} must be in [0, 1)")
        self.model, self.data, self.cfg = model.to(device), data, cfg
        self.device, self.precision, self.block_drop = device, precision, block_drop
        self.out_dir = Path(out_dir) if out_dir else None
        self.acp = cfg.schedule.alphas_cumprod().to(device)
        self.step = 0
        torch.manual_seed(cfg.seed)
        self.optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                                           weight_decay=cfg.weight_decay, fused=True)
        self.droppable = list(removable(model.description)) if block_drop else []
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
        if self.droppable:
            draws = torch.rand(len(self.droppable), generator=g)
            skip = frozenset(n for n, d in zip(self.droppable, draws) if d < self.block_drop)
        x0, noise, t = x0.to(self.device), noise.to(self.device), t.to(self.device)
        with autocast(self.device, self.precision):
            out = self.model(noisy(x0, noise, t, self.acp), t.float(), self.model.encode(captions), skip_blocks=skip)
        return F.mse_loss(out.float(), target(x0, noise, t, self.acp, self.cfg.prediction))

    def _lr(self, step: int) -> float:
        return self.cfg.lr * min(1.0, (step + 1) / max(1, self.cfg.warmup_steps))

    # ------------------------------------------------------------------ the loop

    def train(self, *, steps: int | None = None, progress: bool = True) -> TrainResult:
        """Train until the step count reaches ``steps`` (default: the config's)."""
        torch.set_num_threads(self.cfg.threads)
        total = self.cfg.steps if steps is None else steps
        losses: list[float] = []
        self.model.train()
        start, cpu_start = time.perf_counter(), time.process_time()
        first = self.step
        with Progress(TextColumn("proxy training"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      TextColumn("loss {task.fields[loss]}"), disable=not progress, console=Console(stderr=True)) as bar:
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
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
        if self.out_dir is not None:
            self.save(self.out_dir / "checkpoint.safetensors")
        done = self.step - first
        self.model.eval()
        peak = (torch.cuda.max_memory_allocated() / 2**20 if self.device.startswith("cuda")
                else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)
        return TrainResult(self.step, seconds, cpu_seconds, done / seconds if seconds else 0.0, peak,
                           float(np.mean(losses[-20:])) if losses else float("nan"), losses)

    # ------------------------------------------------------------------ checkpoints

    def save(self, path: Path) -> None:
        """Weights and optimizer state in one safetensors file; step and settings in its metadata."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {f"model.{k}": v.detach().contiguous().cpu() for k, v in self.model.state_dict().items()}
        for i, s in self.optimizer.state_dict()["state"].items():
            for name, value in s.items():
                tensors[f"optim.{i}.{name}"] = (value.detach().reshape(-1) if value.ndim == 0 else value.detach()).contiguous().cpu()
        meta = {"step": str(self.step), "config": json.dumps(to_data(self.cfg)), "block_drop": str(self.block_drop),
                "description": json.dumps(self.model.description.to_dict())}
        tmp = path.with_suffix(".tmp")
        save_file(tensors, str(tmp), metadata=meta)
        tmp.replace(path)

    def load(self, path: Path) -> None:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata()
        if description_from_dict(json.loads(meta["description"])) != self.model.description:
            raise ConfigError(str(path), "is a checkpoint of another architecture")
        tensors = load_file(str(path), device=self.device)
        weights = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
        vocab = weights.get("text.vocab")
        if vocab is not None and not torch.equal(vocab.cpu(), self.model.text.vocab.cpu()):
            raise ConfigError(str(path), "was trained with another caption vocabulary (other data)")
        self.model.load_state_dict(weights)
        state = self.optimizer.state_dict()
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, i, name = key.split(".", 2)
                entry = state["state"].setdefault(int(i), {})
                entry[name] = value.reshape(()) if name == "step" else value
        self.optimizer.load_state_dict(state)
        self.step = int(meta["step"])


def save_model(model: ProxyModel, path: str | Path, *, extra: dict[str, str] | None = None) -> None:
    """A trained proxy's weights (safetensors) with its description in the metadata."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(tensors, str(path), metadata={"description": json.dumps(model.description.to_dict()), **(extra or {})})
