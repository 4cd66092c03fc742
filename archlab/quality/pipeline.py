"""The one quality pipeline: data, text encoder, proxy rule, training and metrics.

``archlab proxy train``, studies, the evolving search, distillation and the benchmarks all
judge a candidate through :class:`QualityPipeline`, built from one :class:`QualityConfig`,
so a metric means the same wherever it appears.

>>> from archlab import preset
>>> from archlab.quality.config import QualityConfig, TrainConfig, EvalConfig
>>> pipe = QualityPipeline(QualityConfig(train=TrainConfig(steps=2, batch=2), eval=EvalConfig(heldout=4, samples=2, ddim_steps=2), device="cpu"))
>>> j = pipe.judge(preset("tiny"), metrics=("heldout_loss", "text_gap"), progress=False)
>>> sorted(j.metrics), j.metrics["heldout_loss"].n
(['heldout_loss', 'text_gap'], 4)
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from archlab.arch.builder import UNet
from archlab.arch.description import Description
from archlab.errors import ConfigError
from archlab.quality.config import SAMPLED_METRICS, SYNTHETIC_METRICS, QualityConfig, TrainConfig, check_metrics
from archlab.quality.data import CaptionedImages, Subset, SyntheticData, default_cache, open_data, split
from archlab.quality.metrics import (
    Estimate,
    evaluator_scores,
    fd_estimate,
    flat,
    item_losses,
    mismatched,
    sample,
    summarise,
    to_uint8,
)
from archlab.quality.proxy import proxy_description
from archlab.quality.text import OpenCLIP, OpenCLIPTextEncoder, SmallTextEncoder, vocabulary
from archlab.quality.train import ProxyModel, Trainer, TrainResult, read_trained, save_trained


def resolve_device(name: str) -> str:
    """``auto`` -> CUDA when present, else the CPU; ``cuda`` without a GPU is refused."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", "cuda was asked for but torch.cuda.is_available() is False")
    return name


@dataclass
class Judgement:
    """A candidate judged: its proxy, its metrics with standard errors, what it cost."""

    proxy: Description
    metrics: dict[str, Estimate]
    train: TrainResult
    eval_seconds: float
    model: ProxyModel | None = field(default=None, repr=False)

    def flat(self) -> dict[str, float]:
        return flat(self.metrics)

    def report(self) -> dict[str, Any]:
        """Plain data for JSON output and trial attributes."""
        return {"proxy_channels": list(self.proxy.channels), "proxy_resolution": self.proxy.resolution,
                "steps": self.train.steps, "train_seconds": round(self.train.seconds, 2),
                "train_cpu_seconds": round(self.train.cpu_seconds, 2), "steps_per_s": round(self.train.steps_per_s, 3),
                "eval_seconds": round(self.eval_seconds, 2), "peak_memory_mb": round(self.train.peak_memory_mb, 1),
                "final_train_loss": self.train.final_loss, "metrics": {k: v.as_dict() for k, v in self.metrics.items()}}


@dataclass
class _Split:
    train: CaptionedImages
    held: CaptionedImages
    pixels: CaptionedImages | None  # the held-out images as pixels when training on latents
    items: list[tuple[np.ndarray, str]]  # the first held-out items, loaded once
    latents: Any = None  # the LatentData whose VAE decodes samples back to pixels


class QualityPipeline:
    """Judges candidates under one :class:`QualityConfig` (see the module docstring)."""

    def __init__(self, cfg: QualityConfig):
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        self.precision = "bf16" if cfg.precision == "bf16" or (cfg.precision == "auto" and self.device == "cuda") else "fp32"
        self._splits: dict[int, _Split] = {}
        self._vocab: list[int] | None = None
        self._clip_text: OpenCLIP | None = None
        self._clip_eval: OpenCLIP | None = None
        if cfg.data.vae is not None:
            from archlab.quality.latents import vae_factor

            if not (Path(cfg.data.vae) / "config.json").is_file():
                raise ConfigError("data.vae", f"{cfg.data.vae} has no config.json (give a local diffusers AutoencoderKL folder)")
            self.vae_factor = vae_factor(cfg.data.vae)
            self.channels = int(json.loads((Path(cfg.data.vae) / "config.json").read_text()).get("latent_channels", 4))
        else:
            self.vae_factor, self.channels = 1, 3
        if cfg.text.encoder == "openclip":
            self._clip_text = OpenCLIP(cfg.text.checkpoint, cfg.text.model, cfg.text.model_config, device=self.device)
            self.text_dim, self.text_tokens = self._clip_text.text_width, self._clip_text.context_length
        else:
            self.text_dim, self.text_tokens = cfg.text.width, cfg.text.tokens

    # ------------------------------------------------------------------ data

    @property
    def synthetic(self) -> bool:
        return self.cfg.data.kind == "synthetic"

    def input_side(self, desc: Description) -> int:
        """The proxy UNet's input side for ``desc`` (the proxy rule's resolution, or the description's)."""
        return self.cfg.proxy.resolution or desc.resolution

    def data(self, side: int) -> _Split:
        """Training and held-out data at UNet input side ``side`` (opened once per side)."""
        if side in self._splits:
            return self._splits[side]
        d = self.cfg.data
        full = open_data(d.kind, resolution=side * self.vae_factor, path=d.path, seed=d.seed, cache=d.cache,
                         image_column=d.image_column, caption_column=d.caption_column)
        pixels = latents = None
        if d.vae is None:
            train, held = split(full, d.heldout, seed=d.seed)
        else:  # latents cached by each item's index in a dataset that never changes under them
            from archlab.quality.latents import LatentData

            cache = Path(d.cache) if d.cache else default_cache(d.path or f"synthetic-{d.seed}")
            if isinstance(full, SyntheticData):  # the two parts are fixed scene ranges
                train_px, pixels = split(full, d.heldout, seed=d.seed)
                train = LatentData(train_px, d.vae, cache=cache / "train", device=self.device)
                held = latents = LatentData(pixels, d.vae, cache=cache / "heldout", device=self.device)
            else:
                latents = LatentData(full, d.vae, cache=cache / "latents", device=self.device)
                train, held = split(latents, d.heldout, seed=d.seed)
                pixels = Subset(full, held.indices)
        n = max(self.cfg.eval.heldout, self.cfg.eval.samples)
        items = [held.get(i) for i in range(min(n, len(held)))]
        self._splits[side] = _Split(train, held, pixels, items, latents)
        return self._splits[side]

    def vocabulary(self) -> list[int]:
        if self._vocab is None:
            d = self.cfg.data
            if d.kind == "synthetic":
                captions: Iterable[str] = SyntheticData(seed=d.seed).captions()
            else:
                captions = open_data(d.kind, resolution=8, path=d.path, cache=d.cache, image_column=d.image_column,
                                     caption_column=d.caption_column).captions()
            self._vocab = vocabulary(captions)
        return self._vocab

    # ------------------------------------------------------------------ models

    def proxy(self, desc: Description) -> Description:
        """``desc`` under the proxy rule, fitted to this data and text encoder."""
        return proxy_description(desc, self.cfg.proxy, channels=self.channels, text_dim=self.text_dim, text_tokens=self.text_tokens)

    def text_encoder(self) -> torch.nn.Module:
        if self._clip_text is not None:
            return OpenCLIPTextEncoder(self._clip_text)
        t = self.cfg.text
        return SmallTextEncoder(self.vocabulary(), width=t.width, tokens=t.tokens, layers=t.layers)

    def model(self, desc: Description, *, seed: int | None = None, unet: UNet | None = None) -> ProxyModel:
        """A fresh proxy of ``desc`` (seeded), or ``unet`` (pretrained weights) with this pipeline's text encoder."""
        torch.manual_seed(self.cfg.train.seed if seed is None else seed)
        if unet is not None:
            d = unet.description
            if (d.in_channels, d.text_dim) != (self.channels, self.text_dim) or self.cfg.proxy.width != 1:
                raise ConfigError("quality", f"the pretrained UNet takes {d.in_channels} input channels and {d.text_dim}-d text; "
                                  f"this data and text encoder give {self.channels} and {self.text_dim} (set proxy: "
                                  "{width: 1, resolution: null}, a VAE of its latent channels and a text tower of its width)")
            return ProxyModel(text_encoder=self.text_encoder(), unet=unet).to(self.device)
        return ProxyModel(self.proxy(desc), text_encoder=self.text_encoder()).to(self.device)

    def load_trained(self, path: str | Path) -> ProxyModel:
        """A trained model file (see :func:`~archlab.quality.train.save_trained`) with its text encoder:
        the trained small one it holds, else this pipeline's frozen OpenCLIP tower."""
        trained = read_trained(path)
        desc, tensors = trained.description, trained.tensors
        text_state = {k[5:]: v for k, v in tensors.items() if k.startswith("text.")}
        if text_state:
            text: torch.nn.Module = SmallTextEncoder.from_state(text_state)
        elif self.cfg.text.encoder == "openclip":
            text = self.text_encoder()
        else:
            raise ConfigError(str(path), "holds no text encoder weights: give quality.text.encoder openclip (the tower it was "
                              "trained with)")
        model = ProxyModel(desc, text_encoder=text)
        result = model.load_state_dict({k: v for k, v in tensors.items() if not k.startswith("text.") or text_state}, strict=False)
        if result.missing_keys or result.unexpected_keys:
            bad = (result.missing_keys or result.unexpected_keys)[0]
            raise ConfigError(str(path), f"does not fit its description: {bad} is {'missing' if result.missing_keys else 'extra'}")
        if (desc.in_channels, desc.text_dim) != (self.channels, model.text.width):
            raise ConfigError(str(path), f"takes {desc.in_channels} channels and {desc.text_dim}-d text; the data gives "
                              f"{self.channels} and the text encoder {model.text.width}")
        return model.to(self.device)

    def trainer(self, model: ProxyModel, *, block_drop: float = 0.0, out_dir: str | Path | None = None,
                train: TrainConfig | None = None, data: CaptionedImages | None = None) -> Trainer:
        split_ = self.data(model.description.resolution)
        return Trainer(model, data if data is not None else split_.train, train or self.cfg.train, device=self.device,
                       precision=self.precision, block_drop=block_drop, out_dir=out_dir)

    # ------------------------------------------------------------------ metrics

    def metrics(self, requested: Sequence[str] | None = None) -> tuple[str, ...]:
        """The metrics to measure: those asked for, else the config's, else every one that applies."""
        names = tuple(requested or self.cfg.eval.metrics)
        if not names:
            names = ("heldout_loss", "text_gap") + (SYNTHETIC_METRICS if self.synthetic else ()) + \
                (("clip_score",) if self.cfg.eval.clip is not None else ())
        check_metrics(self.cfg, names)
        return names

    def evaluate(self, model: ProxyModel, *, metrics: Sequence[str] | None = None, skip_blocks: frozenset[str] = frozenset(),
                 sampling_steps: int | None = None, guidance: float | None = None, items: int | None = None
                 ) -> tuple[dict[str, Estimate], dict[str, np.ndarray]]:
        """Estimates of ``metrics`` and, for the per-item ones, every item's value (for paired comparisons).

        ``sampling_steps`` and ``guidance`` override the evaluation's DDIM steps and CFG scale
        (few-step students are measured at their own step count); ``items`` overrides
        ``eval.heldout`` and ``eval.samples`` (a closer look, at most ``data.heldout``)."""
        names = self.metrics(metrics)
        e, t = self.cfg.eval, self.cfg.train
        s = self.data(model.description.resolution)
        torch.set_num_threads(t.threads)
        values: dict[str, np.ndarray] = {}
        extra: dict[str, Estimate] = {}
        if {"heldout_loss", "text_gap"} & set(names):
            held = self._held(s, items or e.heldout)
            kw = dict(schedule=t.schedule, prediction=t.prediction, seed=e.seed, batch=e.batch, skip_blocks=skip_blocks,
                      precision=self.precision)
            own = item_losses(model, held, **kw)
            if "heldout_loss" in names:
                values["heldout_loss"] = own
            if "text_gap" in names:
                values["text_gap"] = item_losses(model, held, captions=mismatched([c for _, c in held]), **kw) - own
        if set(SAMPLED_METRICS) & set(names):
            captions = [c for _, c in self._held(s, items or e.samples)]
            pixels01 = self._sample(model, s, captions, skip_blocks=skip_blocks, steps=sampling_steps, guidance=guidance)
            images = to_uint8(pixels01 * 2 - 1)
            if "eval_score" in names:
                values.update(self._evaluator(images, s))
            if "fd" in names:
                real = [self._pixels(s).get(i)[0] for i in range(len(captions))]
                extra["fd"] = fd_estimate(images, real, seed=e.seed)
            if "clip_score" in names:
                values["clip_score"] = self.clip().score(pixels01, captions).numpy()
        if "few_step_score" in names:
            values["few_step_score"] = self._few_step(model, s)
        return summarise(values, extra), values

    @staticmethod
    def _held(s: _Split, n: int) -> list[tuple[np.ndarray, str]]:
        """The first ``n`` held-out items, loaded once (and more on demand, up to the held-out split's size)."""
        if len(s.items) < n:
            s.items.extend(s.held.get(i) for i in range(len(s.items), min(n, len(s.held))))
        return s.items[:n]

    def _sample(self, model: ProxyModel, s: _Split, captions: list[str], *, skip_blocks: frozenset[str] = frozenset(),
                steps: int | None = None, guidance: float | None = None) -> torch.Tensor:
        """Samples for ``captions`` as pixels in [0, 1] (decoded by the VAE when training on latents)."""
        t = self.cfg.train
        x = sample(model, captions, schedule=t.schedule, prediction=t.prediction, cfg=self.cfg.eval, skip_blocks=skip_blocks,
                   clip=None if self.cfg.data.vae else 1.0, precision=self.precision, steps=steps, guidance=guidance)
        return s.latents.decode(x) if s.latents is not None else (x + 1) / 2

    def _few_step(self, model: ProxyModel, s: _Split) -> np.ndarray:
        """Per caption, the score of a copy distilled briefly to ``eval.few_step.student_steps`` sampling steps."""
        from archlab.distill.config import DistillConfig
        from archlab.distill.step import StepDistiller

        f = self.cfg.eval.few_step
        cfg = DistillConfig(student_steps=f.student_steps, teacher_steps=2 * f.student_steps, steps=f.iterations, batch=f.batch,
                            seed=self.cfg.train.seed)
        distiller = StepDistiller(model, self, cfg)
        distiller.train(progress=False)
        captions = [c for _, c in s.items[:self.cfg.eval.samples]]
        pixels01 = self._sample(distiller.student, s, captions, steps=f.student_steps)
        if self.synthetic:
            return self._evaluator(to_uint8(pixels01 * 2 - 1), s)["eval_score"]
        return self.clip().score(pixels01, captions).numpy()

    def _evaluator(self, images: np.ndarray, s: _Split) -> dict[str, np.ndarray]:
        """The synthetic evaluator's per-image scores against the scenes the held-out captions describe."""
        return evaluator_scores(images, [self._scene(s, i) for i in range(len(images))])

    @staticmethod
    def _pixels(s: _Split) -> CaptionedImages:
        """The held-out part as pixel images (the latents' source when training on latents)."""
        return s.pixels if s.pixels is not None else s.held

    def _scene(self, s: _Split, i: int):
        return self._pixels(s).scene(i)

    def clip(self) -> OpenCLIP:
        if self._clip_eval is None:
            c = self.cfg.eval.clip
            self._clip_eval = OpenCLIP(c.checkpoint, c.model, c.model_config, device=self.device)
        return self._clip_eval

    # ------------------------------------------------------------------ all of it

    def judge(self, desc: Description, *, metrics: Sequence[str] | None = None, seed: int | None = None,
              out_dir: str | Path | None = None, progress: bool = True, keep_model: bool = False,
              train_data: CaptionedImages | None = None) -> Judgement:
        """Train ``desc``'s proxy (on ``train_data`` instead of the training split, for controls) and measure it."""
        model = self.model(desc, seed=seed)
        train_cfg = self.cfg.train if seed is None else _with_seed(self.cfg.train, seed)
        trainer = self.trainer(model, out_dir=out_dir, train=train_cfg, data=train_data)
        result = trainer.train(progress=progress)
        start = time.perf_counter()
        with trainer.averaged():  # the weight average when train.ema is on
            estimates, _ = self.evaluate(model, metrics=metrics)
            if out_dir is not None:
                save_trained(model, Path(out_dir) / "model.safetensors", quality=self.cfg)
        return Judgement(model.description, estimates, result, time.perf_counter() - start, model if keep_model else None)


def _with_seed(cfg: TrainConfig, seed: int) -> TrainConfig:
    import dataclasses

    return dataclasses.replace(cfg, seed=seed)
