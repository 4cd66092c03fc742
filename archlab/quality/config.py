"""The settings of the quality pipeline, one typed section each, with their defaults.

Every caller (``archlab proxy train``, studies, the evolving search, distillation, the
benchmarks) reads the same :class:`QualityConfig`; in a study or evolve file it is the
``quality:`` section::

    quality:
      data: {kind: folder, path: ../my-images, heldout: 256}
      text: {encoder: small, tokens: 24}
      proxy: {width: 0.125, resolution: 16}
      train: {steps: 150, batch: 32}
      eval: {heldout: 256, samples: 128}
      device: auto

The proxy rule was chosen by ``benchmarks/quality/proxy_fidelity.py``, the step count by
``benchmarks/quality/quality_analysis.py`` against the quality reference (see benchmarks/README.md, quality).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Sequence

from archlab.config import FilePath, NameOrPath, require
from archlab.errors import ConfigError
from archlab.quality import registry
from archlab.quality.diffusion import Schedule

DATA_KINDS = ("synthetic", "folder", "parquet")


@dataclass(frozen=True)
class DataConfig:
    """Captioned images: the built-in synthetic domain, an image folder or a Parquet file.

    A folder holds images with captions in Hugging Face's imagefolder ``metadata.jsonl``
    (or ``metadata.csv``: ``file_name`` and a ``text`` or ``caption`` column), in
    ``captions.jsonl`` (``file``, ``caption``), or in a ``.txt`` beside each image.
    """

    kind: Literal["synthetic", "folder", "parquet"] = "synthetic"
    path: FilePath | None = None  # the folder or Parquet file (folder, parquet)
    heldout: int = 512  # items kept out of training for the held-out metrics (a seeded, disjoint split)
    seed: int = 0  # the synthetic domain's scenes and the held-out split
    image_column: str = "image"  # Parquet: image bytes (or {bytes, path} as Hugging Face datasets store them)
    caption_column: str | None = None  # Parquet and metadata files: default "text", else "caption"
    vae: FilePath | None = None  # a local diffusers AutoencoderKL folder: train on its latents, not pixels
    cache: FilePath | None = None  # resized images and latents are cached here (default: <data>.archlab-cache)

    def __post_init__(self) -> None:
        require(self.kind == "synthetic" or self.path is not None, "path", f"{self.kind} data needs a path")
        require(self.heldout >= 1, "heldout", f"{self.heldout} is not a positive integer")


@dataclass(frozen=True)
class TextConfig:
    """The text encoder the proxy UNet attends to.

    ``small``: a small transformer trained with the UNet, over the CLIP BPE tokenizer that
    open_clip ships (any caption; its vocabulary is the tokens the training captions use).
    ``openclip``: a frozen OpenCLIP text tower read from a local checkpoint (nothing is
    downloaded); its width and context length replace ``width`` and ``tokens``.
    """

    encoder: Literal["small", "openclip"] = "small"
    tokens: int = 20  # caption tokens (with start and end): the synthetic captions' longest is 12
    width: int = 64  # the small encoder's width (the UNet's text_dim)
    layers: int = 2  # the small encoder's transformer layers
    checkpoint: FilePath | None = None  # openclip: a local .safetensors (or weights-only .pt/.bin) file
    model: str = "ViT-L-14"  # openclip: the architecture's open_clip name
    model_config: FilePath | None = None  # openclip: a model config JSON for an architecture open_clip lacks

    def __post_init__(self) -> None:
        require(self.tokens >= 3, "tokens", f"{self.tokens} is too few (start, end and at least one word)")
        require(self.width >= 8 and self.width % 4 == 0, "width", f"{self.width} must be a multiple of 4, at least 8")
        require(self.layers >= 1, "layers", f"{self.layers} is not a positive integer")
        require(self.encoder != "openclip" or self.checkpoint is not None, "checkpoint",
                "the openclip encoder needs a local checkpoint file (archlab never downloads weights)")


@dataclass(frozen=True)
class ProxyConfig:
    """The proxy rule's knobs (see :mod:`archlab.quality.proxy`)."""

    # channel multiplier (multiples of 8): 320 -> 40, 1024 -> 128; 1: full width. 1/8 rather than 1/16: in the
    # fidelity benchmark its text_gap and eval_score differences stood 10-16x above seed noise, 1/16's 1-6x
    width: float = 0.125
    # the proxy's input side: pixels on the synthetic domain, latents with a VAE; null: the description's own
    resolution: int | None = 16
    # heads keep their count unless that leaves them narrower than this (1/16 width would make 4-wide heads,
    # whose attention kernels cost a third of a CPU step); 0: keep every head count that divides the width
    min_head_dim: int = 16

    def __post_init__(self) -> None:
        require(0 < self.width <= 1, "width", f"{self.width} must be in (0, 1]")
        require(self.min_head_dim >= 0, "min_head_dim", f"{self.min_head_dim} must be >= 0")
        require(self.resolution is None or self.resolution >= 4, "resolution", f"{self.resolution} must be at least 4")


@dataclass(frozen=True)
class TrainConfig:
    # the best measured against the quality reference (18 architectures; 100-200 steps tie within noise there):
    # benchmarks/README.md, quality. About 1.8 CPU-minutes a candidate at one thread, evaluation included
    steps: int = 150
    batch: int = 32  # on 2 cores, 32 images a step pass through faster than 16
    lr: float = 2e-3  # proxies are small; a high rate with AdamW converges in few steps
    weight_decay: float = 0.01
    warmup_steps: int = 20  # then constant: a short run is a long run's checkpoint (benchmarks use this)
    # after warm-up: constant, or a cosine decay to 0 at ``steps``. Long runs need the decay: at lr 2e-3 constant,
    # width-1/8 proxies blew up between 400 and 750 steps (benchmarks/README.md, quality reference)
    lr_schedule: Literal["constant", "cosine"] = "constant"
    prediction: Literal["eps", "v"] = "v"  # v converges much faster than eps in a few hundred steps
    schedule: Schedule = field(default_factory=Schedule)
    guidance_dropout: float = 0.1  # share of captions replaced by "" (classifier-free guidance)
    seed: int = 0
    threads: int = 2  # CPU threads for training and evaluation
    checkpoint_every: int = 100  # steps between safetensors checkpoints (when an output folder is given)
    time_budget_s: float | None = None  # stop early when this much wall time has passed
    # an exponential moving average of the weights is what gets measured (0: the last weights). It damps the
    # last steps' noise without changing the trajectory, so a short run is still a long run's checkpoint.
    ema: float = 0.98
    # proxies trained per candidate, with seeds seed .. seed + seeds - 1; their per-item values are averaged and
    # the spread between them is reported (the seed noise a single proxy hides)
    seeds: int = 1

    def __post_init__(self) -> None:
        for name in ("steps", "batch", "threads", "checkpoint_every", "seeds"):
            require(getattr(self, name) >= 1, name, f"{getattr(self, name)} must be at least 1")
        require(self.lr > 0, "lr", f"{self.lr} must be positive")
        require(self.warmup_steps >= 0, "warmup_steps", f"{self.warmup_steps} must be >= 0")
        require(0 <= self.guidance_dropout < 1, "guidance_dropout", f"{self.guidance_dropout} must be in [0, 1)")
        require(self.time_budget_s is None or self.time_budget_s > 0, "time_budget_s", f"{self.time_budget_s} must be positive")
        require(0 <= self.ema < 1, "ema", f"{self.ema} must be in [0, 1)")


@dataclass(frozen=True)
class ClipConfig:
    """A local OpenCLIP model (image and text towers) for ``clip_score``."""

    checkpoint: FilePath
    model: str = "ViT-L-14"
    model_config: FilePath | None = None


@dataclass(frozen=True)
class FewStepConfig:
    """``few_step_score``: how well a candidate survives step reduction. After its proxy is trained, a
    copy is distilled (CFG-aware, 2 teacher steps per student step) for ``iterations`` and sampled
    in ``student_steps``; the score is eval_score (synthetic domain) or clip_score (real data)."""

    student_steps: int = 4
    iterations: int = 100  # each costs about three training steps (teacher steps, student with guidance)
    batch: int = 16

    def __post_init__(self) -> None:
        for name in ("student_steps", "iterations", "batch"):
            require(getattr(self, name) >= 1, name, f"{getattr(self, name)} must be at least 1")


@dataclass(frozen=True)
class EvalConfig:
    """How the metrics are measured. Every metric reports its standard error."""

    heldout: int = 256  # held-out images for heldout_loss and text_gap (fixed timesteps and noise)
    samples: int = 128  # held-out captions sampled for eval_score, fd and clip_score
    ddim_steps: int = 20
    guidance: float = 3.0
    seed: int = 1234  # timesteps, noise and sampling noise: the same for every candidate
    batch: int = 64  # images per forward pass in evaluation
    metrics: tuple[str, ...] = ()  # registered metric names (archlab.quality.registry); none: every default one that applies
    clip: ClipConfig | None = None  # needed for clip_score (and few_step_score on real data)
    few_step: FewStepConfig = field(default_factory=FewStepConfig)
    # learning-curve score: measure at this many evenly spaced points of the run (the last at the end) and report
    # each metric's mean over them, item by item; 0 or 1: the end of the run only
    curve: int = 0

    def __post_init__(self) -> None:
        for name in ("heldout", "samples", "ddim_steps", "batch"):
            require(getattr(self, name) >= 1, name, f"{getattr(self, name)} must be at least 1")
        require(self.curve >= 0, "curve", f"{self.curve} must be >= 0")


@dataclass(frozen=True)
class AmortisedConfig:
    """A model trained once and shared by every candidate (stored beside the study, resumable).

    ``teacher``: a model of ``arch`` trained for ``steps``; each candidate's proxy learns to match
    its predictions (output distillation, a share ``weight`` of its loss) and can be scored by
    ``teacher_distance``. ``supernet``: the search space's largest member (every choice's weights)
    trained for ``steps`` by the sandwich rule (the largest, the smallest and random members each
    step); each candidate starts from its slice of those weights (leading channels, leading
    blocks and layers) and trains on for ``train.steps``.
    """

    kind: Literal["none", "teacher", "supernet"] = "none"
    steps: int = 1000  # the shared model's training steps (batch: the train section's)
    lr: float = 1e-3  # with a cosine decay to 0: long runs at the proxies' constant 2e-3 blow up
    arch: NameOrPath = "mobilediffusion"  # teacher: a preset or description file, under the proxy rule
    weight: float = 0.5  # teacher: the share of each candidate's loss that matches the teacher (the rest: the task)
    members: int = 4  # supernet: members per step (largest, smallest, then random ones)
    space: NameOrPath | None = None  # supernet: the space it covers (a study's own space when unset)
    seed: int = 7  # the shared model's training seed (not any candidate's)

    def __post_init__(self) -> None:
        require(self.steps >= 1, "steps", f"{self.steps} must be at least 1")
        require(self.lr > 0, "lr", f"{self.lr} must be positive")
        require(0 < self.weight <= 1, "weight", f"{self.weight} must be in (0, 1]")
        require(self.members >= 2, "members", f"{self.members} must be at least 2 (the largest and the smallest)")


@dataclass(frozen=True)
class QualityConfig:
    """Everything that decides how a candidate's quality is judged."""

    data: DataConfig = field(default_factory=DataConfig)
    text: TextConfig = field(default_factory=TextConfig)
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    amortised: AmortisedConfig = field(default_factory=AmortisedConfig)
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: CUDA when present
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 autocast on CUDA, fp32 on the CPU; fp32 on CUDA turns TF32 off

    def __post_init__(self) -> None:
        need = max(self.eval.heldout, self.eval.samples) if self.data.kind != "synthetic" else 0
        require(need <= self.data.heldout, "eval", f"asks for {need} held-out items but data.heldout keeps {self.data.heldout}; "
                "raise data.heldout or lower eval.heldout / eval.samples")
        check_metrics(self, self.eval.metrics, "eval.metrics")


def check_metrics(cfg: "QualityConfig", names: Sequence[str], where: str = "metrics") -> None:
    """Refuse, before any work, a metric this data or configuration cannot give."""
    for name in names:
        if not registry.is_metric(name):
            raise ConfigError(where, f"{name!r} is not one of {', '.join(registry.names())}")
        problem = registry.get(name).applies(cfg)
        if problem is not None:
            raise ConfigError(where, f"{name} {problem}")
