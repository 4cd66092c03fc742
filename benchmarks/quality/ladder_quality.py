"""The default proxy's quality along SnapGen's ladder: each step's change with its noise, beside SnapGen's FID.

Used by ``benchmarks/latency/snapgen_ladder.py --quality-seeds N``. Each ladder model's proxy is trained with
the default proxy at :data:`STEPS` steps (one thread, one seed per judgement) and seeds 0 .. N-1, seed-major (every model at seed 0
first), and each run stored as it finishes. A step's change is the difference of the two models' seed means;
its standard error counts the seeds' spread (pooled over the ladder's models, so ``sum(n - 1)`` degrees of
freedom) and, conservatively, each model's held-out standard error in full (the items are shared, so part of
it cancels in a difference; the interval is wider than it need be, never narrower).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import time
from pathlib import Path
from statistics import fmean
from typing import Any

from scipy import stats

from archlab.arch.description import Description
from archlab.quality import QualityConfig, QualityPipeline, TrainConfig, registry
from benchmarks.common import provenance, write_result

METRICS = ("text_gap", "heldout_loss")
FID_DIRECTION = {  # SnapGen's ImageNet-256 class-conditional FID per step (arXiv 2412.09619; shared published-numbers.md)
    "no high-res self-attention": "better (3.76 -> 3.12)",
    "separable convs": "worse (up to 3.38)",
    "expansion ratio 2": "better (separable convs' loss restored)",
    "FF 4 -> 3": "comparable",
    "multi-query attention": "not reported",
    "cross-attention + FF first block": "not reported",
}


# the default proxy, the quality issue's choice (150 steps since 2026-12-05; the ladder's first runs used the 125 of
# before, kept in git); the ladder draws its own seeds, one judgement each, so ``train.seeds`` stays 1 whatever the default
STEPS = TrainConfig().steps
QUICK_STEPS = 10


def runs_file(work: Path, quick: bool = False) -> Path:
    """Where the runs are stored: one file per proxy length, so runs of another default are never mixed in."""
    return Path(work) / ("ladder_quality_quick.json" if quick else f"ladder_quality_runs_{STEPS}steps.json")


def _config(device: str, quick: bool) -> QualityConfig:
    cfg = QualityConfig(device=device)
    train = dataclasses.replace(cfg.train, threads=1, seeds=1, **({"steps": QUICK_STEPS, "batch": 4} if quick else {"steps": STEPS}))
    ev = dataclasses.replace(cfg.eval, heldout=32) if quick else cfg.eval
    return dataclasses.replace(cfg, train=train, eval=ev)


def run_quality(steps: list[tuple[str, Description]], *, seeds: int, work: Path, device: str = "cpu",
                quick: bool = False) -> dict[str, dict[str, dict[str, Any]]]:
    """step name -> seed -> {metric: {value, se, n}, cpu_s, provenance}; runs what ``work`` lacks, storing each
    (each run records its command, commit, host and date)."""
    path = runs_file(work, quick)
    done: dict[str, dict[str, Any]] = json.loads(path.read_text()) if path.exists() else {}
    pipe = None
    for seed in range(seeds):
        for name, desc in steps:
            if str(seed) in done.get(name, {}):
                continue
            pipe = pipe or QualityPipeline(_config(device, quick))
            start = time.process_time()
            judged = pipe.judge(desc, metrics=METRICS, seed=seed, progress=False)
            run = {m: judged.metrics[m].as_dict() for m in METRICS}
            run.update(steps=pipe.cfg.train.steps, cpu_s=round(time.process_time() - start, 1), device=pipe.device,
                       provenance=provenance())
            done.setdefault(name, {})[str(seed)] = run
            write_result(path, done)  # whole, with its entry in the folder's manifest
            print(json.dumps({"step": name, "seed": seed, **{m: round(run[m]["value"], 4) for m in METRICS},
                              "cpu_min": round(run["cpu_s"] / 60, 2)}), flush=True)
    return done


def quality_changes(runs: dict[str, dict[str, dict[str, Any]]], order: list[str]) -> dict[str, Any]:
    """Per model its seed mean; per step (each model after the first) the change from the model before it, its
    standard error, 95% interval (t, pooled degrees of freedom) and whether it is beyond 2 standard errors."""
    out: dict[str, Any] = {"metrics": list(METRICS), "seeds": {n: len(runs.get(n, {})) for n in order}, "steps": []}
    pooled: dict[str, tuple[float, int]] = {}
    for m in METRICS:
        ss, df = 0.0, 0
        for n in order:
            vals = [r[m]["value"] for r in runs.get(n, {}).values()]
            if len(vals) >= 2:
                mu = fmean(vals)
                ss += sum((v - mu) ** 2 for v in vals)
                df += len(vals) - 1
        pooled[m] = (math.sqrt(ss / df) if df else float("nan"), df)
    out["seed_sd"] = {m: round(sd, 5) for m, (sd, _) in pooled.items()}
    out["seed_df"] = {m: df for m, (_, df) in pooled.items()}
    for prev, name in itertools.pairwise(order):
        a, b = runs.get(prev, {}), runs.get(name, {})
        row: dict[str, Any] = {"step": name, "fid_snapgen": FID_DIRECTION.get(name)}
        for m in METRICS:
            if not a or not b:
                row[m] = None
                continue
            mean_a, mean_b = (fmean([r[m]["value"] for r in x.values()]) for x in (a, b))
            item_a, item_b = (fmean([r[m]["se"] for r in x.values()]) for x in (a, b))
            sd, df = pooled[m]
            seed_var = sd ** 2 * (1 / len(a) + 1 / len(b)) if df else float("nan")
            se = math.sqrt(seed_var + item_a ** 2 + item_b ** 2)
            delta = mean_b - mean_a
            t = stats.t.ppf(0.975, df) if df else float("nan")
            better = delta > 0 if registry.get(m).higher_is_better else delta < 0
            separated = abs(delta) > 2 * se
            row[m] = {"before": round(mean_a, 5), "after": round(mean_b, 5), "change": round(delta, 5),
                      "se": round(se, 5), "ci95": [round(delta - t * se, 5), round(delta + t * se, 5)],
                      "verdict": ("better" if better else "worse") if separated else "within noise"}
        out["steps"].append(row)
    return out
