"""Settings of the two few-step stages, with the published recipes' values as defaults.

An ``archlab distill`` / ``archlab gan-finetune`` file (``handoff.yaml`` from
``archlab export`` is one)::

    teacher: ../out/teacher/model.safetensors   # a trained model archlab wrote, or an export folder
    quality: {...}                              # data, text encoder, evaluation (default: the teacher's own)
    distill: {student_steps: 8, teacher_steps: 16, steps: 400}
    gan: {steps: 400}
    out: ../out/distilled
"""

from __future__ import annotations

from dataclasses import dataclass, field

from archlab.config import FilePath, require
from archlab.quality.config import QualityConfig


@dataclass(frozen=True)
class DistillConfig:
    """SnapFusion's CFG-aware step distillation (Li et al. 2023, section 4)."""

    student_steps: int = 8
    teacher_steps: int = 16  # DDIM steps of the teacher over the same range: 2 per student step (the published loss)
    steps: int = 400  # training iterations
    batch: int = 16
    lr: float = 5e-4  # the student starts from the teacher: a fine-tuning rate
    guidance_min: float = 2.0  # w ~ U[guidance_min, guidance_max] for the CFG-aware loss (SnapFusion: [2, 14])
    guidance_max: float = 14.0
    cfg_probability: float = 0.1  # p: each iteration uses the CFG-aware loss with this probability, else the vanilla one
    denoising_weight: float = 0.2  # gamma: the original denoising loss added to the distillation loss
    seed: int = 0
    checkpoint_every: int = 100

    def __post_init__(self) -> None:
        require(self.student_steps >= 1, "student_steps", f"{self.student_steps} must be at least 1")
        require(self.teacher_steps >= self.student_steps and self.teacher_steps % self.student_steps == 0, "teacher_steps",
                f"{self.teacher_steps} must be a multiple of student_steps ({self.student_steps})")
        for name in ("steps", "batch", "checkpoint_every"):
            require(getattr(self, name) >= 1, name, f"{getattr(self, name)} must be at least 1")
        require(self.lr > 0, "lr", f"{self.lr} must be positive")
        require(1 <= self.guidance_min <= self.guidance_max, "guidance_max", "needs 1 <= guidance_min <= guidance_max")
        require(0 <= self.cfg_probability <= 1, "cfg_probability", f"{self.cfg_probability} must be in [0, 1]")
        require(self.denoising_weight >= 0, "denoising_weight", f"{self.denoising_weight} must be >= 0")


@dataclass(frozen=True)
class GanConfig:
    """One-step finetuning in the UFOGen / DiffusionGAN line, as MobileDiffusion describes it: generator and
    discriminator both start from the diffusion UNet (the discriminator: its encoder and a small head)."""

    steps: int = 400
    batch: int = 16
    lr_generator: float = 2e-4
    lr_discriminator: float = 2e-4
    adversarial_weight: float = 0.1  # the generator's GAN loss next to its reconstruction loss
    min_timestep: int = 0  # the generator learns to denoise from any level in [min_timestep, T-1]; it samples from T-1
    discriminator_max_timestep: int = 500  # real and generated images are noised to a level in [0, this] for the discriminator
    seed: int = 0
    checkpoint_every: int = 100

    def __post_init__(self) -> None:
        for name in ("steps", "batch", "checkpoint_every"):
            require(getattr(self, name) >= 1, name, f"{getattr(self, name)} must be at least 1")
        for name in ("lr_generator", "lr_discriminator"):
            require(getattr(self, name) > 0, name, f"{getattr(self, name)} must be positive")
        require(self.adversarial_weight >= 0, "adversarial_weight", f"{self.adversarial_weight} must be >= 0")
        require(0 <= self.min_timestep, "min_timestep", f"{self.min_timestep} must be >= 0")
        require(0 <= self.discriminator_max_timestep, "discriminator_max_timestep", "must be >= 0")


@dataclass(frozen=True)
class DistillFile:
    """What ``archlab distill`` and ``archlab gan-finetune`` read (``handoff.yaml`` is one)."""

    teacher: FilePath  # a trained model: a .safetensors archlab wrote (proxy train --out, evolve), or an export folder
    quality: QualityConfig | None = None  # default: the quality settings the teacher was trained under
    distill: DistillConfig = field(default_factory=DistillConfig)
    gan: GanConfig = field(default_factory=GanConfig)
    out: FilePath = "distilled"
