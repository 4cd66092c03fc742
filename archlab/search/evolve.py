"""SnapFusion's architecture evolving (Li et al. 2023, Algorithm 1): the one implementation.

``archlab evolve FILE`` and a study's ``sampler: {kind: evolve}`` both call :func:`evolve`
with an :class:`EvolveConfig` (the search settings, defaults written once here), a
:class:`~archlab.quality.config.QualityConfig` (how quality is judged), a latency table
and a target.

1. Robust training: the model (the start's proxy, or a pretrained UNet itself) is trained
   with every removable block (:func:`~archlab.arch.description.removable`) replaced by the
   identity with probability ``block_drop`` at each step. A blow-up (the mean loss of the
   last 20 steps over twice the best earlier 20 since the architecture last changed) stops
   the search with one line naming ``quality.train.lr``: Deltas on a broken model are noise
   or float32 zeros.
2. Each evolving iteration fine-tunes robustly, then, for every removable block, measures
   Delta-quality *paired*: the chosen metric on the same held-out items (images, noise,
   timesteps, captions, sampling noise) with and without the block, item by item, with its
   standard error; and Delta-latency from the table (the full-size UNet with and without it).
3. A second look (``confirm_items`` > 0): the ``confirm_top`` candidates leading the
   decision (the smallest ratios while removing, the largest among those that fit while
   copying) are measured again, with the base, on ``confirm_items`` held-out items (again,
   should a confirmed leader fall back, until the deciding ones all had this second look),
   and the decision is taken on those figures. Screening every block on a few items and
   confirming the few that decide costs far less than measuring every block on many, and
   it is the deciding Deltas that must clear their noise.
4. While the predicted latency is above the target, the blocks with the smallest
   quality-lost / latency-saved ratio are removed (``remove_per_iteration`` at most); once
   it is met, the most valuable block whose copy still meets it is copied (``copy``).

Quality lost is signed so that positive means worse without the block (``heldout_loss``
rises, ``text_gap``, ``eval_score`` and ``clip_score`` fall). Ties: a Delta-quality within
two standard errors of zero is noise; such blocks count as losing nothing (ratio 0) and,
among themselves, the one saving the most latency goes first. Every candidate of every
iteration is logged (``log.json``) with its Delta-quality, standard error, the items it was
measured on (and, when confirmed, its screening figures), Delta-latency, ratio and whether
it is within noise; every action goes to ``actions.csv``.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np

from archlab.arch.description import Description, layout

from archlab.arch.editing import edit, removable
from archlab.arch.diffusers_import import from_diffusers, is_diffusers_folder
from archlab.arch.presets import resolve
from archlab.config import FilePath, NameOrPath, require, to_data
from archlab.cost.predict import Predictor
from archlab.cost.table import LatencyTable
from archlab.errors import ConfigError
from archlab.files import write_text
from archlab.quality.config import QualityConfig, check_metrics
from archlab.quality import registry
from archlab.quality.metrics import Estimate, mean_se
from archlab.quality.pipeline import QualityPipeline
from archlab.quality.train import ProxyModel, Trainer, TrainResult, divergence, save_trained


@dataclass(frozen=True)
class EvolveConfig:
    """The evolving search's own settings (``evolve:`` in an evolve or study file)."""

    start: NameOrPath = "sd15"  # a preset, a description file, or a local diffusers UNet folder (trained from its weights)
    metric: Literal["text_gap", "heldout_loss", "eval_score", "clip_score"] = "text_gap"  # Delta-quality's metric
    robust_steps: int = 500  # robust training before the first iteration
    block_drop: float = 0.15  # each removable block skipped with this probability while training
    iterations: int = 8
    finetune_steps: int = 25  # robust training between iterations
    remove_per_iteration: int = 1  # blocks removed per iteration while over the target (smallest ratios first)
    copy: bool = True  # once the target is met, copy the most valuable block that still fits
    noise_se: float = 2.0  # a Delta-quality within this many standard errors of zero is noise
    confirm_items: int = 0  # held-out items the leading candidates are measured again on (0: decide on the screening)
    confirm_top: int = 3  # how many leading candidates get that second look

    def __post_init__(self) -> None:
        for name in ("iterations", "remove_per_iteration"):
            require(getattr(self, name) >= 1, name, f"{getattr(self, name)} is not a positive integer")
        require(self.confirm_top >= 1, "confirm_top", f"{self.confirm_top} is not a positive integer")
        for name in ("robust_steps", "finetune_steps", "confirm_items"):
            require(getattr(self, name) >= 0, name, f"{getattr(self, name)} must be >= 0")
        require(0 <= self.block_drop < 1, "block_drop", f"{self.block_drop} must be in [0, 1)")
        require(self.noise_se > 0, "noise_se", f"{self.noise_se} must be positive")


@dataclass(frozen=True)
class EvolveFile:
    """An ``archlab evolve`` file: the search, its latency target, and how quality is judged."""

    table: NameOrPath  # the latency table the target refers to (a shipped table's name or a file)
    latency_target_ms: float
    evolve: EvolveConfig = field(default_factory=EvolveConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    out: FilePath = "evolve-out"
    name: str = "evolve"

    def __post_init__(self) -> None:
        require(self.latency_target_ms > 0, "latency_target_ms", f"{self.latency_target_ms} is not a positive number")


def load_evolve_file(path: str | Path) -> EvolveFile:
    """Read and check an evolve file (paths in it are relative to it)."""
    from archlab.config import load

    cfg = load(EvolveFile, path)
    check_metrics(cfg.quality, (cfg.evolve.metric,), "evolve.metric")
    return cfg


def quality_lost(metric: str, base: np.ndarray, without: np.ndarray) -> Estimate:
    """How much worse the metric is without the block, item by item (positive: worse)."""
    diff = (base - without) if registry.get(metric).higher_is_better else (without - base)
    return mean_se(diff)


def transfer(model: ProxyModel, new_desc: Description, name: str, action: str) -> ProxyModel:
    """A model of ``new_desc`` holding the old weights; a copied block starts as its original."""
    from archlab.arch.builder import build

    stage, index = name.rsplit(".", 1)
    index = int(index)
    state = {}
    for key, value in model.unet.state_dict().items():
        if not key.startswith("stages."):
            state[key] = value
            continue
        _, s, i, rest = key.split(".", 3)
        i = int(i)
        if s != stage or i < index:
            state[key] = value
        elif i == index and action == "remove":
            continue
        elif i == index:  # copy: the block, and its twin right after it
            state[key] = value
            state[f"stages.{s}.{i + 1}.{rest}"] = value.clone()
        else:
            state[f"stages.{s}.{i + (1 if action == 'copy' else -1)}.{rest}"] = value
    unet = build(new_desc).to(model.device)
    unet.load_state_dict(state, strict=True)
    return ProxyModel(text_encoder=model.text, unet=unet)


@dataclass
class EvolveResult:
    description: Description
    latency_ms: float
    target_met: bool
    log: dict[str, Any]


class Evolution:
    """One run of the search (see the module docstring); :func:`evolve` runs it."""

    def __init__(self, cfg: EvolveConfig, *, quality: QualityConfig, table: LatencyTable, target_ms: float, out: str | Path,
                 progress: bool = True, log: Callable[[str], None] = print, start: Description | None = None):
        self.cfg, self.target, self.progress, self.say = cfg, target_ms, progress, log
        if quality.amortised.kind == "supernet":
            raise ConfigError("quality.amortised.kind", "evolve trains one model from its start; a supernet serves a study's "
                              "sampled candidates (use none or teacher here)")  # an evolve file's check (studies: EvolveSearch)
        self.pipeline = QualityPipeline(quality, amortised_dir=Path(out) / "amortised")
        self.pipeline.metrics((cfg.metric,))
        self.table = table
        self.predictor = Predictor([table])
        self.pretrained = start is None and is_diffusers_folder(cfg.start)
        self._unet = from_diffusers(cfg.start) if self.pretrained else None
        self.full = self._unet.description if self._unet is not None else start or resolve(cfg.start)
        self.start_name = self.full.name
        self.predictor.score(self.full)  # fail now if the table lacks a block
        require(cfg.confirm_items <= quality.data.heldout, "evolve.confirm_items",
                f"{cfg.confirm_items} is more than the {quality.data.heldout} items data.heldout keeps; raise data.heldout")
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.actions: list[dict[str, Any]] = []
        self.iterations: list[dict[str, Any]] = []
        self._losses: list[float] = []  # every training step's loss (logged; a blow-up is looked for since the last edit)
        self._since_edit = 0  # steps trained since the architecture last changed
        self.robust: TrainResult | None = None
        self.t0 = time.perf_counter()

    def latency(self, desc: Description) -> float:
        return self.predictor.score(desc).latency_ms[self.table.label]

    def measure(self, model: ProxyModel, skip: frozenset[str] = frozenset(), items: int | None = None) -> np.ndarray:
        """The metric's per-item values (the same items every time; ``items`` of them for a second look)."""
        _, values = self.pipeline.evaluate(model, metrics=(self.cfg.metric,), skip_blocks=skip, items=items)
        return values[self.cfg.metric]

    def candidates(self, model: ProxyModel) -> tuple[Estimate, list[dict[str, Any]]]:
        """The model's own metric, and Delta-quality (paired, with its standard error) and Delta-latency of
        removing each removable block."""
        base = self.measure(model)
        base_latency = self.latency(self.full)
        sites = {s.name: s for s in layout(self.full)}
        rows = []
        for name in removable(self.full):
            site = sites[name]
            row = {"block": name, "kind": site.block.kind, "resolution": site.resolution, "channels": site.in_channels,
                   "delta_latency_ms": base_latency - self.latency(edit(self.full, name, "remove"))}
            rows.append(self._judged(row, quality_lost(self.cfg.metric, base, self.measure(model, frozenset({name}))), len(base)))
        return mean_se(base), rows

    def confirm(self, model: ProxyModel, rows: list[dict[str, Any]], order: Callable[[list[dict[str, Any]]], list[dict[str, Any]]],
                need: int) -> None:
        """Second looks on ``confirm_items`` items until the ``need`` candidates leading ``order`` all had one.

        Each round measures the unconfirmed ones among the ``confirm_top`` leaders; a leader that
        turns out to be noise can let a screened one through, which is then confirmed in turn."""
        n = self.cfg.confirm_items
        base = self.measure(model, items=n)
        for _ in range(len(rows)):  # every round confirms at least one row, so this ends
            ranked = order(rows)
            if all("screening" in r for r in ranked[:need]):
                break
            for row in [r for r in ranked[:max(need, self.cfg.confirm_top)] if "screening" not in r]:
                row["screening"] = {k: row[k] for k in ("delta_quality", "delta_quality_se", "within_noise", "items")}
                self._judged(row, quality_lost(self.cfg.metric, base, self.measure(model, frozenset({row["block"]}), items=n)),
                             len(base))

    def _judged(self, row: dict[str, Any], lost: Estimate, items: int) -> dict[str, Any]:
        noise = lost.within(self.cfg.noise_se)
        saved = row["delta_latency_ms"]
        row.update({"delta_quality": lost.value, "delta_quality_se": lost.se, "within_noise": noise, "items": items,
                    "ratio": lost.value / saved if saved > 0 else math.inf,
                    "effective_ratio": (0.0 if noise else lost.value) / saved if saved > 0 else math.inf})
        return row

    @staticmethod
    def removal_order(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Smallest quality lost per ms saved first; noise counts as nothing lost, then the bigger saving wins."""
        return sorted(rows, key=lambda r: (r["effective_ratio"], -r["delta_latency_ms"], r["block"]))

    @staticmethod
    def copy_order(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Most quality lost per ms first: the block whose twin is likeliest to pay for its latency."""
        return sorted(rows, key=lambda r: (-r["ratio"], r["block"]))

    def run(self) -> EvolveResult:
        cfg, pipe = self.cfg, self.pipeline
        model = pipe.model(self.full, unet=self._unet)
        trainer = self._trainer(model)
        self.start_latency = self.latency(self.full)
        self.say(f"start: {self.full.name}, predicted {self.start_latency:.1f} ms, target {self.target:.1f} ms; "
                 f"{len(removable(self.full))} removable blocks; metric {cfg.metric}")
        self.t0 = time.perf_counter()
        robust = self.robust = trainer.train(steps=cfg.robust_steps, progress=self.progress)
        self._check_training(robust.losses, trainer.step)
        self._record("robust-train", None, None, model)
        for it in range(cfg.iterations):
            t_it = time.perf_counter()
            if it and cfg.finetune_steps:
                self._check_training(trainer.train(steps=trainer.step + cfg.finetune_steps, progress=False).losses, trainer.step)
            t_eval = time.perf_counter()
            quality, rows = self.candidates(model)
            eval_s = time.perf_counter() - t_eval
            if cfg.metric == "text_gap" and quality.within(cfg.noise_se):
                self.say(f"warning: iteration {it}: the model's text_gap is {quality} on {quality.n} items, within noise of zero: "
                         "it does not use its captions yet, so Delta text_gap cannot rank the blocks (train longer: robust_steps)")
            current = self.latency(self.full)
            removing = current > self.target
            fits = [r for r in rows if current + r["delta_latency_ms"] <= self.target]
            if cfg.confirm_items > self.items() and (removing or (cfg.copy and fits)):
                if removing:
                    self.confirm(model, rows, self.removal_order, cfg.remove_per_iteration)
                else:
                    self.confirm(model, fits, self.copy_order, 1)
            confirm_s = time.perf_counter() - t_eval - eval_s
            chosen: list[tuple[str, dict[str, Any]]] = []
            if removing:  # smallest ratios first, until the (additive) savings reach the target
                remaining = current
                for row in self.removal_order(rows):
                    if len(chosen) == cfg.remove_per_iteration or remaining <= self.target:
                        break
                    chosen.append(("remove", row))
                    remaining -= row["delta_latency_ms"]
            elif cfg.copy and fits:
                chosen.append(("copy", self.copy_order(fits)[0]))
            self.iterations.append({"iteration": it, "latency_before_ms": current, "quality": quality.as_dict(), "candidates": rows,
                                    "actions": [{"action": a, "block": r["block"]} for a, r in chosen],
                                    "finetune_seconds": round(t_eval - t_it, 1), "eval_seconds": round(eval_s, 1),
                                    "confirm_seconds": round(confirm_s, 1), "eval_items": self.items(),
                                    "confirm_items": cfg.confirm_items if cfg.confirm_items > self.items() else 0})
            if not chosen:
                self.say(f"iteration {it}: target met and no copy fits; stopping")
                break
            # apply from the back of each stage so the other chosen blocks keep their indices
            for action, row in sorted(chosen, key=lambda ar: (ar[1]["block"].rsplit(".", 1)[0], -int(ar[1]["block"].rsplit(".", 1)[1]))):
                model = self._apply(model, row, action, it)
            trainer = self._continue(trainer, model)
            self.say(f"iteration {it}: {len(rows)} candidates measured in {eval_s:.0f} s"
                     + (f", the leaders again in {confirm_s:.0f} s" if confirm_s >= 0.5 else ""))
            self._write_log()
        final = self.latency(self.full)
        estimates, _ = pipe.evaluate(model)
        result_desc = self.full.replace(name=f"{self.full.name}-evolved")
        write_text(self.out / "result.yaml", result_desc.to_yaml())
        self._save_weights(model, result_desc)
        log = self._write_log(final_latency_ms=final, target_met=final <= self.target,
                              final_metrics={k: v.as_dict() for k, v in estimates.items()})
        return EvolveResult(result_desc, final, final <= self.target, log)

    def _write_log(self, **final: Any) -> dict[str, Any]:
        """log.json, rewritten after every iteration (``finished`` false until the run's end)."""
        robust = self.robust
        log = {"start": self.start_name, "start_latency_ms": self.start_latency, "target_ms": self.target,
               "finished": "final_latency_ms" in final, **final, "seconds": round(time.perf_counter() - self.t0, 1),
               "robust_training": {"steps": robust.steps, "seconds": round(robust.seconds, 1)} if robust else None,
               "training_losses": [round(x, 5) for x in self._losses],
               "metric": self.cfg.metric, "pretrained": self.pretrained, "actions": self.actions, "iterations": self.iterations,
               "ties": "a Delta-quality within noise_se standard errors of zero counts as 0; among equal ratios the larger "
                       "Delta-latency goes first, then the block name; with confirm_items, the leading candidates are decided "
                       "on their second look and the others on their screening",
               "config": to_data(self.cfg), "quality": to_data(self.pipeline.cfg)}
        tmp = self.out / "log.json.tmp"
        tmp.write_text(json.dumps(log, indent=1, default=str))
        tmp.replace(self.out / "log.json")
        return log

    def _check_training(self, losses: list[float], step: int) -> None:
        """Stop (with the log so far) when training blew up: every Delta measured on it would be meaningless.

        Only the steps since the last edit count: removing a block may raise the loss at once, legitimately."""
        self._losses.extend(losses)
        self._since_edit += len(losses)
        blown = divergence(self._losses[len(self._losses) - self._since_edit:])
        if blown is not None:
            self._write_log(diverged_at_step=step)
            lr = self.pipeline.cfg.train.lr
            raise ConfigError("quality.train.lr", f"training diverged by step {step} (mean loss of 20 steps {blown[0]:.4f} -> "
                              f"{blown[1]:.4f}); lower the learning rate (now {lr:g}) or robust_steps")

    def items(self) -> int:
        """Held-out items each Delta-quality is measured on."""
        e = self.pipeline.cfg.eval
        return e.samples if self.cfg.metric in ("eval_score", "clip_score") else e.heldout

    def _continue(self, old: Trainer, model: ProxyModel) -> Trainer:
        """A trainer for the edited model that carries on the same batch sequence (a fresh optimizer)."""
        trainer = self._trainer(model)
        trainer.step = old.step
        return trainer

    def _trainer(self, model: ProxyModel) -> Trainer:
        # no weight average: every edit changes the model under it; the Deltas are measured on the trained weights
        train = dataclasses.replace(self.pipeline.cfg.train, ema=0.0)
        return self.pipeline.trainer(model, block_drop=self.cfg.block_drop, train=train)

    def _apply(self, model: ProxyModel, row: dict[str, Any], action: str, it: int) -> ProxyModel:
        name = row["block"]
        new_full = edit(self.full, name, action)
        model = transfer(model, self.pipeline.proxy(new_full) if not self.pretrained else new_full, name, action)
        self.full = new_full
        self._since_edit = 0
        self._record(action, it, row, model)
        return model

    def _record(self, action: str, it: int | None, row: dict[str, Any] | None, model: ProxyModel) -> None:
        entry = {"iteration": it, "action": action, **(row or {}), "latency_after_ms": self.latency(self.full)}
        self.actions.append(entry)
        path = self.out / "actions.csv"
        fields = ["iteration", "action", "block", "kind", "resolution", "channels", "delta_quality", "delta_quality_se",
                  "within_noise", "items", "delta_latency_ms", "ratio", "latency_after_ms"]
        new = len(self.actions) == 1
        with open(path, "w" if new else "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(entry)
        if row:
            noise = " (within noise)" if row["within_noise"] else ""
            self.say(f"iteration {it}: {action} {row['block']} ({row['kind']} at {row['resolution']}x{row['resolution']}): "
                     f"dQ {row['delta_quality']:+.5f} ± {row['delta_quality_se']:.5f} on {row['items']} items{noise}, "
                     f"dL {row['delta_latency_ms']:.1f} ms -> {entry['latency_after_ms']:.1f} ms")

    def _save_weights(self, model: ProxyModel, result: Description) -> None:
        """The evolved model (the full-size UNet when a pretrained one was trained, else the proxy) as a trained-model file."""
        save_trained(model, self.out / "model.safetensors", quality=self.pipeline.cfg,
                     extra={"evolved": result.name, "full_size": str(self.pretrained).lower()})


def evolve(cfg: EvolveConfig, *, quality: QualityConfig, table: LatencyTable, target_ms: float, out: str | Path,
           progress: bool = True, log: Callable[[str], None] = print, start: Description | None = None) -> EvolveResult:
    """Run SnapFusion's evolving search; see the module docstring. ``start`` (a description made in
    Python) replaces ``cfg.start``."""
    return Evolution(cfg, quality=quality, table=table, target_ms=target_ms, out=out, progress=progress, log=log,
                     start=start).run()
