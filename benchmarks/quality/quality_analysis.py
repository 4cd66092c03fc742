"""Judge every measured proxy design against the quality reference; one JSON object.

Reads the committed results of ``benchmarks/quality/quality_reference.py`` and
``benchmarks/quality/proxy_designs.py`` (or their work folders) and prints, for each (setting,
metric): ``tau`` and ``tau_ci`` (bootstrap over architectures) against the reference,
``seed_tau`` (the setting's two independent replicates), ``separated_pairs`` (reference
means apart beyond two combined standard errors, seed noise included), ``agree`` (of those,
ordered alike by replicate A; ``agree_b`` by replicate B), ``permutation_p`` (of that
agreement, permuting architectures), ``signal_noise`` and ``signal_noise_p`` (the F-test
against no architecture effect), ``regret`` (at the 25th, 50th and 75th percentiles of the
architectures' predicted latencies: the reference value of the proxy's pick below the best
within the budget, in reference seed standard deviations; each and the median) and
``cpu_minutes`` (median per candidate, process CPU time at one thread; amortised parts apart);
plus ``default`` naming the shipped default. ``attenuation`` says which limit binds each setting's
tau: the reference's noise (``ceiling_reference``), the setting's own seed noise (``ceiling_noise``)
or what it measures (``validity``: its correlation with the reference with both noises removed;
``tau_endless_seeds``: the tau endless seeds of it would reach), each (estimate, 95% interval).
Statistics: :mod:`archlab.quality.fidelity`.

The reference quality, fixed before any reference result was seen: **eval_score** (sampled
images scored by the synthetic domain's exact evaluator, 1024 captions, mean of seeds 100
and 101 at 1000 steps): what a user of the model sees. The same figures against the
reference's held-out loss and text_gap are under ``also_against``.

    .venv/bin/python -m benchmarks.quality.quality_analysis --json
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from archlab.quality import registry
from archlab.quality.fidelity import (
    agreement,
    attenuation,
    kendall,
    kendall_interval,
    regret,
    separated_pairs,
    signal_noise,
)
from benchmarks.common import provenance, write_result

REFERENCE_METRIC = "eval_score"
ALSO = ("heldout_loss", "text_gap")
SHIPPED = {"setting": "default@150", "metric": "text_gap"}  # what archlab's QualityConfig and the searches default to


def oriented(metric: str, value: float) -> float:
    return value if registry.get(metric).higher_is_better else -value


# ---------------------------------------------------------------------- reading


def reference_values(measurements: dict[str, Any], steps: int, metric: str) -> dict[str, tuple[list[float], float]]:
    """Per architecture: its reference seeds' values (oriented) and the mean held-out standard error."""
    out = {}
    for arch, runs in measurements.items():
        vals, ses = [], []
        for run in sorted(runs):
            entry = next((e for e in runs[run] if e["step"] == steps and metric in e.get("ema", {})), None)
            if entry is not None:
                vals.append(oriented(metric, entry["ema"][metric]["value"]))
                ses.append(entry["ema"][metric]["se"])
        if len(vals) >= 2:
            out[arch] = (vals, float(np.mean(ses)))
    return out


def _at(runs: dict[str, list], seed: int, step: int) -> dict[str, Any] | None:
    return next((e for e in runs.get(f"s{seed}", []) if e["step"] == step), None)


SAMPLED = "eval_score"  # measured by sampling images: far dearer than the loss metrics measured beside it


def _cost(entry: dict[str, Any], metric: str | None = None, loss_eval_s: float | None = None) -> float | None:
    """CPU seconds to this measurement of ``metric``; None where the run used a GPU (its process CPU time is no
    candidate's cost). Where the step also sampled eval_score, a loss metric's cost counts the run's loss-only
    evaluation (``loss_eval_s``, from its steps that did not sample) instead: a search ranking by text_gap never
    samples."""
    if entry.get("device", "cpu") != "cpu":
        return None
    if metric not in (None, SAMPLED) and SAMPLED in entry["metrics"] and loss_eval_s is not None:
        return entry["train_cpu_s"] + loss_eval_s
    return entry["train_cpu_s"] + entry["eval_cpu_s"]


def _loss_eval_s(run: list[dict[str, Any]]) -> float | None:
    """The median evaluation CPU seconds of a run's steps that measured loss metrics only."""
    plain = [e["eval_cpu_s"] for e in run if SAMPLED not in e["metrics"]]
    return float(statistics.median(plain)) if plain else None


def _costs(entry: dict[str, Any], run: list[dict[str, Any]]) -> dict[str, float | None]:
    loss_eval = _loss_eval_s(run)
    return {m: _cost(entry, m, loss_eval) for m in entry["metrics"]}


def settings(designs: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """setting -> architecture -> {"a": {metric: value}, "b": {...}, "cpu_s": {metric: seconds}}: two independent
    replicates each."""
    out: dict[str, dict[str, dict[str, Any]]] = {}

    def put(name: str, arch: str, a: dict, b: dict, cpu: dict[str, float | None]) -> None:
        if a and b:
            out.setdefault(name, {})[arch] = {"a": a, "b": b, "cpu_s": cpu}

    def values(entry: dict[str, Any] | None) -> dict[str, float]:
        return {} if entry is None else {k: v["value"] for k, v in entry["metrics"].items()}

    def mean(*dicts: dict[str, float]) -> dict[str, float]:
        keys = set.intersection(*(set(d) for d in dicts)) if dicts and all(dicts) else set()
        return {k: float(np.mean([d[k] for d in dicts])) for k in keys}

    for design, by_arch in designs.items():
        for arch, runs in by_arch.items():
            if design in AVERAGED:
                _averaged(put, arch, runs, values, mean, *AVERAGED[design])
            steps = sorted({e["step"] for e in runs.get("s0", [])})
            for step in steps:
                e0, e1 = _at(runs, 0, step), _at(runs, 1, step)
                if e0 and e1:
                    put(f"{design}@{step}", arch, values(e0), values(e1), _costs(e0, runs["s0"]))
            if design != "default":
                continue
            for end in (125, 250):  # learning-curve scores: each loss metric's mean over the points up to ``end``
                pts = [s for s in steps if s <= end]
                if end in steps and all(_at(runs, s, p) for s in (0, 1) for p in pts):
                    curve = {s: mean(*[{k: v for k, v in values(_at(runs, s, p)).items() if k in ALSO} for p in pts]) for s in (0, 1)}
                    loss_eval = _loss_eval_s(runs["s0"])  # every point evaluates the loss metrics, none need sample
                    last = _cost(_at(runs, 0, end), ALSO[0], loss_eval)
                    cpu = None if last is None or loss_eval is None else last + loss_eval * (len(pts) - 1)
                    put(f"curve@{end}", arch, curve[0], curve[1], {m: cpu for m in curve[0]})
    return out


# seeds averaged, judged half against half: design -> (steps, first seed of replicates A and B, how many averaged);
# the default's {0, 1} against {2, 3} is design f, seeds25's 10.. against 14.. the short seeds
AVERAGED = {"default": ((60, 125), (0, 2), (2,)), "seeds25": ((25,), (10, 14), (1, 2, 4))}


def _averaged(put: Any, arch: str, runs: dict[str, list], values: Any, mean: Any, steps: tuple[int, ...],
              firsts: tuple[int, int], ks: tuple[int, ...]) -> None:
    """k seeds averaged at each step (``seeds{k}@{step}``), seeds firsts[0].. as replicate A and firsts[1].. as B;
    its cost is A's k runs'."""
    for step in steps:
        for k in ks:
            halves = [[_at(runs, s, step) for s in range(first, first + k)] for first in firsts]
            if all(e for half in halves for e in half):
                a, b = (mean(*[values(e) for e in half]) for half in halves)
                costs = [_costs(e, runs[f"s{s}"]) for e, s in zip(halves[0], range(firsts[0], firsts[0] + k))]
                put(f"seeds{k}@{step}", arch, {m: v for m, v in a.items() if m in b}, b,
                    {m: None if any(c.get(m) is None for c in costs) else sum(c[m] for c in costs) for m in b})


# ---------------------------------------------------------------------- judging


def judge(rows: dict[str, dict[str, Any]], metric: str, ref: dict[str, tuple[list[float], float]],
          latency: dict[str, float | None]) -> dict[str, Any] | None:
    archs = [a for a in ref if a in rows and metric in rows[a]["a"] and metric in rows[a]["b"]]
    if len(archs) < 6:
        return None
    a = np.array([oriented(metric, rows[x]["a"][metric]) for x in archs])
    b = np.array([oriented(metric, rows[x]["b"][metric]) for x in archs])
    values = np.array([ref[x][0][:2] for x in archs])
    sep = separated_pairs(values, np.array([ref[x][1] for x in archs]))
    agree_a, agree_b = agreement(a, sep), agreement(b, sep, seed=1)
    # a candidate with no seed of its own (a shared supernet's slice, not trained on) reads the same in both
    # "replicates": one draw, whose noise is the shared model's, unmeasured with one shared model
    independent = not np.array_equal(a, b)
    sn, sn_p = signal_noise(a, b) if independent else (None, None)
    timed = [i for i, x in enumerate(archs) if latency.get(x) is not None]
    lat = np.array([latency[archs[i]] for i in timed])
    budgets = [float(np.percentile(lat, q)) for q in (25, 50, 75)] if len(timed) >= 4 else []
    each = [regret(a[timed], sep.means[timed], lat, bud, sep.seed_sd) for bud in budgets]
    return {"archs": len(archs), "tau": round(kendall(a, sep.means), 3),
            "tau_ci": [round(x, 3) for x in kendall_interval(a, sep.means)],
            "tau_b": round(kendall(b, sep.means), 3), "tau_ci_b": [round(x, 3) for x in kendall_interval(b, sep.means)],
            "seed_tau": round(kendall(a, b), 3) if independent else None, "independent_replicates": independent,
            "separated_pairs": sep.pairs, "of": sep.of, "agree": agree_a.agree,
            "agree_fraction": None if agree_a.fraction is None else round(agree_a.fraction, 3),
            "permutation_p": agree_a.permutation_p, "agree_b": agree_b.agree, "permutation_p_b": agree_b.permutation_p,
            "signal_noise": None if sn is None else round(sn, 2), "signal_noise_p": sn_p,
            "regret": {"budgets_ms": [round(x) for x in budgets], "archs_with_latency": len(timed),
                       "each": [None if r is None else round(r, 2) for r in each],
                       "median": round(statistics.median(r for r in each if r is not None), 2) if each else None},
            "cpu_minutes": _median_minutes([rows[x]["cpu_s"].get(metric) for x in archs]),
            "attenuation": {k: [round(x, 3) for x in v] for k, v in attenuation(a, b, values).items()} if independent else None}


def _median_minutes(seconds: list[float | None]) -> float | None:
    """The median over the architectures run on the CPU (None: every one ran on a GPU; the cost is not measured)."""
    on_cpu = [x for x in seconds if x is not None]
    return round(statistics.median(on_cpu) / 60, 2) if on_cpu else None


GOALS = {"agree_fraction": 0.85, "permutation_p": 0.01, "tau": 0.6, "tau_ci_low": 0.3, "seed_tau": 0.8, "regret_median": 1.0,
         "cpu_minutes": 5.0}


def goals_met(row: dict[str, Any]) -> dict[str, bool]:
    """The quality issue's acceptance, figure by figure, for one (setting, metric). A one-seed setting has two
    independent replicates: agreement, permutation p, tau and its interval count as met only where both replicates
    meet them."""
    regret_median = row["regret"]["median"]
    sep = row["separated_pairs"]
    fractions = [row["agree_fraction"], None if not sep else row["agree_b"] / sep]
    return {"agree_fraction": all(f is not None and f >= GOALS["agree_fraction"] for f in fractions),
            "permutation_p": all(p is not None and p < GOALS["permutation_p"] for p in (row["permutation_p"], row["permutation_p_b"])),
            "tau": min(row["tau"], row["tau_b"]) >= GOALS["tau"],
            "tau_ci_low": min(row["tau_ci"][0], row["tau_ci_b"][0]) > GOALS["tau_ci_low"],
            "seed_tau": row["seed_tau"] is not None and row["seed_tau"] >= GOALS["seed_tau"],
            "regret_median": regret_median is not None and regret_median <= GOALS["regret_median"],
            "cpu_minutes": row["cpu_minutes"] is not None and row["cpu_minutes"] <= GOALS["cpu_minutes"]}


def choose(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The best measured design within the cost goal, by the issue's rule: first the number of acceptance goals it
    meets (:func:`goals_met`, both replicates), then its agreement on separated pairs (the replicates' mean), whether
    its permutation p meets the goal, its median regret and, last, the lower cost. Kendall tau and the proxy's
    agreement with itself (seed_tau) enter only through the goals. Only settings measured on the most architectures,
    with two independent replicates, compete. A permutation p is not ranked beyond its goal: between designs that
    agree on every separated pair it differs only through ties and Monte Carlo noise.

    History: fixed on 2026-12-05 before r08 was measured, judging replicate A alone; on the 17 architectures that
    named 25 steps, whose replicate B missed the agreement (31 of 39) and p goals, then px32 at 86 steps, whose B
    interval is [0.21, 0.69]. Judging one draw of a one-seed setting leaves seed noise out, so both replicates are
    judged since (a change made after seeing those data; benchmarks/README.md, quality)."""
    most = max((r["archs"] for r in rows), default=0)  # a design measured on fewer architectures is not yet comparable
    within = [r for r in rows if r["cpu_minutes"] is not None and r["cpu_minutes"] <= GOALS["cpu_minutes"]
              and r["agree_fraction"] is not None and r["archs"] == most and r["independent_replicates"]]
    if not within:
        return None
    def rank(r: dict[str, Any]) -> tuple:
        met = goals_met(r)
        return (sum(met.values()), (r["agree"] + r["agree_b"]) / r["separated_pairs"], met["permutation_p"],
                -(r["regret"]["median"] or 0.0), -r["cpu_minutes"])

    best = max(within, key=rank)
    return {"setting": best["setting"], "metric": best["metric"]}


def analyse(reference: dict[str, Any], designs: dict[str, Any]) -> dict[str, Any]:
    steps = reference["settings"]["steps"]
    latency = {a["name"]: a.get("predicted_ms") for a in reference["archs"]}
    table = settings(designs["measurements"])
    out: dict[str, Any] = {"reference": {}, "settings": [], "also_against": {}, "default": SHIPPED,
                           "amortised": designs.get("amortised", {})}
    for ref_metric in (REFERENCE_METRIC, *ALSO):
        ref = reference_values(reference["measurements"], steps, ref_metric)
        if len(ref) < 6:
            continue
        values = np.array([v[0][:2] for v in ref.values()])
        sep = separated_pairs(values, np.array([v[1] for v in ref.values()]))
        sn, sn_p = signal_noise(values[:, 0], values[:, 1])
        summary = {"metric": ref_metric, "steps": steps, "archs": len(ref), "seed_sd": sep.seed_sd,
                   "separated_pairs": sep.pairs, "of": sep.of, "seed_tau": round(kendall(values[:, 0], values[:, 1]), 3),
                   "signal_noise": round(sn, 2), "signal_noise_p": sn_p,
                   "per_arch": {a: {"mean": round(float(m), 5), "se": round(float(s), 5)}
                                for a, m, s in zip(ref, sep.means, sep.se)}}
        rows = []
        for name in sorted(table):
            metrics = sorted(set.intersection(*(set(r["a"]) for r in table[name].values())))
            for metric in metrics:
                figures = judge(table[name], metric, ref, latency)
                if figures is not None:
                    row = {"setting": name, "metric": metric, **figures}
                    row["goals_met"] = goals_met(row)
                    rows.append(row)
        if ref_metric == REFERENCE_METRIC:
            out["reference"], out["settings"] = summary, rows
            out["best_measured"] = choose(rows)
            out["goals"] = GOALS
        else:
            out["also_against"][ref_metric] = {"reference": summary, "settings": rows}
    return out


def markdown(result: dict[str, Any], metric: str = "text_gap") -> str:
    """The settings ranked by ``metric`` as benchmarks/README.md shows them: both replicates, and what binds."""
    lines = ["| setting | archs | goals met | agree A / B (of separated) | permutation p A / B | tau A / B [A's 95%] | seed tau | "
             "F p | regret median (each) | validity [95%] | tau, endless seeds | CPU min |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    rows = [r for r in result["settings"] if r["metric"] == metric]
    chosen = result.get("best_measured") or {}
    for r in sorted(rows, key=lambda r: (-sum(r["goals_met"].values()), -(r["agree"] + r["agree_b"]), r["setting"])):
        reg, at = r["regret"], r["attenuation"] or {}
        name = r["setting"] + (" (best measured)" if r["setting"] == chosen.get("setting") and metric == chosen.get("metric") else "")
        lines.append(f"| {name} | {r['archs']} | {sum(r['goals_met'].values())} of {len(r['goals_met'])} | "
                     f"{r['agree']} / {r['agree_b']} ({r['separated_pairs']}) | {r['permutation_p']:.4f} / {r['permutation_p_b']:.4f} | "
                     f"{r['tau']:.2f} / {r['tau_b']:.2f} [{r['tau_ci'][0]:.2f}, {r['tau_ci'][1]:.2f}] | {_num(r['seed_tau'])} | "
                     f"{_num(r['signal_noise_p'], '.0e')} | {reg['median']} ({', '.join(map(str, reg['each']))}) | "
                     f"{_interval(at.get('validity'))} | {_interval(at.get('tau_endless_seeds'))} | "
                     f"{r['cpu_minutes']} |")
    return "\n".join(lines)


def _num(x: float | None, form: str = ".2f") -> str:
    return "one draw" if x is None else format(x, form)  # None: both replicates are one draw (no seed of its own)


def _interval(v: list[float] | None) -> str:
    if v is None:
        return "one draw"
    upper = f"{v[2]:.2f}" if v[2] < 10 else "unbounded"  # a resample whose seeds hardly agree leaves validity unbounded
    return f"{v[0]:.2f} [{v[1]:.2f}, {upper}]"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reference", type=Path, default=Path("benchmarks/results/quality_reference/quality_reference.json"))
    p.add_argument("--designs", type=Path, default=Path("benchmarks/results/proxy_designs/proxy_designs.json"))
    p.add_argument("--json", action="store_true", help="print the whole analysis as one JSON object (default: a summary table)")
    p.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    p.add_argument("--markdown", action="store_true", help="print the settings as a Markdown table (benchmarks/README.md)")
    a = p.parse_args()
    for path in (a.reference, a.designs):
        if not path.is_file():
            raise SystemExit(f"error: {path} does not exist: run the benchmark that writes it first")
    result = analyse(json.loads(a.reference.read_text()), json.loads(a.designs.read_text()))
    result["provenance"] = provenance()
    if a.out is not None:
        write_result(a.out, result)
    if a.json:
        print(json.dumps(result, indent=1))
        return
    if a.markdown:
        print(markdown(result))
        return
    r = result["reference"]
    print(f"reference {r.get('metric')}: {r.get('archs')} architectures, {r.get('separated_pairs')} of {r.get('of')} pairs "
          f"separated, seed tau {r.get('seed_tau')}")
    for s in result["settings"]:
        print(f"{s['setting']:>14} {s['metric']:>16} {s['archs']:>3} archs  agree {s['agree']}/{s['separated_pairs']} p={s['permutation_p']:.4f}  "
              f"tau {s['tau']:+.2f} {s['tau_ci']}  seed_tau {s['seed_tau']}  S/N {s['signal_noise']} "
              f"(p={_num(s['signal_noise_p'], '.3g')})  regret {s['regret']['median']}  {s['cpu_minutes']} CPU-min")


if __name__ == "__main__":
    main()
