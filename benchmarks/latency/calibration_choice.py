"""Which calibration models fit the overhead term better: random draws, or a spread over sizes?

Offline, on one validation run's whole-model timings (no timing here): each round draws a
pool of ``--pool`` models from the validated ones; from that pool 8 calibration models are
taken at random and, separately, at evenly spaced quantiles of weight size (the middle of
each eighth: what ``table build --calibrate`` and ``table calibrate`` now do) and spread to
include the pool's smallest and largest ("ends"); each set fits the overhead term
(the form chosen as a table build does: ``fit_overhead``), and both fits predict the models
outside the pool. Paired over rounds: the same pool, the same held-out models. The results
in benchmarks/results were computed before 2026-11-24 evening, when ``fit_overhead`` still
took the form with the lowest leave-one-out error (see benchmarks/latency/overhead_form_choice.py).

    .venv/bin/python -m benchmarks.latency.calibration_choice benchmarks/results/tables/previous_2026-11-24-pm_torch-cpu.csv \
        benchmarks/results/table_validations/validate_torch-cpu_2026-11-24-pm.json --seed 1 --out benchmarks/results/calibration_choice/calibration_choice_2026-11-24-pm.json

The rounds share models, so they are not independent: read the mean difference with the
share of rounds each way, not as a standard error.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from archlab.cost.table import LatencyTable, fit_overhead
from archlab.tables import accuracy, fit_points, sample_table_models
from archlab.tables.sources import at_quantiles
from benchmarks.common import write_result


def add_round_options(p: argparse.ArgumentParser) -> None:
    """The options of an offline replay over a validation's models (shared with block_timing_choice.py)."""
    p.add_argument("--seed", type=int, default=1, help="the validation's --seed (its models are re-drawn from it)")
    p.add_argument("--models", type=int, default=8, help="calibration models per round")
    p.add_argument("--pool", type=int, default=20, help="models a round may calibrate on; the rest are predicted")
    p.add_argument("--rounds", type=int, default=500)
    p.add_argument("--out", type=Path, default=None)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("table", type=Path, help="the table the validation ran on")
    p.add_argument("validation", type=Path, help="`archlab table validate ... --json --out` of that table")
    add_round_options(p)
    a = p.parse_args()
    table = LatencyTable.read(a.table)
    report = json.loads(a.validation.read_text())
    descs = sample_table_models(table, n=report["samples"], seed=a.seed)
    if [d.name for d in descs] != [r["name"] for r in report["models"]]:
        raise SystemExit(f"error: --seed: the validation's models are not those seed {a.seed} draws")
    points = fit_points(table, descs, [r["measured_ms"] for r in report["models"]])
    rng = np.random.default_rng(0)
    scores: dict[str, list[dict[str, float]]] = {"random": [], "spread": [], "ends": []}
    forms: dict[str, dict[str, int]] = {"random": {}, "spread": {}, "ends": {}}
    for _ in range(a.rounds):
        order = rng.permutation(len(points))
        pool, test = order[:a.pool], order[a.pool:]
        by_size = sorted(pool, key=lambda i: points[i].weight_gb)
        chosen = {"random": list(rng.choice(pool, a.models, replace=False)),
                  "spread": at_quantiles(by_size, a.models),
                  "ends": [by_size[round(i * (len(by_size) - 1) / (a.models - 1))] for i in range(a.models)]}
        for kind, idx in chosen.items():
            overhead, _ = fit_overhead([points[i] for i in idx])
            forms[kind][overhead.form] = forms[kind].get(overhead.form, 0) + 1
            predicted = [overhead.apply(points[i].kind_sums, points[i].weight_gb) for i in test]
            scores[kind].append(accuracy(predicted, [points[i].measured_ms for i in test]))
    out: dict[str, object] = {"validation": str(a.validation), "rounds": a.rounds, "pool": a.pool, "models": a.models,
                              "held_out_per_round": len(points) - a.pool, "forms_chosen": forms}
    for metric in ("rmspe", "within_10"):
        r, sp, e = (np.array([x[metric] for x in scores[k]]) for k in ("random", "spread", "ends"))
        better = (lambda d: d < 0) if metric == "rmspe" else (lambda d: d > 0)
        out[metric] = {"random_mean": float(r.mean()), "spread_mean": float(sp.mean()), "ends_mean": float(e.mean()),
                       "spread_minus_random": float((sp - r).mean()), "sd_over_rounds": float((sp - r).std(ddof=1)),
                       "spread_better_share": float(np.mean(better(sp - r))), "tied_share": float(np.mean(sp == r)),
                       "ends_minus_spread": float((e - sp).mean()), "ends_better_share": float(np.mean(better(e - sp)))}
    print(json.dumps(out, indent=1))
    if a.out is not None:
        write_result(a.out, out)


if __name__ == "__main__":
    main()
