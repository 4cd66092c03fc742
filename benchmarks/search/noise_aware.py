"""Noise-aware search against TPE and NSGA-II at equal CPU, in a simulation calibrated on the quality reference.

The world (one per seed): every member of the default space has its exact predicted latency
(the shipped torch-cpu table) and a *true* quality: a ridge model of the reference's quality
(``benchmarks/quality/quality_reference.py``, its primary metric, mean of two seeds) on a
few architecture features, plus a per-architecture residual drawn at the fit's own residual
spread. A proxy evaluation with one seed reads ``slope x true + bias_arch + noise``: the
bias is the proxy's own error (fixed per architecture: more seeds do not remove it), the
noise the seed's (fresh each evaluation). Slope, bias and seed spread come from the chosen
proxy's two replicates against the reference (``benchmarks/quality/quality_analysis.py``
figures: :func:`calibrate`, from the committed results).

Each method spends the same number of proxy evaluations (``--budget``, one evaluation = one
proxy seed):

- ``tpe`` and ``nsga2``: one evaluation per candidate (Optuna's samplers, seeded);
- ``racing``: TPE's proposals, one evaluation first, one more while the candidate is within
  reach of the current front (``archlab.search.racing``), up to ``--max-seeds``; a fifth
  of the budget kept to re-evaluate front members still tied at the end;
- ``first_look``: racing with a cheaper first look. A candidate's first seed is read part way
  through its training (the calibration's ``first_look``: its cost as a share of a full run, and
  that reading's own slope, bias and seed spread, with its correlation to the full reading of
  the same run); only a candidate within reach (``--first-look-z``) of the front *of those first looks* trains on
  to the full run (paying the rest), and then races as ``racing`` does. TPE is told a
  candidate that stopped at the first look was pruned. In a study file: ``racing: {first_look: STEPS}``.

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
from archlab.quality import registry
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

    def evaluate_with_first_look(self, choices: dict[str, Any]) -> tuple[float, float]:
        """One training run read part way (the first look) and at its end: (first-look reading, full reading), their seed noise
        and their biases correlated as the calibration says."""
        _, true, bias = self.member(choices)
        r = self.cal["first_look"]
        z_full, z_other = self.rng.normal(size=2)
        full = self.cal["slope"] * true + bias + self.cal["seed_sd"] * float(z_full)
        seed_part = r["seed_sd"] * (r["rho_seed"] * float(z_full) + math.sqrt(max(0.0, 1 - r["rho_seed"] ** 2)) * float(z_other))
        return r["slope"] * true + self.first_look_bias(choices, bias) + seed_part, full

    def first_look_bias(self, choices: dict[str, Any], bias: float) -> float:
        """The first look's own proxy error, fixed per architecture, correlated ``rho_bias`` with the full one's."""
        r = self.cal["first_look"]
        key = json.dumps(choices, sort_keys=True, default=str)
        h = np.random.default_rng([self.seed, zlib.crc32(key.encode()), 1])
        scaled = bias / self.cal["bias_sd"] if self.cal["bias_sd"] > 0 else 0.0
        return r["bias_sd"] * (r["rho_bias"] * scaled + math.sqrt(max(0.0, 1 - r["rho_bias"] ** 2)) * float(h.normal()))


def hypervolume(points: list[tuple[float, float]], ref: tuple[float, float]) -> float:
    """2-D hypervolume: latency minimised, quality maximised, against ``ref`` (worst latency, worst quality): the
    union of the rectangles [latency, ref latency] x [ref quality, quality], swept by latency."""
    frontier, best = [], ref[1]
    for lat, q in sorted(p for p in points if p[0] < ref[0] and p[1] > ref[1]):
        if q > best:
            frontier.append((lat, q, best))
            best = q
    return sum((ref[0] - lat) * (q - below) for lat, q, below in frontier)


def run_method(method: str, world: World, budget: float, *, max_seeds: int, z: float, item_se: float,
               seed: int, first_look_z: float = 0.0) -> list[dict]:
    """Spend ``budget`` full-run equivalents of proxy training; the candidates evaluated to the end, with their
    estimates (the first looks that stopped there are not answers)."""
    world.rng = np.random.default_rng([world.seed, 99, zlib.crc32(method.encode())])  # its own noise, whatever ran before
    evaluated: dict[str, dict] = {}
    first_looks: dict[str, Point] = {}
    spent = {"n": 0.0}
    sampler = {"tpe": optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=10),
               "racing": optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=10),
               "first_look": optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=10),
               "nsga2": optuna.samplers.NSGAIISampler(seed=seed, population_size=20)}[method]
    study = optuna.create_study(directions=["minimize", "maximize"], sampler=sampler)
    races = method in ("racing", "first_look")
    reserve = budget / 5 if races and max_seeds > 1 else 0.0  # one seed each: nothing to refine
    look = world.cal.get("first_look") if method == "first_look" else None

    def points(prior: float | None) -> list[Point]:
        return [Point(e["latency"], float(np.mean(e["values"])), standard_error(e["values"], item_se, prior), key=k)
                for k, e in evaluated.items()]

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        choices = world.space.pick(lambda name, opts: trial.suggest_categorical(name, list(opts)))
        key = json.dumps(choices, sort_keys=True, default=str)
        latency, _, _ = world.member(choices)
        if key in evaluated:
            return latency, float(np.mean(evaluated[key]["values"]))
        if key in first_looks:
            raise optuna.TrialPruned()
        if look is not None:  # the first look, part way through the first seed's run
            early, full = world.evaluate_with_first_look(choices)
            spent["n"] += look["cost"]
            me = Point(latency, early, math.hypot(look["seed_sd"], look.get("item_se", 0.0)), key=key)
            others = list(first_looks.values())
            first_looks[key] = me
            if not within_reach(me, front(others), z=first_look_z):
                raise optuna.TrialPruned()
            spent["n"] += 1.0 - look["cost"]  # trains on to the end of the same run
            first = full
        else:
            first = world.evaluate(choices)
            spent["n"] += 1.0
        entry = evaluated.setdefault(key, {"choices": choices, "latency": latency, "values": [first]})
        if races:
            while len(entry["values"]) < max_seeds and spent["n"] + 1.0 <= budget - reserve:
                prior = pooled_seed_sd(e["values"] for e in evaluated.values()) or world.cal["seed_sd_prior"]
                pts = points(prior)
                me = next(p for p in pts if p.key == key)
                if not within_reach(me, front(p for p in pts if p.key != key), z=z):
                    break
                entry["values"].append(world.evaluate(choices))
                spent["n"] += 1.0
        return latency, float(np.mean(entry["values"]))

    while spent["n"] + 1.0 <= budget - reserve:
        study.optimize(objective, n_trials=1)
    if races:  # the reserve: more seeds for front members still tied
        while spent["n"] + 1.0 <= budget:
            prior = pooled_seed_sd(e["values"] for e in evaluated.values()) or world.cal["seed_sd_prior"]
            tied = [p for p in unresolved(front(points(prior)), z=z) if len(evaluated[p.key]["values"]) < max_seeds]
            if not tied:
                break
            for p in tied:
                if spent["n"] + 1.0 > budget:
                    break
                evaluated[p.key]["values"].append(world.evaluate(evaluated[p.key]["choices"]))
                spent["n"] += 1.0
    return list(evaluated.values())


def answer_hv(world: World, evaluated: list[dict], ref: tuple[float, float]) -> float:
    """True hypervolume of the method's own front (chosen by its estimates)."""
    pts = [Point(e["latency"], float(np.mean(e["values"])), 0.0, key=json.dumps(e["choices"], sort_keys=True, default=str))
           for e in evaluated]
    chosen = {p.key for p in front(pts)}
    true = [(e["latency"], world.member(e["choices"])[1]) for e in evaluated
            if json.dumps(e["choices"], sort_keys=True, default=str) in chosen]
    return hypervolume(true, ref)


def _values(designs: dict[str, Any], design: str, metric: str, step: int) -> dict[str, dict[int, tuple[float, float, float]]]:
    """arch -> seed -> (value oriented higher-is-better, its held-out se, CPU seconds to that point) at ``step``."""
    sign = 1.0 if registry.get(metric).higher_is_better else -1.0
    out: dict[str, dict[int, tuple[float, float, float]]] = {}
    for arch, runs in designs["measurements"].get(design, {}).items():
        for run, entries in runs.items():
            e = next((e for e in entries if e["step"] == step and metric in e["metrics"]), None)
            if e is not None:
                m = e["metrics"][metric]
                out.setdefault(arch, {})[int(run[1:])] = (sign * m["value"], m["se"], e["train_cpu_s"] + e["eval_cpu_s"])
    return out


def calibrate(reference: dict[str, Any], designs: dict[str, Any], *, ref_metric: str, design: str, metric: str,
              full: int, first_look: int | None) -> dict[str, Any]:
    """The proxy's reading of an architecture, ``slope x reference + bias + seed noise``, fitted on the committed
    results: the architectures both measured, every seed the design has at ``full`` steps (and at ``first_look``).

    ``seed_sd``: pooled within-architecture spread; ``slope``: least squares of the seeds' mean on the reference
    mean; ``bias_sd``: the spread of that fit's residuals less what seed noise (the proxy's and the reference's own)
    explains, at least 0. With ``first_look``: the same for the reading part way, ``rho_seed`` (one run's two readings:
    the correlation of their deviations from their architecture's means), ``rho_bias`` (of the two fits'
    residuals) and ``cost`` (CPU to the first look over CPU to the end, medians)."""
    ref_sign = 1.0 if registry.get(ref_metric).higher_is_better else -1.0
    ref, ref_var = {}, []
    for arch, runs in reference["measurements"].items():
        vals = [ref_sign * e["ema"][ref_metric]["value"] for r in runs.values() for e in r
                if e["step"] == reference["settings"]["steps"] and ref_metric in e.get("ema", {})]
        if len(vals) >= 2:
            ref[arch] = float(np.mean(vals))
            ref_var.append(float(np.var(vals, ddof=1)))
    ref_noise = float(np.mean(ref_var)) / 2 if ref_var else 0.0  # variance of a two-seed reference mean

    def fit(step: int) -> dict[str, Any]:
        by_arch = {a: v for a, v in _values(designs, design, metric, step).items() if a in ref and len(v) >= 2}
        if len(by_arch) < 4:
            raise SystemExit(f"error: {design}@{step} {metric}: {len(by_arch)} architectures with the reference and two "
                             "seeds; at least 4 are needed")
        archs = sorted(by_arch)
        seeds = sorted(set.intersection(*(set(by_arch[a]) for a in archs)))
        y = np.array([[by_arch[a][s][0] for s in seeds] for a in archs])
        x = np.array([ref[a] for a in archs])
        seed_sd = float(np.sqrt(np.mean(np.var(y, axis=1, ddof=1))))
        slope, intercept = np.polyfit(x, y.mean(axis=1), 1)
        resid = y.mean(axis=1) - (intercept + slope * x)
        bias_var = float(np.var(resid, ddof=2)) - seed_sd**2 / len(seeds) - slope**2 * ref_noise
        cpu = float(np.median([by_arch[a][s][2] for a in archs for s in seeds]))
        return {"archs": archs, "seeds": seeds, "y": y, "resid": resid, "cpu": cpu,
                "cal": {"slope": float(slope), "bias_sd": math.sqrt(max(0.0, bias_var)), "seed_sd": seed_sd,
                        "item_se": float(np.mean([by_arch[a][s][1] for a in archs for s in seeds])),
                        "archs": len(archs), "seeds": len(seeds)}}

    end = fit(full)
    out = {**end["cal"], "setting": f"{design}@{full}", "metric": metric, "reference_metric": ref_metric}
    if first_look is not None:
        early = fit(first_look)
        common = [a for a in end["archs"] if a in early["archs"]]
        ie, ir = [end["archs"].index(a) for a in common], [early["archs"].index(a) for a in common]
        seeds = [s for s in end["seeds"] if s in early["seeds"]]
        de = end["y"][np.ix_(ie, [end["seeds"].index(s) for s in seeds])]
        dr = early["y"][np.ix_(ir, [early["seeds"].index(s) for s in seeds])]
        de, dr = de - de.mean(axis=1, keepdims=True), dr - dr.mean(axis=1, keepdims=True)
        out["first_look"] = {**early["cal"], "step": first_look, "cost": early["cpu"] / end["cpu"],
                       "rho_seed": float(np.corrcoef(de.ravel(), dr.ravel())[0, 1]),
                       "rho_bias": float(np.corrcoef(end["resid"][ie], early["resid"][ir])[0, 1])}
    return out


def summarise(results: dict[str, list[float]]) -> dict[str, Any]:
    """Per method the median true hypervolume over worlds and its quartiles; per noise-aware method and
    plain sampler the paired difference per world: its median, a bootstrap 95% interval, worlds better."""
    rng = np.random.default_rng(0)
    summary: dict[str, Any] = {}
    for m, v in results.items():
        summary[m] = {"median": statistics.median(v), "quartiles": [float(np.percentile(v, 25)), float(np.percentile(v, 75))]}
    for mine in ("racing", "first_look"):
        for m in ("tpe", "nsga2"):
            if mine not in results or m not in results:
                continue
            d = np.array(results[mine]) - np.array(results[m])
            boots = [float(np.median(rng.choice(d, len(d)))) for _ in range(4000)]
            summary[f"{mine}_minus_{m}"] = {"median": float(np.median(d)), "ci95": [float(np.percentile(boots, 2.5)),
                                                                                    float(np.percentile(boots, 97.5))],
                                            "worlds_better": int((d > 0).sum()), "worlds": len(d)}
    return summary


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reference", type=Path, default=Path("benchmarks/results/quality_reference/quality_reference.json"))
    p.add_argument("--designs", type=Path, default=Path("benchmarks/results/proxy_designs/proxy_designs.json"))
    p.add_argument("--metric", default="eval_score", help="the reference's quality metric the true model is fitted on")
    p.add_argument("--proxy", default="default@125:text_gap", help="DESIGN@STEPS:METRIC: the proxy the studies rank by")
    p.add_argument("--first-look", type=int, default=60, help="the first look's steps for the first_look method (0: none)")
    p.add_argument("--budget", type=float, default=120, help="full proxy runs each method may spend")
    p.add_argument("--max-seeds", type=int, default=4)
    p.add_argument("--z", type=float, default=2.0)
    p.add_argument("--first-look-z", type=float, default=0.0, help="racing.first_look_z: within reach at the first look")
    p.add_argument("--seeds", type=int, default=20, help="worlds")
    p.add_argument("--first-world", type=int, default=0)
    p.add_argument("--methods", default="tpe,nsga2,racing,first_look")
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    reference = json.loads(a.reference.read_text())
    designs = json.loads(a.designs.read_text())
    coef, residual_sd = fit_true_model(reference, a.metric)
    setting, metric = a.proxy.split(":")
    design, full = setting.split("@")
    cal = calibrate(reference, designs, ref_metric=a.metric, design=design, metric=metric, full=int(full),
                    first_look=a.first_look or None)
    cal["seed_sd_prior"] = cal["seed_sd"]  # what a study file's racing.seed_sd would say: this benchmark's figure
    print(json.dumps({"calibration": cal}, indent=1), flush=True)
    methods = [m for m in a.methods.split(",") if m != "first_look" or "first_look" in cal]
    space = load_space("mobilediffusion")
    predictor = Predictor([LatencyTable.load("x86-2core_torch-cpu")], check_device=False)
    results: dict[str, list[float]] = {m: [] for m in methods}
    for world_seed in range(a.first_world, a.first_world + a.seeds):
        world = World(space, predictor, coef, residual_sd, cal, world_seed)
        sample = [world.member(c) for c, _ in space.samples(400, seed=1000 + world_seed)]
        ref = (max(s[0] for s in sample) * 1.05, min(s[1] for s in sample))
        for m in methods:
            evaluated = run_method(m, world, a.budget, max_seeds=a.max_seeds, z=a.z, item_se=cal["item_se"], seed=world_seed,
                                   first_look_z=a.first_look_z)
            results[m].append(answer_hv(world, evaluated, ref))
        print(json.dumps({"world": world_seed, **{m: round(results[m][-1], 2) for m in methods}}), flush=True)
    summary = summarise(results)
    out = {"benchmark": "noise_aware", "calibration": {**cal, "true_model_residual_sd": residual_sd},
           "budget": a.budget, "max_seeds": a.max_seeds, "z": a.z, "first_look_z": a.first_look_z, "worlds": [a.first_world, a.first_world + a.seeds - 1],
           "summary": summary, "per_world": results}
    print(json.dumps(summary, indent=1))
    if a.out is not None:
        write_result(a.out, out)


if __name__ == "__main__":
    main()
