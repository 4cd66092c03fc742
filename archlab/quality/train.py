"""Proxy training: seeded, budgeted, checkpointed as safetensors, resumable, on CPU or CUDA.

Batches, timesteps, noise, guidance dropout and dropped blocks all derive from
``(seed, step)`` (noise is drawn on the CPU and moved), so a run resumed from a checkpoint
continues exactly as if it had not stopped, and a candidate sees the same batches whatever
the device.
"""

from __future__ import annotations

import contextlib
import json
import math
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from archlab.arch.builder import UNet, build
from archlab.arch.description import Description
from archlab.arch.reading import description_from_dict
from archlab.arch.editing import removable
from archlab.config import to_data
from archlab.errors import ConfigError
from archlab.progress import step_bar
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


def divergence(losses: Sequence[float], *, window: int = 20, factor: float = 2.0) -> tuple[float, float] | None:
    """``(best, last)`` window means when the last ``window`` steps' mean loss is over ``factor`` x the
    best earlier window's: training blew up (weights and activations run away without a NaN);
    else None. Noisy losses (random timesteps, dropped blocks) move far less than 2x over 20 steps."""
    x = np.asarray(losses, dtype=float)
    if len(x) < 2 * window:
        return None
    means = np.convolve(x, np.ones(window) / window, mode="valid")
    best, last = float(means[:-window].min()), float(means[-1])
    return (best, last) if last > factor * best else None


def scheduled_lr(cfg: TrainConfig, step: int) -> float:
    """The learning rate at ``step``: linear warm-up, then constant or a cosine decay to 0 at ``cfg.steps``."""
    warm = max(1, cfg.warmup_steps)
    if step < warm or cfg.lr_schedule == "constant":
        return cfg.lr * min(1.0, (step + 1) / warm)
    done = min(1.0, (step - warm) / max(1, cfg.steps - warm))
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * done))


def images_to_tensor(images: Sequence[np.ndarray]) -> torch.Tensor:
    """uint8 (H, W, 3) images to [-1, 1] (B, 3, H, W); float (C, r, r) latents stacked as they are."""
    arr = np.stack(images)
    if arr.dtype == np.uint8:
        return torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return torch.from_numpy(arr).float()


def draw_batch(data: CaptionedImages, rng: np.random.Generator, size: int) -> tuple[torch.Tensor, list[str]]:
    """``size`` items drawn with ``rng``: images as a tensor, and their captions."""
    pairs = [data.get(int(i)) for i in rng.integers(0, len(data), size=size)]
    return images_to_tensor([p[0] for p in pairs]), [c for _, c in pairs]


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
    probability at every step. With a ``teacher`` (a trained model, frozen), a share
    ``teacher_weight`` of the loss is the distance to the teacher's prediction for the same
    noisy input, timestep and caption (output distillation), the rest the usual target's.
    """

    def __init__(self, model: ProxyModel, data: CaptionedImages, cfg: TrainConfig, *, device: str = "cpu",
                 precision: str = "fp32", block_drop: float = 0.0, out_dir: str | Path | None = None,
                 teacher: ProxyModel | None = None, teacher_weight: float = 0.0):
        if not 0 <= block_drop < 1:
            raise ConfigError("block_drop", f"{block_drop} must be in [0, 1)")
        self.model, self.data, self.cfg = model.to(device), data, cfg
        self.device, self.precision, self.block_drop = device, precision, block_drop
        self.teacher, self.teacher_weight = teacher, (teacher_weight if teacher is not None else 0.0)
        self.out_dir = Path(out_dir) if out_dir else None
        self.acp = cfg.schedule.alphas_cumprod().to(device)
        self.step = 0
        torch.manual_seed(cfg.seed)
        self.optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                                           weight_decay=cfg.weight_decay, fused=True)
        self.droppable = list(removable(model.description)) if block_drop else []
        self._trained = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.ema = {n: p.detach().clone() for n, p in self._trained} if cfg.ema else None
        if self.out_dir is not None and (self.out_dir / "checkpoint.safetensors").exists():
            self.load(self.out_dir / "checkpoint.safetensors")

    # ------------------------------------------------------------------ one step

    def batch(self, step: int) -> tuple[torch.Tensor, list[str]]:
        rng = np.random.default_rng([self.cfg.seed, step])
        x0, captions = draw_batch(self.data, rng, self.cfg.batch)
        return x0, ["" if rng.random() < self.cfg.guidance_dropout else c for c in captions]

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
        xt = noisy(x0, noise, t, self.acp)
        with autocast(self.device, self.precision):
            out = self.model(xt, t.float(), self.model.encode(captions), skip_blocks=skip)
        loss = F.mse_loss(out.float(), target(x0, noise, t, self.acp, self.cfg.prediction))
        if self.teacher is None:
            return loss
        with torch.no_grad(), autocast(self.device, self.precision):
            taught = self.teacher(xt, t.float(), self.teacher.encode(captions)).float()
        w = self.teacher_weight
        return (1 - w) * loss + w * F.mse_loss(out.float(), taught)

    def _lr(self, step: int) -> float:
        return scheduled_lr(self.cfg, step)

    # ------------------------------------------------------------------ the loop

    def train(self, *, steps: int | None = None, progress: bool = True) -> TrainResult:
        """Train until the step count reaches ``steps`` (default: the config's)."""
        torch.set_num_threads(self.cfg.threads)
        total = self.cfg.steps if steps is None else steps
        losses: list[float] = []
        self.model.train()
        start, cpu_start = time.perf_counter(), time.process_time()
        first = self.step
        with step_bar("proxy training", total, self.step, enabled=progress) as advance:
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
                if self.ema is not None:
                    self._update_ema()
                losses.append(loss.item())
                advance(self.step, f"{np.mean(losses[-20:]):.4f}")
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

    # ------------------------------------------------------------------ weight averaging

    @torch.no_grad()
    def _update_ema(self) -> None:
        # the decay ramps up over the first steps (as in common EMA implementations), so early
        # averages are not dominated by the random initialisation
        decay = min(self.cfg.ema, (1 + self.step) / (10 + self.step))
        torch._foreach_lerp_([self.ema[n] for n, _ in self._trained], [p.detach() for _, p in self._trained], 1 - decay)

    @contextlib.contextmanager
    def averaged(self) -> Iterator[ProxyModel]:
        """The model with its averaged weights in place (when ``train.ema`` is on), restored afterwards."""
        if self.ema is None:
            yield self.model
            return
        saved = {n: p.detach().clone() for n, p in self._trained}
        with torch.no_grad():
            for n, p in self._trained:
                p.copy_(self.ema[n])
        try:
            yield self.model
        finally:
            with torch.no_grad():
                for n, p in self._trained:
                    p.copy_(saved[n])

    # ------------------------------------------------------------------ checkpoints

    def save(self, path: Path) -> None:
        """Weights, weight average and optimizer state in one safetensors file; step and settings in its metadata."""
        tensors = {f"model.{k}": v.detach().contiguous().cpu() for k, v in self.model.state_dict().items()}
        tensors.update({f"ema.{k}": v.contiguous().cpu() for k, v in (self.ema or {}).items()})
        tensors.update(pack_optimizer("optim", self.optimizer))
        write_checkpoint(path, tensors, {"step": str(self.step), "config": json.dumps(to_data(self.cfg)),
                                         "block_drop": str(self.block_drop), "description": json.dumps(self.model.description.to_dict())})

    def load(self, path: Path) -> None:
        meta, tensors = read_checkpoint(path, self.model.description, device=self.device)
        weights = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
        vocab = weights.get("text.vocab")
        if vocab is not None and not torch.equal(vocab.cpu(), self.model.text.vocab.cpu()):
            raise ConfigError(str(path), "was trained with another caption vocabulary (other data)")
        self.model.load_state_dict(weights)
        if self.ema is not None:
            for name in self.ema:
                if f"ema.{name}" not in tensors:
                    raise ConfigError(str(path), "holds no weight average; it was trained without train.ema")
                self.ema[name] = tensors[f"ema.{name}"].clone()
        unpack_optimizer("optim", self.optimizer, tensors)
        self.step = int(meta["step"])


# ---------------------------------------------------------------------- checkpoint files (also used by distillation)


def pack_optimizer(prefix: str, optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """An optimizer's per-parameter state as flat tensors ``<prefix>.<index>.<name>``."""
    out = {}
    for i, state in optimizer.state_dict()["state"].items():
        for name, value in state.items():
            out[f"{prefix}.{i}.{name}"] = (value.detach().reshape(-1) if value.ndim == 0 else value.detach()).contiguous().cpu()
    return out


def unpack_optimizer(prefix: str, optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    state = optimizer.state_dict()
    for key, value in tensors.items():
        if key.startswith(prefix + "."):
            _, i, name = key.split(".", 2)
            state["state"].setdefault(int(i), {})[name] = value.reshape(()) if name == "step" else value
    optimizer.load_state_dict(state)


def write_checkpoint(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> None:
    """One safetensors file, written to a temporary name then moved: a kill never leaves half a checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)


def read_safetensors(path: str | Path, device: str = "cpu") -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """A safetensors file's metadata and tensors; a file that is not one names itself."""
    from safetensors import SafetensorError

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        return meta, load_file(str(path), device=device)
    except SafetensorError as exc:
        raise ConfigError(str(path), f"is not a safetensors file ({exc}); give a model archlab wrote") from None


def read_checkpoint(path: Path, description: Description, device: str = "cpu") -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """A checkpoint's metadata and tensors, refused when it belongs to another architecture."""
    meta, tensors = read_safetensors(path, device)
    if "description" not in meta or description_from_dict(json.loads(meta["description"])) != description:
        raise ConfigError(str(path), "is a checkpoint of another architecture")
    return meta, tensors


def save_trained(model: ProxyModel, path: str | Path, *, quality: Any = None, extra: dict[str, str] | None = None) -> Path:
    """A trained model as one safetensors file: ``unet.*`` weights, the text encoder's when it was
    trained (``text.*``; a frozen OpenCLIP tower is not copied), the description and the quality
    settings it was trained under in the metadata. :func:`load_trained` reads it back."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    meta = {"format": TRAINED_FORMAT, "description": json.dumps(model.description.to_dict()), **(extra or {})}
    if quality is not None:
        meta["quality"] = json.dumps(to_data(quality))
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)
    return path


TRAINED_FORMAT = "archlab-trained-model/1"


@dataclass
class TrainedFile:
    description: Description
    tensors: dict[str, torch.Tensor]  # the UNet's under ``unet.``, a trained text encoder's under ``text.``
    quality: dict[str, Any] | None  # the quality settings it was trained under, as plain data
    metadata: dict[str, str]


def read_trained(path: str | Path) -> TrainedFile:
    """A trained-model file (see :func:`save_trained`).

    Also reads a full-size export's ``model.safetensors`` (UNet weights alone, description in
    its metadata or in ``description.yaml`` beside it): its weights come back under ``unet.``.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "model.safetensors"
    if not path.is_file():
        raise ConfigError(str(path), "does not exist (give a trained model: a .safetensors archlab wrote, or an export folder)")
    meta, tensors = read_safetensors(path)
    if "description" in meta:
        desc = description_from_dict(json.loads(meta["description"]))
    elif (path.parent / "description.yaml").is_file():
        from archlab.arch.reading import load_description

        desc = load_description(path.parent / "description.yaml")
    else:
        raise ConfigError(str(path), "holds no description (neither in its metadata nor in description.yaml beside it)")
    if meta.get("format") != TRAINED_FORMAT:  # an export: UNet keys without a prefix
        tensors = {f"unet.{k}": v for k, v in tensors.items()}
    return TrainedFile(desc, tensors, json.loads(meta["quality"]) if "quality" in meta else None, meta)
