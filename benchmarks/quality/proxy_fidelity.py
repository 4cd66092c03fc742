"""Does a short proxy rank architectures as longer training would, and how well does it agree with itself?

For architectures spread over the default space's latency range, each proxy is trained with
seed 0 up to the reference (``--reference`` steps) and measured at every checkpoint on the
way; seed 1 is trained to the candidate settings' steps (the ceiling); other settings
(``--extra``, e.g. a wider proxy) are trained with both seeds. At every checkpoint every
metric is measured twice: on the last weights and on their exponential moving average
(``--ema``). Because the learning rate is constant after warm-up and batches follow
``(seed, step)``, a short setting *is* the long run's checkpoint.

Then, for each setting and metric: Kendall tau against the reference with a bootstrap 95%
interval over architectures (resampled), the seed-to-seed ceiling (tau between seeds 0 and
1 at the same setting), signal-to-noise (variance of the architectures' seed means over the
variance between seeds), tau of the two seeds' mean (what averaging seeds would buy), the
share of the pairs the reference tells apart beyond its standard errors that the setting
orders alike, and the CPU time a candidate costs (training to that step plus measuring that
metric, process CPU time: robust to other load on the machine).

Resumable: every run checkpoints its weights (safetensors) and appends each measurement to
``<work>/<arch>/<run>.json`` as it finishes; rerunning continues where it stopped, and a
larger ``--reference`` trains the seed-0 runs on from where they are.

    .venv/bin/python -m benchmarks.quality.proxy_fidelity --archs 12 --reference 1250 --out benchmarks/results/proxy_fidelity/proxy_fidelity.json
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from archlab import LatencyTable, Predictor, description_from_dict, load_space
from archlab.quality import QualityConfig, QualityPipeline, registry
from archlab.quality.fidelity import kendall, kendall_interval
from benchmarks.common import write_result

METRICS = ("heldout_loss", "text_gap", "eval_score", "fd")


@dataclasses.dataclass(frozen=True)
class Run:
    setting: str  # "default" or an --extra setting's name
    seed: int
    steps: tuple[int, ...]  # where to measure
    proxy: dict[str, Any]  # proxy-rule overrides

    @property
    def name(self) -> str:
        return f"{self.setting}-s{self.seed}"


def pick_architectures(space_name: str, table_name: str, n: int, seed: int) -> list[tuple[Any, float]]:
    """``n`` architectures at evenly spaced quantiles of predicted latency over a large sample."""
    space = load_space(space_name)
    table = LatencyTable.load(table_name)
    predictor = Predictor([table])
    pool = [(d, predictor.score(d).latency_ms[table.label]) for _, d in space.samples(max(300, 20 * n), seed)]
    pool.sort(key=lambda x: x[1])
    picks = [pool[min(len(pool) - 1, int((i + 0.5) * len(pool) / n))] for i in range(n)]
    return [(d.replace(name=f"fid-{i:02d}"), ms) for i, (d, ms) in enumerate(picks)]


def pinned_architectures(a: argparse.Namespace) -> list[tuple[Any, float]]:
    """The architectures picked when the benchmark started, kept in ``--work`` (or read from ``--seed-from``), so
    that a rebuilt latency table, which moves the quantiles, does not swap them under measurements already made."""
    pinned = a.work / "archs.json"
    if not pinned.exists() and a.seed_from is not None:
        stored = json.loads(a.seed_from.read_text())["archs"]
        pinned.parent.mkdir(parents=True, exist_ok=True)
        pinned.write_text(json.dumps(stored, indent=1))
    if pinned.exists():
        stored = json.loads(pinned.read_text())
        if len(stored) != a.archs:
            raise SystemExit(f"error: --archs: {pinned} holds {len(stored)} architectures, not {a.archs}")
        return [(description_from_dict(x["description"]), float(x["predicted_ms"])) for x in stored]
    archs = pick_architectures(a.space, a.table, a.archs, a.arch_seed)
    pinned.parent.mkdir(parents=True, exist_ok=True)
    pinned.write_text(json.dumps([{"name": d.name, "predicted_ms": round(ms, 1), "description": d.to_dict()} for d, ms in archs],
                                 indent=1))
    return archs


def measure_run(desc: Any, run: Run, work: Path, base: QualityConfig, ema: float, pipes: dict) -> list[dict[str, Any]]:
    """Train one run on from its checkpoint, measuring at each step not yet measured (each result saved at once)."""
    folder = work / desc.name
    folder.mkdir(parents=True, exist_ok=True)
    results_path = folder / f"{run.name}.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else []
    done = {r["step"] for r in results}
    todo = [s for s in run.steps if s not in done]
    if not todo:
        return results
    key = json.dumps(run.proxy, sort_keys=True)
    if key not in pipes:
        cfg = dataclasses.replace(base, proxy=dataclasses.replace(base.proxy, **run.proxy),
                                  train=dataclasses.replace(base.train, ema=ema))
        pipes[key] = QualityPipeline(cfg)
    pipe = pipes[key]
    cfg = dataclasses.replace(pipe.cfg.train, seed=run.seed)
    model = pipe.model(desc, seed=run.seed)
    trainer = pipe.trainer(model, out_dir=folder / run.name, train=cfg)
    cpu_total = results[-1]["train_cpu_s"] if results else 0.0
    wall_total = results[-1]["train_wall_s"] if results else 0.0
    for step in todo:
        if trainer.step > step:
            raise SystemExit(f"{results_path}: the checkpoint is at step {trainer.step}, past {step}; delete the run to remeasure")
        r = trainer.train(steps=step, progress=False)
        cpu_total += r.cpu_seconds
        wall_total += r.seconds
        entry: dict[str, Any] = {"step": step, "train_cpu_s": round(cpu_total, 1), "train_wall_s": round(wall_total, 1)}
        for weights in ("raw", "ema"):
            with trainer.averaged() if weights == "ema" else contextlib.nullcontext():
                cheap_start = time.process_time()
                cheap, _ = pipe.evaluate(model, metrics=("heldout_loss", "text_gap"))
                sampled_start = time.process_time()
                # sampling costs ten times the loss metrics: on the averaged weights only
                sampled = pipe.evaluate(model, metrics=("eval_score", "fd"))[0] if weights == "ema" else {}
                end = time.process_time()
            entry[weights] = {k: v.as_dict() for k, v in {**cheap, **sampled}.items() if k in METRICS}
            entry[f"{weights}_eval_cpu_s"] = {"cheap": round(sampled_start - cheap_start, 1), "sampled": round(end - sampled_start, 1)}
        results.append(entry)
        tmp = results_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(results, indent=1))
        os.replace(tmp, results_path)
        print(json.dumps({"arch": desc.name, "run": run.name, "step": step, "train_cpu_s": entry["train_cpu_s"],
                          **{f"{m}": round(entry["ema"][m]["value"], 4) for m in METRICS}}), flush=True)
    return results


# ---------------------------------------------------------------------- analysis


tau, bootstrap_tau = kendall, kendall_interval  # the names this benchmark's results use


def value(results: list[dict[str, Any]], step: int, weights: str, metric: str, field: str = "value") -> float | None:
    for r in results:
        if r["step"] == step and metric in r[weights]:
            return r[weights][metric][field]
    return None


def separated_pairs(s: np.ndarray, r: np.ndarray, r_se: np.ndarray, z: float = 2.0) -> dict[str, Any]:
    """Of the pairs the reference tells apart (difference > ``z`` combined standard errors), how many the proxy orders alike.

    Kendall tau counts every pair, including those the reference itself cannot order; this
    counts only the pairs where the reference's ordering is more than its measurement noise
    (the reference's seed noise is not known: it is one seed).
    """
    agree = total = 0
    for i in range(len(s)):
        for j in range(i + 1, len(s)):
            if abs(r[i] - r[j]) > z * math.hypot(r_se[i], r_se[j]):
                total += 1
                agree += int((s[i] - s[j]) * (r[i] - r[j]) > 0)
    return {"pairs": total, "of": len(s) * (len(s) - 1) // 2, "agree": agree, "fraction": round(agree / total, 3) if total else None}


def analyse(table: dict[str, dict[str, list[dict[str, Any]]]], runs: list[Run], reference: int,
            cost_archs: list[str] | None = None) -> dict[str, Any]:
    archs = sorted(table)
    timed = archs if cost_archs is None else [a for a in archs if a in cost_archs]
    settings = []
    for run in runs:
        if run.seed != 0:
            continue
        for step in run.steps:
            if run.setting == "default" and step == reference:
                continue
            for weights in ("raw", "ema"):
                settings.append((run.setting, step, weights))
    out: dict[str, Any] = {"reference": {"setting": "default", "steps": reference, "weights": "ema", "seed": 0}, "settings": []}
    for setting, step, weights in settings:
        row: dict[str, Any] = {"setting": setting, "steps": step, "weights": weights, "metrics": {}}
        cpu = []
        for metric in METRICS:
            short = [value(table[a].get(f"{setting}-s0", []), step, weights, metric) for a in archs]
            again = [value(table[a].get(f"{setting}-s1", []), step, weights, metric) for a in archs]
            ref = [value(table[a].get("default-s0", []), reference, "ema", metric) for a in archs]
            long_eval = [value(table[a].get("default-s0", []), reference, "ema", "eval_score") for a in archs]
            ok = [i for i in range(len(archs)) if short[i] is not None and ref[i] is not None]
            if len(ok) < 4:
                continue
            s, r = np.array([short[i] for i in ok]), np.array([ref[i] for i in ok])
            r_se = np.array([value(table[archs[i]].get("default-s0", []), reference, "ema", metric, "se") for i in ok])
            entry: dict[str, Any] = {"archs": len(ok), "tau_vs_reference": tau(s, r), "tau_ci95": bootstrap_tau(s, r),
                                     "reference_separated_pairs": separated_pairs(s, r, r_se),
                                     "tau_vs_reference_eval_score": tau(s, np.array([long_eval[i] for i in ok])) *
                                     (1 if registry.get(metric).higher_is_better else -1)}
            pair = [i for i in ok if again[i] is not None]
            if len(pair) >= 4:
                a0, a1 = np.array([short[i] for i in pair]), np.array([again[i] for i in pair])
                entry["ceiling_tau_seed0_seed1"] = tau(a0, a1)
                entry["ceiling_ci95"] = bootstrap_tau(a0, a1)
                entry["tau_seed1_vs_reference"] = tau(a1, np.array([ref[i] for i in pair]))
                # what averaging two seeds buys (at twice the cost): the lever on a low ceiling
                entry["tau_mean_of_seeds_vs_reference"] = tau((a0 + a1) / 2, np.array([ref[i] for i in pair]))
                means, within = (a0 + a1) / 2, (a0 - a1) ** 2 / 2
                entry["snr"] = float(np.var(means, ddof=1) / max(np.mean(within), 1e-12))
            row["metrics"][metric] = entry
        for a in timed:
            res = table[a].get(f"{setting}-s0", [])
            r = next((x for x in res if x["step"] == step), None)
            if r is not None:
                cpu.append(r["train_cpu_s"] + r[f"{weights}_eval_cpu_s"]["cheap"])
        row["train_and_loss_metrics_cpu_minutes_median"] = round(statistics.median(cpu) / 60, 2) if cpu else None
        sampled = [r["ema_eval_cpu_s"]["sampled"] for a in timed for r in table[a].get(f"{setting}-s0", []) if r["step"] == step]
        row["sampled_metrics_cpu_minutes_median"] = round(statistics.median(sampled) / 60, 2) if sampled else None
        out["settings"].append(row)
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--space", default="mobilediffusion")
    p.add_argument("--table", default="x86-2core_torch-cpu")
    p.add_argument("--archs", type=int, default=12)
    p.add_argument("--arch-seed", type=int, default=3)
    p.add_argument("--steps", default="60,125,250", help="the candidate settings' steps (both seeds)")
    p.add_argument("--reference", type=int, default=1250, help="seed 0 trains on to here: the reference")
    p.add_argument("--ema", type=float, default=0.98)
    p.add_argument("--base-width", type=float, default=0.0625, help="the proxy width of the default setting and the reference")
    p.add_argument("--extra", action="append", default=[],
                   help="another setting, NAME:FIELD=VALUE[,FIELD=VALUE]:STEPS[+STEPS] (proxy fields), e.g. width8:width=0.125:125+250")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=2, help="CPU threads (1 when another job shares 2 cores: no oversubscription)")
    p.add_argument("--work", type=Path, default=Path("out/fidelity"))
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--analyse-only", action="store_true", help="only read what is measured")
    p.add_argument("--cost-from", default=None,
                   help="take CPU minutes only from these architectures (indices): those measured with nothing else "
                        "running (under oversubscription OpenMP's spinning threads inflate process CPU time)")
    p.add_argument("--seed-from", type=Path, default=None,
                   help="a results file of this benchmark (e.g. benchmarks/results/proxy_fidelity/proxy_fidelity.json): its measurements "
                        "fill --work where it has none, so a fresh checkout continues where that run stopped")
    p.add_argument("--only", default=None,
                   help="measure only these architectures (indices, e.g. 4,11,8,6: spread over the latency range so a "
                        "partial run still covers it); the others are read as measured so far")
    a = p.parse_args()
    steps = tuple(int(x) for x in a.steps.split(","))
    runs = [Run("default", 0, tuple(sorted(set(steps + (a.reference,)))), {}), Run("default", 1, steps, {})]
    for spec in a.extra:
        name, fields, at = spec.split(":")
        proxy = {k: type(getattr(QualityConfig().proxy, k))(v) for k, v in (f.split("=") for f in fields.split(","))}
        at_steps = tuple(sorted(int(x) for x in at.split("+")))  # e.g. 125+250: trained on from the 125-step checkpoint
        runs += [Run(name, 0, at_steps, proxy), Run(name, 1, at_steps, proxy)]
    # the "default" setting is the proxy rule this benchmark started from (width 1/16), pinned so that
    # changing the package's defaults (which this benchmark moved to width 1/8) does not change its runs
    base = QualityConfig(device=a.device)
    base = dataclasses.replace(base, proxy=dataclasses.replace(base.proxy, width=a.base_width),
                               train=dataclasses.replace(base.train, threads=a.threads))
    archs = pinned_architectures(a)
    pipes: dict[str, QualityPipeline] = {}
    table: dict[str, dict[str, list[dict[str, Any]]]] = {}
    if a.seed_from is not None:
        for arch, by_run in json.loads(a.seed_from.read_text())["measurements"].items():
            for run_name, results in by_run.items():
                path = a.work / arch / f"{run_name}.json"
                if results and not path.exists():
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(json.dumps(results, indent=1))
    only = None if a.only is None else [f"fid-{int(i):02d}" for i in a.only.split(",")]
    order = archs if only is None else sorted(archs, key=lambda x: only.index(x[0].name) if x[0].name in only else -1)
    for desc, ms in order:
        table[desc.name] = {}
        for run in runs:
            if a.analyse_only or (only is not None and desc.name not in only):
                path = a.work / desc.name / f"{run.name}.json"
                table[desc.name][run.name] = json.loads(path.read_text()) if path.exists() else []
            else:
                table[desc.name][run.name] = measure_run(desc, run, a.work, base, a.ema, pipes)
    cost_archs = None if a.cost_from is None else [f"fid-{int(i):02d}" for i in a.cost_from.split(",")]
    analysis = analyse(table, runs, a.reference, cost_archs)
    analysis["cost_from"] = cost_archs or "all"
    result = {"space": a.space, "table": a.table, "archs": [{"name": d.name, "predicted_ms": round(ms, 1), "description": d.to_dict()}
                                                           for d, ms in archs],
              "runs": [dataclasses.asdict(r) for r in runs], "ema": a.ema, "quality": dataclasses.asdict(base),
              "analysis": analysis, "measurements": table}
    summary = [{"setting": s["setting"], "steps": s["steps"], "weights": s["weights"],
                "cpu_min": s["train_and_loss_metrics_cpu_minutes_median"], "sampled_cpu_min": s["sampled_metrics_cpu_minutes_median"],
                **{m: {k: (round(v, 3) if isinstance(v, float) else v) for k, v in e.items() if k in ("tau_vs_reference", "ceiling_tau_seed0_seed1", "snr")}
                   for m, e in s["metrics"].items()}} for s in analysis["settings"]]
    print(json.dumps(summary, indent=1))
    if a.out is not None:
        write_result(a.out, result)


if __name__ == "__main__":
    main()
