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
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch

from archlab.arch.builder import UNet
from archlab.arch.description import Description
from archlab.errors import ConfigError
from archlab.quality import registry
from archlab.quality.amortised import Supernet, Teacher
from archlab.quality.config import QualityConfig, TrainConfig, check_metrics
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


@dataclass(frozen=True)
class FirstLook:
    """Read ``metric`` at ``step`` of the (single-seed) run, and train on only if ``go_on`` says so."""

    step: int
    metric: str
    go_on: Callable[[Estimate], bool]


@dataclass
class Judgement:
    """A candidate judged: its proxy, its metrics with standard errors, what it cost."""

    proxy: Description
    metrics: dict[str, Estimate]
    train: TrainResult
    eval_seconds: float
    model: ProxyModel | None = field(default=None, repr=False)
    seed_sd: dict[str, float] = field(default_factory=dict)  # with train.seeds > 1: each metric's spread between seeds
    curve: list[dict[str, Any]] = field(default_factory=list)  # with eval.curve > 1: each point's step and values
    inherited: float | None = None  # with a supernet: the share of the proxy's parameters it inherited
    first_look: Estimate | None = None  # with a FirstLook: its metric at its step
    stopped: bool = False  # the first look stopped the run there: ``metrics`` holds that reading alone

    def flat(self) -> dict[str, float]:
        return flat(self.metrics)

    def report(self) -> dict[str, Any]:
        """Plain data for JSON output and trial attributes."""
        return {"proxy_channels": list(self.proxy.channels), "proxy_resolution": self.proxy.resolution,
                "steps": self.train.steps, "train_seconds": round(self.train.seconds, 2),
                "train_cpu_seconds": round(self.train.cpu_seconds, 2), "steps_per_s": round(self.train.steps_per_s, 3),
                "eval_seconds": round(self.eval_seconds, 2), "peak_memory_mb": round(self.train.peak_memory_mb, 1),
                "final_train_loss": self.train.final_loss, "metrics": {k: v.as_dict() for k, v in self.metrics.items()},
                **({"seed_sd": self.seed_sd} if self.seed_sd else {}), **({"curve": self.curve} if self.curve else {}),
                **({"inherited": round(self.inherited, 4)} if self.inherited is not None else {}),
                **({"first_look": self.first_look.as_dict(), "stopped": self.stopped} if self.first_look is not None else {})}


@dataclass
class _Split:
    train: CaptionedImages
    held: CaptionedImages
    pixels: CaptionedImages | None  # the held-out images as pixels when training on latents
    items: list[tuple[np.ndarray, str]]  # the first held-out items, loaded once
    latents: Any = None  # the LatentData whose VAE decodes samples back to pixels


class QualityPipeline:
    """Judges candidates under one :class:`QualityConfig` (see the module docstring)."""

    def __init__(self, cfg: QualityConfig, *, amortised_dir: str | Path | None = None, space: Any = None):
        """``amortised_dir``: where a teacher or supernet (``cfg.amortised``) is kept (a study's own folder; default
        ``~/.cache/archlab/amortised``); ``space``: the search space a supernet covers (a SearchSpace)."""
        self.cfg = cfg
        self.amortised_dir = Path(amortised_dir) if amortised_dir else Path.home() / ".cache" / "archlab" / "amortised"
        self.space = space
        self._teacher: Teacher | None = None
        self._supernet: Supernet | None = None
        self.device = resolve_device(cfg.device)
        self.precision = "bf16" if cfg.precision == "bf16" or (cfg.precision == "auto" and self.device == "cuda") else "fp32"
        if self.device == "cuda" and cfg.precision == "fp32":  # asked for float32: no TF32 in matmuls or cuDNN's convolutions
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
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
        """A trainer for ``model`` (with the shared teacher, when ``amortised.kind`` is teacher)."""
        split_ = self.data(model.description.resolution)
        teacher = self.teacher().model() if self.cfg.amortised.kind == "teacher" else None
        return Trainer(model, data if data is not None else split_.train, train or self.cfg.train, device=self.device,
                       precision=self.precision, block_drop=block_drop, out_dir=out_dir, teacher=teacher,
                       teacher_weight=self.cfg.amortised.weight)

    # ------------------------------------------------------------------ shared models

    def teacher(self) -> Teacher:
        """The shared teacher (trained on first use of :meth:`Teacher.model`)."""
        if self._teacher is None:
            self._teacher = Teacher(self, self.amortised_dir)
        return self._teacher

    def supernet(self) -> Supernet:
        """The shared supernet over ``space`` (trained on first use)."""
        if self._supernet is None:
            if self.space is None:
                raise ConfigError("amortised.space", "a supernet needs the search space it covers: run it in a study, or "
                                  "set quality.amortised.space")
            self._supernet = Supernet(self, self.space, self.amortised_dir)
        return self._supernet

    def prepare(self, *, progress: bool = True) -> None:
        """Train (or resume, or read) the shared model ``amortised.kind`` names, before any candidate needs it."""
        if self.cfg.amortised.kind == "teacher":
            self.teacher().model(progress=progress)
        elif self.cfg.amortised.kind == "supernet":
            self.supernet().ensure(progress=progress)

    # ------------------------------------------------------------------ metrics

    def metrics(self, requested: Sequence[str] | None = None) -> tuple[str, ...]:
        """The metrics to measure: those asked for, else the config's, else every default one that applies."""
        names = tuple(requested or self.cfg.eval.metrics)
        if not names:
            names = tuple(m.name for m in registry.metrics() if m.default and m.applies(self.cfg) is None)
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
        torch.set_num_threads(self.cfg.train.threads)
        m = Measurement(self, model, skip_blocks=skip_blocks, sampling_steps=sampling_steps, guidance=guidance, items=items)
        values: dict[str, np.ndarray] = {}
        extra: dict[str, Estimate] = {}
        for name in names:
            out = registry.get(name).measure(m)
            if isinstance(out, Estimate):
                extra[name] = out
            else:
                values.update(out)
        return summarise(values, extra), values

    @staticmethod
    def _held(s: _Split, n: int) -> list[tuple[np.ndarray, str]]:
        """The first ``n`` held-out items, loaded once (and more on demand, up to the held-out split's size)."""
        if len(s.items) < n:
            s.items.extend(s.held.get(i) for i in range(len(s.items), min(n, len(s.held))))
        return s.items[:n]

    def sample_pixels(self, model: ProxyModel, captions: list[str], *, skip_blocks: frozenset[str] = frozenset(),
                      steps: int | None = None, guidance: float | None = None) -> torch.Tensor:
        """Samples for ``captions`` as pixels in [0, 1] (decoded by the VAE when training on latents)."""
        s = self.data(model.description.resolution)
        t = self.cfg.train
        x = sample(model, captions, schedule=t.schedule, prediction=t.prediction, cfg=self.cfg.eval, skip_blocks=skip_blocks,
                   clip=None if self.cfg.data.vae else 1.0, precision=self.precision, steps=steps, guidance=guidance)
        return s.latents.decode(x) if s.latents is not None else (x + 1) / 2

    def score_samples(self, pixels01: torch.Tensor, captions: list[str], side: int) -> np.ndarray:
        """Per caption: eval_score on the synthetic domain (captions are the first held-out ones), else clip_score."""
        if self.synthetic:
            return self._evaluator(to_uint8(pixels01 * 2 - 1), self.data(side))["eval_score"]
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
              train_data: CaptionedImages | None = None, first_look: FirstLook | None = None) -> Judgement:
        """Train ``desc``'s proxy (on ``train_data`` instead of the training split, for controls) and measure it.

        With ``train.seeds`` N, N proxies (seeds ``seed`` .. ``seed + N - 1``) are trained and their
        per-item values averaged; ``seed_sd`` reports the spread between them, and each metric's
        standard error counts it (held-out and seed noise together). With ``eval.curve``
        K, each is measured at K evenly spaced points of its run and each item's values are
        averaged over them (a learning-curve score). A supernet's slice starts each proxy. With
        ``first_look`` (one seed, no curve), the run is measured at its step first and stops there,
        ``stopped``, unless its ``go_on`` says otherwise."""
        names = self.metrics(metrics)
        base = self.cfg.train.seed if seed is None else seed
        if first_look is not None and (self.cfg.train.seeds > 1 or self.cfg.eval.curve > 1
                                       or not 1 <= first_look.step < self.cfg.train.steps):
            raise ConfigError("first_look", f"reads one seed at a step below train.steps ({self.cfg.train.steps}), "
                                            "without eval.curve or train.seeds > 1")
        runs = []
        for i in range(self.cfg.train.seeds):
            folder = None if out_dir is None else Path(out_dir) / (f"seed{base + i}" if i else "")
            runs.append(self._run(desc, names, base + i, folder, progress, train_data, first_look))
        if runs[0].get("stopped"):
            r = runs[0]
            return Judgement(r["model"].description, {first_look.metric: r["look"]}, r["train"], r["eval_seconds"],
                             r["model"] if keep_model else None, first_look=r["look"], stopped=True, inherited=r["inherited"])
        values = {k: np.mean([r["values"][k] for r in runs], axis=0) for k in runs[0]["values"]}
        extra = {k: Estimate(float(np.mean([r["extra"][k].value for r in runs])),
                             float(np.sqrt(np.sum([r["extra"][k].se ** 2 for r in runs]))) / len(runs), runs[0]["extra"][k].n)
                 for k in runs[0]["extra"]}
        estimates = summarise(values, extra)
        seed_sd = {} if len(runs) < 2 else {k: float(np.std([np.mean(r["values"][k]) if k in r["values"] else r["extra"][k].value
                                                            for r in runs], ddof=1)) for k in estimates}
        # with several seeds a metric's standard error counts the seeds' spread too, not the held-out items alone
        estimates = {k: Estimate(e.value, float(np.hypot(e.se, seed_sd[k] / np.sqrt(len(runs)))) if k in seed_sd else e.se, e.n)
                     for k, e in estimates.items()}
        results = [r["train"] for r in runs]
        train = TrainResult(results[0].steps, sum(r.seconds for r in results), sum(r.cpu_seconds for r in results),
                            float(np.mean([r.steps_per_s for r in results])), max(r.peak_memory_mb for r in results),
                            float(np.mean([r.final_loss for r in results])), results[0].losses)
        first = runs[0]
        if out_dir is not None:
            with first["trainer"].averaged():
                save_trained(first["model"], Path(out_dir) / "model.safetensors", quality=self.cfg)
        return Judgement(first["model"].description, estimates, train, sum(r["eval_seconds"] for r in runs),
                         first["model"] if keep_model else None, seed_sd, first["curve"], first["inherited"], first.get("look"))

    def _run(self, desc: Description, names: tuple[str, ...], seed: int, out_dir: Path | None, progress: bool,
             train_data: CaptionedImages | None, look: FirstLook | None = None) -> dict[str, Any]:
        """One proxy trained with ``seed`` and measured (at the end, or at each learning-curve point; first at
        ``look``'s step, stopping there unless it says go on)."""
        model = self.model(desc, seed=seed)
        inherited = self.supernet().inherit(model) if self.cfg.amortised.kind == "supernet" else None
        trainer = self.trainer(model, out_dir=out_dir, train=_with_seed(self.cfg.train, seed), data=train_data)
        steps, k = self.cfg.train.steps, max(1, self.cfg.eval.curve)
        points = sorted({max(1, round(steps * (j + 1) / k)) for j in range(k)})
        results, per_point, curve, eval_seconds = [], [], [], 0.0
        seen = None
        if look is not None:
            results.append(trainer.train(steps=look.step, progress=progress))
            start = time.perf_counter()
            with trainer.averaged():
                est, _ = self.evaluate(model, metrics=(look.metric,))
            eval_seconds += time.perf_counter() - start
            seen = est[look.metric]
            if not look.go_on(seen):
                r = results[-1]
                train = TrainResult(trainer.step, r.seconds, r.cpu_seconds, r.steps_per_s, r.peak_memory_mb, r.final_loss, r.losses)
                return {"model": model, "trainer": trainer, "train": train, "eval_seconds": eval_seconds,
                        "inherited": inherited, "look": seen, "stopped": True}
        for step in points:
            results.append(trainer.train(steps=step, progress=progress))
            start = time.perf_counter()
            with trainer.averaged():  # the weight average when train.ema is on
                est, vals = self.evaluate(model, metrics=names)
            eval_seconds += time.perf_counter() - start
            per_point.append((vals, {k_: v for k_, v in est.items() if k_ not in vals}))
            if len(points) > 1:
                curve.append({"step": trainer.step, **{k_: v.value for k_, v in est.items()}})
        values = {k_: np.mean([p[0][k_] for p in per_point], axis=0) for k_ in per_point[0][0]}
        extra = {k_: Estimate(float(np.mean([p[1][k_].value for p in per_point])), per_point[-1][1][k_].se, per_point[-1][1][k_].n)
                 for k_ in per_point[0][1]}
        train = TrainResult(trainer.step, sum(r.seconds for r in results), sum(r.cpu_seconds for r in results),
                            results[-1].steps_per_s, max(r.peak_memory_mb for r in results), results[-1].final_loss,
                            [x for r in results for x in r.losses])
        return {"model": model, "trainer": trainer, "values": values, "extra": extra, "train": train, "curve": curve,
                "eval_seconds": eval_seconds, "inherited": inherited, "look": seen}


class Measurement:
    """One evaluation of one model: what the registered metrics measure from (see
    :mod:`archlab.quality.registry`). Held-out losses, samples and evaluator scores are computed
    once, on first use, with the evaluation's common random numbers."""

    def __init__(self, pipe: QualityPipeline, model: ProxyModel, *, skip_blocks: frozenset[str] = frozenset(),
                 sampling_steps: int | None = None, guidance: float | None = None, items: int | None = None):
        self.pipe, self.model, self.cfg = pipe, model, pipe.cfg
        self.split = pipe.data(model.description.resolution)
        self.skip_blocks, self.sampling_steps, self.guidance = skip_blocks, sampling_steps, guidance
        self.heldout_n = items or self.cfg.eval.heldout
        self.samples_n = items or self.cfg.eval.samples
        self._cache: dict[str, Any] = {}

    def _once(self, key: str, compute: Any) -> Any:
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def held(self, n: int) -> list[tuple[np.ndarray, str]]:
        return self.pipe._held(self.split, n)

    def _losses(self, mismatch: bool) -> np.ndarray:
        e, t = self.cfg.eval, self.cfg.train
        held = self.held(self.heldout_n)
        captions = mismatched([c for _, c in held]) if mismatch else None
        return item_losses(self.model, held, schedule=t.schedule, prediction=t.prediction, seed=e.seed, batch=e.batch,
                           skip_blocks=self.skip_blocks, precision=self.pipe.precision, captions=captions)

    def own_losses(self) -> np.ndarray:
        """Each held-out item's loss with its own caption."""
        return self._once("own", lambda: self._losses(False))

    def mismatched_losses(self) -> np.ndarray:
        """Each held-out item's loss with the next item's caption."""
        return self._once("mismatched", lambda: self._losses(True))

    def captions(self) -> list[str]:
        return [c for _, c in self.held(self.samples_n)]

    def pixels(self) -> torch.Tensor:
        """Samples for the first held-out captions, pixels in [0, 1]."""
        return self._once("pixels", lambda: self.pipe.sample_pixels(
            self.model, self.captions(), skip_blocks=self.skip_blocks, steps=self.sampling_steps, guidance=self.guidance))

    def images(self) -> list[np.ndarray]:
        return self._once("images", lambda: to_uint8(self.pixels() * 2 - 1))

    def evaluator_scores(self) -> dict[str, np.ndarray]:
        return self._once("evaluator", lambda: self.pipe._evaluator(self.images(), self.split))

    def frechet(self) -> Estimate:
        real = [self.pipe._pixels(self.split).get(i)[0] for i in range(len(self.captions()))]
        return fd_estimate(self.images(), real, seed=self.cfg.eval.seed)

    def clip_scores(self) -> np.ndarray:
        return self.pipe.clip().score(self.pixels(), self.captions()).numpy()


def _with_seed(cfg: TrainConfig, seed: int) -> TrainConfig:
    import dataclasses

    return dataclasses.replace(cfg, seed=seed)
