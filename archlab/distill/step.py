"""SnapFusion's CFG-aware step distillation (Li et al. 2023), as the paper gives it.

The student starts from the teacher's weights and learns to take in one DDIM step what the
teacher takes in ``teacher_steps / student_steps`` (two, the published loss): for a clean
sample x0, a student step t -> s on the student's DDIM grid and x_t = alpha_t x0 + sigma_t eps,

- the teacher (frozen) runs its DDIM steps t -> ... -> s from x_t, giving x_s;
- the student's target is the clean sample that one DDIM step from x_t to s would need to
  land on x_s: x0* = (x_s - (sigma_s / sigma_t) x_t) / (alpha_s - (sigma_s / sigma_t) alpha_t)
  (x0* = x_s when s is the clean end);
- the distillation loss is max(alpha_t^2 / sigma_t^2, 1) x ||x0_student - x0*||^2;
- CFG-aware: with probability ``cfg_probability`` an iteration applies classifier-free
  guidance v = w v(c) - (w - 1) v(empty) to teacher and student alike, w ~ U[w_min, w_max]
  per sample; otherwise both predict conditionally (the vanilla loss);
- the original denoising loss on the student's conditional prediction is added with weight
  ``denoising_weight`` (gamma).

Batches, timesteps, noise and w derive from ``(seed, step)``; checkpoints are safetensors;
a rerun resumes exactly. The text encoder stays frozen: teacher and student share it.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from archlab.config import to_data
from archlab.distill.config import DistillConfig
from archlab.progress import step_bar
from archlab.quality.diffusion import ddim_step, ddim_times, noisy, target, to_eps_x0
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

CHECKPOINT = "distill-checkpoint.safetensors"


@dataclass
class StageResult:
    steps: int
    seconds: float
    cpu_seconds: float
    final_loss: float
    losses: list[float]


class StageLoop:
    """The loop both few-step stages share: iterate to a step count, checkpoint every so often and at the end.

    A stage sets ``label``, ``checkpoint``, ``cfg`` (with ``steps`` and ``checkpoint_every``),
    ``pipe``, ``step``, ``out_dir`` and ``trained`` (the model it trains), and implements
    :meth:`iteration` (one optimisation step, returning the loss to report) and :meth:`save`.
    """

    label: str
    checkpoint: str

    def iteration(self, step: int) -> float:
        raise NotImplementedError

    def save(self, path: Path) -> None:
        raise NotImplementedError

    def train(self, *, steps: int | None = None, progress: bool = True) -> StageResult:
        torch.set_num_threads(self.pipe.cfg.train.threads)
        total = self.cfg.steps if steps is None else steps
        losses: list[float] = []
        start, cpu = time.perf_counter(), time.process_time()
        self.trained.train()
        with step_bar(self.label, total, self.step, enabled=progress) as advance:
            while self.step < total:
                loss = self.iteration(self.step)
                if not np.isfinite(loss):
                    raise FloatingPointError(f"{self.label}: loss is {loss} at step {self.step}")
                self.step += 1
                losses.append(loss)
                advance(self.step, f"{np.mean(losses[-20:]):.4f}")
                if self.out_dir is not None and self.step % self.cfg.checkpoint_every == 0:
                    self.save(self.out_dir / self.checkpoint)
        if self.out_dir is not None:
            self.save(self.out_dir / self.checkpoint)
        self.trained.eval()
        return StageResult(self.step, time.perf_counter() - start, time.process_time() - cpu,
                           float(np.mean(losses[-20:])) if losses else float("nan"), losses)


class StepDistiller(StageLoop):
    """Distils ``teacher`` into a student of the same architecture that samples in ``student_steps``."""

    label, checkpoint = "step distillation", CHECKPOINT

    def __init__(self, teacher: ProxyModel, pipeline: QualityPipeline, cfg: DistillConfig, *, out_dir: str | Path | None = None):
        self.pipe, self.cfg = pipeline, cfg
        self.teacher = teacher.eval()  # used under no_grad only: left as it was given (its owner may train it further)
        self.student = self.trained = copy.deepcopy(teacher).train()
        self.student.text.requires_grad_(False)  # one frozen text encoder for both (SnapFusion keeps CLIP frozen)
        self.student.unet.requires_grad_(True)
        self.device, self.precision = pipeline.device, pipeline.precision
        train = pipeline.cfg.train
        self.schedule, self.prediction = train.schedule, train.prediction
        self.clip = None if pipeline.cfg.data.vae else 1.0
        self.data = pipeline.data(teacher.description.resolution).train
        self.acp = train.schedule.alphas_cumprod().to(self.device)
        self.grid = ddim_times(train.schedule, cfg.teacher_steps).to(self.device)  # the teacher's steps; every m-th is the student's
        self.per_student = cfg.teacher_steps // cfg.student_steps
        self.optimizer = torch.optim.AdamW(self.student.unet.parameters(), lr=cfg.lr, weight_decay=0.0, fused=True)
        self.step = 0
        self.out_dir = Path(out_dir) if out_dir else None
        if self.out_dir is not None and (self.out_dir / CHECKPOINT).exists():
            self.load(self.out_dir / CHECKPOINT)

    def _alpha(self, index: torch.Tensor) -> torch.Tensor:
        """alpha-bar at positions of the teacher's grid; one past the end is the clean sample (1)."""
        padded = torch.cat([self.acp[self.grid], torch.ones(1, device=self.device)])
        return padded[index].view(-1, 1, 1, 1)

    def _out(self, model: ProxyModel, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor,
             w: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(guided output, conditional output); without ``w`` both are the conditional output."""
        with autocast(self.device, self.precision):
            if w is None:
                out = model(x, t.float(), cond).float()
                return out, out
            both = model(torch.cat([x, x]), torch.cat([t, t]).float(), torch.cat([uncond, cond])).float()
        out_u, out_c = both.chunk(2)
        return out_u + w * (out_c - out_u), out_c

    def loss(self, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.cfg
        x0, captions = draw_batch(self.data, np.random.default_rng([cfg.seed, step]), cfg.batch)
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        i = torch.randint(0, cfg.student_steps, (x0.shape[0],), generator=g)  # the student step t -> s
        noise = torch.randn(x0.shape, generator=g)
        use_cfg = torch.rand((), generator=g).item() < cfg.cfg_probability
        w = (cfg.guidance_min + (cfg.guidance_max - cfg.guidance_min) * torch.rand(x0.shape[0], generator=g)).view(-1, 1, 1, 1)
        x0, noise, i = x0.to(self.device), noise.to(self.device), i.to(self.device)
        w = w.to(self.device) if use_cfg else None
        start = i * self.per_student
        t = self.grid[start]
        a_t = self._alpha(start)
        x_t = noisy(x0, noise, t, self.acp)
        cond = self.student.encode(captions)
        uncond = self.student.encode([""] * len(captions))
        with torch.no_grad():
            z = x_t
            for j in range(self.per_student):
                k = start + j
                out, _ = self._out(self.teacher, z, self.grid[k], cond, uncond, w)
                z = ddim_step(z, out, self._alpha(k), self._alpha(k + 1), self.prediction, self.clip)
            a_s = self._alpha(start + self.per_student)
            ratio = (1 - a_s).sqrt() / (1 - a_t).sqrt()
            x0_target = (z - ratio * x_t) / (a_s.sqrt() - ratio * a_t.sqrt())
        guided, conditional = self._out(self.student, x_t, t, cond, uncond, w)
        x0_student = to_eps_x0(guided, x_t, a_t, self.prediction)[1]
        weight = (a_t / (1 - a_t)).clamp(min=1.0).view(-1)  # max(alpha^2 / sigma^2, 1)
        distill = (weight * (x0_student - x0_target).pow(2).flatten(1).mean(1)).mean()
        denoise = F.mse_loss(conditional, target(x0, noise, t, self.acp, self.prediction))
        total = distill + cfg.denoising_weight * denoise
        return total, {"distill": distill.item(), "denoise": denoise.item(), "cfg": float(use_cfg)}

    def iteration(self, step: int) -> float:
        loss, _ = self.loss(step)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.student.unet.parameters(), 1.0)
        self.optimizer.step()
        return loss.item()

    def save(self, path: Path) -> None:
        tensors = {f"student.{k}": v.detach().contiguous().cpu() for k, v in self.student.unet.state_dict().items()}
        tensors.update(pack_optimizer("optim", self.optimizer))
        write_checkpoint(path, tensors, {"step": str(self.step), "config": json.dumps(to_data(self.cfg)),
                                         "description": json.dumps(self.student.description.to_dict())})

    def load(self, path: Path) -> None:
        meta, tensors = read_checkpoint(path, self.student.description, device=self.device)
        self.student.unet.load_state_dict({k[8:]: v for k, v in tensors.items() if k.startswith("student.")})
        unpack_optimizer("optim", self.optimizer, tensors)
        self.step = int(meta["step"])
