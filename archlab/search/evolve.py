"""SnapFusion's architecture evolving (Li et al. 2023, Algorithm 1), on a proxy.

1. Robust training: the proxy of the starting architecture is trained with stochastic
   depth (each droppable ResNet and transformer block skipped with probability
   ``block_drop``), so it stays accurate when blocks are removed.
2. Each evolution iteration fine-tunes robustly, then for every removable block measures
   Delta-quality (the held-out loss with the block skipped minus the loss without) and
   takes Delta-latency from the latency table (the full-size UNet with and without it).
   While the predicted latency is above the target, the blocks with the smallest
   Delta-quality / Delta-latency are removed; once it is met, the block with the largest
   value is copied (added) if the target still holds.
3. Every action is logged with its figures and the latency after it; the result is a
   description file.

Removable blocks are those the identity can replace without changing any other block's
shapes: every transformer, and ResNets that take no skip and keep their width (the mid
stage's, and down-stage ResNets after a level's first). A removal also removes the block
from the full-size description, whose latency the table predicts.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from archlab.arch.description import Description, ResnetBlock, TransformerBlock, layout
from archlab.arch.presets import resolve
from archlab.cost.table import LatencyTable
from archlab.errors import ConfigError
from archlab.yamlio import read_yaml
from archlab.quality.data import open_data
from archlab.quality.diffusion import Schedule
from archlab.quality.metrics import EvalConfig, evaluate_proxy, heldout_loss, heldout_set
from archlab.quality.proxy import ProxyConfig, proxy_description
from archlab.quality.train import ProxyModel, TrainConfig, Trainer


@dataclass(frozen=True)
class EvolveConfig:
    start: str  # preset name or description file (full size)
    table: str  # latency table the target refers to
    latency_target_ms: float
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=300, block_drop=0.15))
    iterations: int = 6
    finetune_steps: int = 50
    remove_per_iteration: int = 1
    heldout: int = 64
    data: str = "synthetic"
    data_path: str | None = None
    out: str = "evolve-out"


def _section(data: dict[str, Any], key: str, cls: type, where: str) -> Any:
    values = data.get(key) or {}
    if not isinstance(values, dict):
        raise ConfigError(f"{where}.{key}", "must be a mapping")
    allowed = set(cls.__dataclass_fields__)
    for k in values:
        if k not in allowed:
            raise ConfigError(f"{where}.{key}.{k}", f"unknown field; allowed: {', '.join(sorted(allowed))}")
    if cls is TrainConfig and "schedule" in values:
        values = {**values, "schedule": Schedule(**values["schedule"])}
    return cls(**{**({"steps": 300, "block_drop": 0.15} if cls is TrainConfig else {}), **values})


def load_evolve_config(path: str | Path) -> EvolveConfig:
    path = Path(path)
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(str(path), "must be a mapping")
    allowed = set(EvolveConfig.__dataclass_fields__)
    for k in data:
        if k not in allowed:
            raise ConfigError(str(k), f"unknown field; allowed: {', '.join(sorted(allowed))}")
    for k in ("start", "table", "latency_target_ms"):
        if k not in data:
            raise ConfigError(k, "is required")
    if not isinstance(data["latency_target_ms"], (int, float)) or data["latency_target_ms"] <= 0:
        raise ConfigError("latency_target_ms", f"{data['latency_target_ms']!r} is not a positive number")
    for k in ("iterations", "finetune_steps", "remove_per_iteration", "heldout"):
        if k in data and (not isinstance(data[k], int) or data[k] < (0 if k == "finetune_steps" else 1)):
            raise ConfigError(k, f"{data[k]!r} is not a positive integer")
    base = path.parent

    def rel(value: str) -> str:  # paths in the file are relative to it
        return value if Path(value).is_absolute() else str((base / value).resolve())

    start = str(data["start"])
    if Path(start).suffix in (".yaml", ".yml", ".json"):
        start = rel(start)
    return EvolveConfig(**{**{k: v for k, v in data.items() if k not in ("proxy", "train")},
                           "start": start, "table": rel(str(data["table"])), "out": rel(str(data.get("out", "evolve-out"))),
                           "proxy": _section(data, "proxy", ProxyConfig, "proxy"),
                           "train": _section(data, "train", TrainConfig, "train")})


def removable(desc: Description) -> list[tuple[str, int]]:
    """(stage, index) of blocks whose removal leaves every other block's shapes unchanged."""
    sites = layout(desc)
    out = []
    for site in sites:
        if not isinstance(site.block, (ResnetBlock, TransformerBlock)) or site.in_channels != site.out_channels or site.skip_channels:
            continue
        stage = desc.stage(site.stage)
        try:
            smaller = desc.with_blocks(site.stage, stage.blocks[: site.index] + stage.blocks[site.index + 1:])
        except ConfigError:
            continue
        before = [(s.in_channels, s.out_channels, s.skip_channels) for s in sites if s.name != site.name]
        after = [(s.in_channels, s.out_channels, s.skip_channels) for s in layout(smaller)]
        if before == after:
            out.append((site.stage, site.index))
    return out


def edit(desc: Description, stage: str, index: int, action: str) -> Description:
    blocks = list(desc.stage(stage).blocks)
    if action == "remove":
        del blocks[index]
    else:  # copy: the same block again, right after it
        blocks.insert(index + 1, blocks[index])
    return desc.with_blocks(stage, blocks)


def _rename_map(old: Description, stage: str, index: int, action: str) -> dict[str, str]:
    """Old module prefix -> new one after an edit (indices after it shift by one)."""
    out = {}
    for s in old.stages:
        for i in range(len(s.blocks)):
            if s.name != stage or i < index or (i == index and action == "copy"):
                out[f"stages.{s.name}.{i}"] = f"stages.{s.name}.{i}"
            elif i == index:  # removed
                continue
            else:
                out[f"stages.{s.name}.{i}"] = f"stages.{s.name}.{i + (1 if action == 'copy' else -1)}"
    return out


def transfer(model: ProxyModel, new_desc: Description, stage: str, index: int, action: str) -> ProxyModel:
    """A model of ``new_desc`` holding the old weights; a copied block starts as its original."""
    new = ProxyModel(new_desc, text_encoder=model.text)
    renames = _rename_map(model.description, stage, index, action)
    state = {}
    for key, value in model.unet.state_dict().items():
        if key.startswith("stages."):
            prefix = ".".join(key.split(".")[:3])
            if prefix not in renames:
                continue
            state[renames[prefix] + key[len(prefix):]] = value
            if action == "copy" and prefix == f"stages.{stage}.{index}":
                state[f"stages.{stage}.{index + 1}" + key[len(prefix):]] = value.clone()
        else:
            state[key] = value
    new.unet.load_state_dict(state, strict=True)
    return new


class Evolution:
    def __init__(self, cfg: EvolveConfig, *, progress: bool = True, log: Callable[[str], None] = print,
                 start: Description | None = None):
        self.cfg, self.progress, self.log = cfg, progress, log
        self.table = LatencyTable.read(cfg.table)
        self.full = start if start is not None else resolve(cfg.start)
        self.data = open_data(cfg.data, resolution=cfg.proxy.resolution, path=cfg.data_path, seed=cfg.train.seed)
        self.held = heldout_set(self.data, cfg.heldout)
        self.out = Path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.actions: list[dict[str, Any]] = []

    def latency(self, desc: Description) -> float:
        return self.table.predict(desc).total_ms

    def quality(self, model: ProxyModel, skip: frozenset[str] = frozenset()) -> float:
        return heldout_loss(model, self.held, schedule=self.cfg.train.schedule, prediction=self.cfg.train.prediction,
                            n=self.cfg.heldout, skip_blocks=skip)

    def _train(self, model: ProxyModel, steps: int) -> ProxyModel:
        if steps:
            trainer = Trainer(model, self.data, self.cfg.train)
            trainer.train(steps=steps, progress=self.progress)
        return model

    def candidates(self, model: ProxyModel) -> list[dict[str, Any]]:
        """Delta-quality and Delta-latency of removing each removable block."""
        base_q = self.quality(model)
        base_l = self.latency(self.full)
        rows = []
        for stage, index in removable(self.full):
            name = f"{stage}.{index}"
            dq = self.quality(model, frozenset({name})) - base_q
            dl = base_l - self.latency(edit(self.full, stage, index, "remove"))
            block = self.full.stage(stage).blocks[index]
            rows.append({"stage": stage, "index": index, "kind": block.kind, "resolution": next(
                s.resolution for s in layout(self.full) if s.name == name), "delta_quality": dq, "delta_latency_ms": dl,
                "value": dq / dl if dl > 0 else float("inf")})
        return rows

    def run(self) -> Description:
        cfg = self.cfg
        torch.manual_seed(cfg.train.seed)
        proxy = proxy_description(self.full, cfg.proxy)
        model = ProxyModel(proxy)
        start_latency = self.latency(self.full)
        self.log(f"start: {self.full.name}, predicted {start_latency:.1f} ms, target {cfg.latency_target_ms:.1f} ms")
        t0 = time.perf_counter()
        self._train(model, cfg.train.steps)
        self._record("robust-train", None, None, {}, model)
        for it in range(cfg.iterations):
            if it:
                self._train(model, cfg.finetune_steps)
            rows = self.candidates(model)
            current = self.latency(self.full)
            if current > cfg.latency_target_ms:
                rows.sort(key=lambda r: r["value"])
                for row in rows[: cfg.remove_per_iteration]:
                    if self.latency(self.full) <= cfg.latency_target_ms:
                        break
                    model = self._apply(model, row, "remove", it)
                    break  # indices shift after an edit: re-measure before the next
            else:
                fits = [r for r in rows if current + r["delta_latency_ms"] <= cfg.latency_target_ms]
                if not fits:
                    self.log(f"iteration {it}: target met and no copy fits; stopping")
                    break
                best = max(fits, key=lambda r: r["value"])
                model = self._apply(model, best, "copy", it)
        final = self.latency(self.full)
        metrics = evaluate_proxy(model, self.data, schedule=cfg.train.schedule, prediction=cfg.train.prediction,
                                 cfg=EvalConfig(heldout=cfg.heldout, samples=32))
        (self.out / "result.yaml").write_text(self.full.replace(name=f"{self.full.name}-evolved").to_yaml())
        summary = {"start": self.full.name, "start_latency_ms": start_latency, "final_latency_ms": final,
                   "target_ms": cfg.latency_target_ms, "target_met": final <= cfg.latency_target_ms,
                   "seconds": round(time.perf_counter() - t0, 1), "actions": self.actions, "final_metrics": metrics,
                   "config": json.loads(json.dumps(asdict(cfg), default=str))}
        (self.out / "log.json").write_text(json.dumps(summary, indent=1))
        return self.full

    def _apply(self, model: ProxyModel, row: dict[str, Any], action: str, it: int) -> ProxyModel:
        stage, index = row["stage"], row["index"]
        new_full = edit(self.full, stage, index, action)
        new_proxy = proxy_description(new_full, self.cfg.proxy)
        model = transfer(model, new_proxy, stage, index, action)
        self.full = new_full
        self._record(action, it, row, {}, model)
        return model

    def _record(self, action: str, it: int | None, row: dict[str, Any] | None, extra: dict[str, Any], model: ProxyModel) -> None:
        entry = {"iteration": it, "action": action, **(row or {}), "latency_after_ms": self.latency(self.full),
                 "quality_after": self.quality(model), **extra}
        self.actions.append(entry)
        path = self.out / "actions.csv"
        fields = ["iteration", "action", "stage", "index", "kind", "resolution", "delta_quality", "delta_latency_ms", "value",
                  "latency_after_ms", "quality_after"]
        new = not path.exists() or len(self.actions) == 1
        with open(path, "w" if new else "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(entry)
        if row:
            self.log(f"iteration {it}: {action} {row['stage']}.{row['index']} ({row['kind']} at {row['resolution']}x{row['resolution']}): "
                     f"dQ {row['delta_quality']:+.5f}, dL {row['delta_latency_ms']:.1f} ms -> {entry['latency_after_ms']:.1f} ms")
