"""Noise-aware search against TPE and NSGA-II at equal CPU, in a simulation calibrated on the quality reference.

The world (one per seed): every member of the default space has its exact predicted latency
(the shipped torch-cpu table) and a *true* quality: a ridge model of the reference's quality
(``benchmarks/quality/quality_reference.py``, its primary metric, mean of two seeds) on a
few architecture features, plus a per-architecture residual drawn at the fit's own residual
spread. A proxy evaluation with one seed reads ``slope x true + bias_arch + noise``: the
bias is the proxy's own error (fixed per architecture: more seeds do not remove it), the
noise the seed's (fresh each evaluation). Slope, bias and seed spread come from the chosen
proxy's two replicates against the reference (``benchmarks/quality/quality_analysis.py``
figures, or ``--calibration``).

Each method spends the same number of proxy evaluations (``--budget``, one evaluation = one
proxy seed):

- ``tpe`` and ``nsga2``: one evaluation per candidate (Optuna's samplers, seeded);
- ``racing``: TPE's proposals, one evaluation first, one more while the candidate is within
  reach of the current front (``archlab.search.racing``), up to ``--max-seeds``; a fifth
  of the budget kept to re-evaluate front members still tied at the end.

A method's answer is the Pareto front of its own estimates; it is judged by the *true*
hypervolume of those members (their exact latency and true quality) against one reference
point per world. Reported: per method the median over ``--seeds`` worlds and its quartiles,
and the paired difference racing - other per world with a bootstrap 95% interval.

    .venv/bin/python -m benchmarks.search.noise_aware --seeds 20 --out benchmarks/results/noise_aware/noise_aware.json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from archlab import LatencyTable, Predictor, count, description_from_dict, load_space
from archlab.search.racing import (
    Point,
    front,
    pooled_seed_sd,
    standard_error,
    unresolved,
    within_reach,
)
from benchmarks.common import write_result


def features(desc) -> np.ndarray:
    c = count(desc)
    sa = c.self_attention
    ca = c.cross_attention
    return np.array([1.0, math.log(c.params), math.log(c.gflops), sa / 10, ca / 10, c.conv_blocks / 10])


def fit_true_model(reference: dict[str, Any], metric: str) -> tuple[np.ndarray, float]:
    """Ridge coefficients from the reference's architectures, and the residual spread (leave-one-out)."""
    archs = {a["name"]: description_from_dict(a["description"]) for a in reference["archs"]}
    xs, ys = [], []
    for name, runs in reference["measurements"].items():
        values = [e["ema"][metric]["value"] for r in runs.values() for e in r if e["step"] == reference["settings"]["steps"]
                  and metric in e.get("ema", {})]
        if len(values) >= 2:
            xs.append(features(archs[name]))
            ys.append(float(np.mean(values)))
    x, y = np.array(xs), np.array(ys)
    lam = 1e-2 * np.eye(x.shape[1])
    lam[0, 0] = 0
    coef = np.linalg.solve(x.T @ x + lam, x.T @ y)
    loo = []
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        c = np.linalg.solve(x[keep].T @ x[keep] + lam, x[keep].T @ y[keep])
        loo.append(y[i] - x[i] @ c)
    return coef, float(np.std(loo, ddof=1))


class World:
    """One simulated world: true quality and proxy bias per architecture, seeded."""

    def __init__(self, space, predictor: Predictor, coef: np.ndarray, residual_sd: float, cal: dict[str, float], seed: int):
        self.space, self.predictor, self.coef, self.residual_sd, self.cal = space, predictor, coef, residual_sd, cal
        self.seed = seed
        self.rng = np.random.default_rng([seed, 99])
        self.label = predictor.tables[0].label
        self._cache: dict[str, tuple[float, float, float]] = {}

    def member(self, choices: dict[str, Any]) -> tuple[float, float, float]:
        """(latency, true quality, proxy bias) of a member, fixed within this world."""
        key = json.dumps(choices, sort_keys=True, default=str)
        if key not in self._cache:
            desc = self.space.decode(choices)
            h = np.random.default_rng([self.seed, zlib.crc32(key.encode())])  # stable across processes
            true = float(features(desc) @ self.coef + h.normal(0, self.residual_sd))
            bias = float(h.normal(0, self.cal["bias_sd"]))
            latency = self.predictor.score(desc).latency_ms[self.label]
            self._cache[key] = (latency, true, bias)
        return self._cache[key]

    def evaluate(self, choices: dict[str, Any]) -> float:
        _, true, bias = self.member(choices)
        return self.cal["slope"] * true + bias + float(self.rng.normal(0, self.cal["seed_sd"]))


def hypervolume(points: list[tuple[float, float]], ref: tuple[float, float]) -> float:
    """2-D hypervolume: latency minimised, quality maximised, against ``ref`` (worst latency, worst quality): the
    union of the rectangles [latency, ref latency] x [ref quality, quality], swept by latency."""
    frontier, best = [], ref[1]
    for lat, q in sorted(p for p in points if p[0] < ref[0] and p[1] > ref[1]):
        if q > best:
            frontier.append((lat, q, best))
            best = q
    return sum((ref[0] - lat) * (q - below) for lat, q, below in frontier)


def run_method(method: str, world: World, budget: int, *, max_seeds: int, z: float, item_se: float, seed: int) -> list[dict]:
    """Spend ``budget`` proxy evaluations; the evaluated candidates with their estimates."""
    evaluated: dict[str, dict] = {}
    spent = {"n": 0}
    sampler = {"tpe": optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=10),
               "racing": optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=10),
               "nsga2": optuna.samplers.NSGAIISampler(seed=seed, population_size=20)}[method]
    study = optuna.create_study(directions=["minimize", "maximize"], sampler=sampler)
    reserve = budget // 5 if method == "racing" else 0

    def points(prior: float | None) -> list[Point]:
        return [Point(e["latency"], float(np.mean(e["values"])), standard_error(e["values"], item_se, prior), key=k)
                for k, e in evaluated.items()]

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        choices = world.space.pick(lambda name, opts: trial.suggest_categorical(name, list(opts)))
        key = json.dumps(choices, sort_keys=True, default=str)
        latency, _, _ = world.member(choices)
        entry = evaluated.setdefault(key, {"choices": choices, "latency": latency, "values": []})
        if not entry["values"]:
            entry["values"].append(world.evaluate(choices))
            spent["n"] += 1
        if method == "racing":
            while len(entry["values"]) < max_seeds and spent["n"] < budget - reserve:
                prior = pooled_seed_sd(e["values"] for e in evaluated.values())
                pts = points(prior)
                me = next(p for p in pts if p.key == key)
                if not within_reach(me, front(p for p in pts if p.key != key), z=z):
                    break
                entry["values"].append(world.evaluate(choices))
                spent["n"] += 1
        return latency, float(np.mean(entry["values"]))

    while spent["n"] < budget - reserve:
        study.optimize(objective, n_trials=1)
    if method == "racing":  # the reserve: more seeds for front members still tied
        while spent["n"] < budget:
            prior = pooled_seed_sd(e["values"] for e in evaluated.values())
            tied = [p for p in unresolved(front(points(prior)), z=z) if len(evaluated[p.key]["values"]) < max_seeds]
            if not tied:
                break
            for p in tied:
                if spent["n"] >= budget:
                    break
                evaluated[p.key]["values"].append(world.evaluate(evaluated[p.key]["choices"]))
                spent["n"] += 1
    return list(evaluated.values())


def answer_hv(world: World, evaluated: list[dict], ref: tuple[float, float]) -> float:
    """True hypervolume of the method's own front (chosen by its estimates)."""
    pts = [Point(e["latency"], float(np.mean(e["values"])), 0.0, key=json.dumps(e["choices"], sort_keys=True, default=str))
           for e in evaluated]
    chosen = {p.key for p in front(pts)}
    true = [(e["latency"], world.member(e["choices"])[1]) for e in evaluated
            if json.dumps(e["choices"], sort_keys=True, default=str) in chosen]
    return hypervolume(true, ref)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reference", type=Path, default=Path("benchmarks/results/quality_reference/quality_reference.json"))
    p.add_argument("--metric", default="eval_score", help="the reference's quality metric the true model is fitted on")
    p.add_argument("--calibration", type=Path, default=None,
                   help="JSON with slope, bias_sd, seed_sd, item_se of the chosen proxy (from quality_analysis)")
    p.add_argument("--slope", type=float, default=None)
    p.add_argument("--bias-sd", type=float, default=None)
    p.add_argument("--seed-sd", type=float, default=None)
    p.add_argument("--item-se", type=float, default=None)
    p.add_argument("--budget", type=int, default=120)
    p.add_argument("--max-seeds", type=int, default=4)
    p.add_argument("--z", type=float, default=2.0)
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--methods", default="tpe,nsga2,racing")
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    reference = json.loads(a.reference.read_text())
    coef, residual_sd = fit_true_model(reference, a.metric)
    cal = json.loads(a.calibration.read_text()) if a.calibration else {}
    for k, v in (("slope", a.slope), ("bias_sd", a.bias_sd), ("seed_sd", a.seed_sd), ("item_se", a.item_se)):
        if v is not None:
            cal[k] = v
    missing = [k for k in ("slope", "bias_sd", "seed_sd", "item_se") if k not in cal]
    if missing:
        raise SystemExit(f"error: calibration lacks {', '.join(missing)} (give --calibration FILE or the flags)")
    space = load_space("mobilediffusion")
    predictor = Predictor([LatencyTable.load("x86-2core_torch-cpu")], check_device=False)
    methods = a.methods.split(",")
    results: dict[str, list[float]] = {m: [] for m in methods}
    for world_seed in range(a.seeds):
        world = World(space, predictor, coef, residual_sd, cal, world_seed)
        sample = [world.member(c) for c, _ in space.samples(400, seed=1000 + world_seed)]
        ref = (max(s[0] for s in sample) * 1.05, min(s[1] for s in sample))
        for m in methods:
            evaluated = run_method(m, world, a.budget, max_seeds=a.max_seeds, z=a.z, item_se=cal["item_se"], seed=world_seed)
            results[m].append(answer_hv(world, evaluated, ref))
        print(json.dumps({"world": world_seed, **{m: round(results[m][-1], 2) for m in methods}}), flush=True)
    rng = np.random.default_rng(0)
    summary: dict[str, Any] = {}
    for m in methods:
        v = results[m]
        summary[m] = {"median": statistics.median(v), "quartiles": [float(np.percentile(v, 25)), float(np.percentile(v, 75))]}
    if "racing" in methods:
        for m in methods:
            if m == "racing":
                continue
            d = np.array(results["racing"]) - np.array(results[m])
            boots = [float(np.median(rng.choice(d, len(d)))) for _ in range(4000)]
            summary[f"racing_minus_{m}"] = {"median": float(np.median(d)), "ci95": [float(np.percentile(boots, 2.5)),
                                                                                      float(np.percentile(boots, 97.5))],
                                             "worlds_better": int((d > 0).sum()), "worlds": len(d)}
    out = {"benchmark": "noise_aware", "calibration": {**cal, "true_model_residual_sd": residual_sd, "metric": a.metric},
           "budget": a.budget, "max_seeds": a.max_seeds, "z": a.z, "summary": summary, "per_world": results}
    print(json.dumps(summary, indent=1))
    if a.out is not None:
        write_result(a.out, out)


if __name__ == "__main__":
    main()
