"""Warm or cold block timing: which table's block figures explain whole models better?

Offline, on one validation run's whole-model timings (no timing here): the same 30 models
are predicted from each table's block figures (e.g. one built as usual and one built with
``--cold``, which flushes the caches before every timed run of a block). The tables'
own calibrations are set aside: each round draws a pool of ``--pool`` models, fits the
overhead term on ``--models`` of them spread over weight size (the form chosen as a table
build does: ``fit_overhead``; its committed result predates the 2026-11-24 evening rule,
see benchmarks/latency/overhead_form_choice.py) and predicts the models outside the pool. Paired over
rounds: every table gets the same pools and held-out models. Also reported per table: the
raw ratio measured / block sum by size (no fit), where a size trend is the systematic
error a warm block timing would leave.

    .venv/bin/python -m benchmarks.latency.block_timing_choice benchmarks/results/table_validations/validate_torch-cpu_2026-11-24-0224.json \\
        benchmarks/results/tables/previous_2026-11-24-0224_torch-cpu.csv out/cold/torch-cpu-warm.csv out/cold/torch-cpu-cold.csv --seed 1 \\
        --out benchmarks/results/block_timing_choice/block_timing_choice.json

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
from benchmarks.latency.calibration_choice import add_round_options

SIZE_BINS = ((0, 400e6, "under 400M"), (400e6, 650e6, "400-650M"), (650e6, float("inf"), "over 650M"))


def size_trend(points, params) -> dict[str, float]:
    """Mean of measured / block sum in each parameter bin (1.0: the blocks add up to the model)."""
    ratio = np.array([p.measured_ms / sum(p.kind_sums) for p in points])
    return {label: float(ratio[(params >= lo) & (params < hi)].mean()) for lo, hi, label in SIZE_BINS
            if ((params >= lo) & (params < hi)).any()}


def held_out_rounds(points: dict[str, list], truths: list[float], params: np.ndarray, *, rounds: int, pool: int,
                    models: int) -> dict[str, dict]:
    """Per table: held-out accuracy over ``rounds`` rounds, each fitting the overhead (form by
    leave-one-out) on ``models`` of a random pool of ``pool`` models spread over size, then
    predicting the models outside the pool; the same pools for every table (paired), the first
    table the reference for the differences."""
    rng = np.random.default_rng(0)
    scores: dict[str, list[dict[str, float]]] = {k: [] for k in points}
    errors: dict[str, list[list[float]]] = {k: [[] for _ in truths] for k in points}  # held-out errors per model
    forms: dict[str, dict[str, int]] = {k: {} for k in points}
    for _ in range(rounds):
        order = rng.permutation(len(truths))
        chosen = at_quantiles(sorted(order[:pool], key=lambda i: params[i]), models)
        test = order[pool:]
        for name, pts in points.items():
            overhead, _ = fit_overhead([pts[i] for i in chosen])
            forms[name][overhead.form] = forms[name].get(overhead.form, 0) + 1
            predicted = [overhead.apply(pts[i].kind_sums, pts[i].weight_gb) for i in test]
            scores[name].append(accuracy(predicted, [truths[i] for i in test]))
            for i, pr in zip(test, predicted):
                errors[name][i].append(pr / truths[i] - 1)
    tables: dict[str, dict] = {}
    first = next(iter(points))
    for name in points:
        mean_err = np.array([np.mean(e) if e else np.nan for e in errors[name]])
        entry = {metric: float(np.mean([s[metric] for s in scores[name]])) for metric in ("within_10", "within_5", "rmspe", "spearman")}
        entry["forms_chosen"] = forms[name]
        entry["measured_over_block_sum"] = size_trend(points[name], params)
        entry["held_out_mean_error_by_size"] = {label: float(np.nanmean(mean_err[(params >= lo) & (params < hi)]))
                                                for lo, hi, label in SIZE_BINS if ((params >= lo) & (params < hi)).any()}
        if name != first:
            d = np.array([s["rmspe"] for s in scores[name]]) - np.array([s["rmspe"] for s in scores[first]])
            entry[f"rmspe_minus_{Path(first).stem}"] = float(d.mean())
            entry["better_rmspe_share"] = float(np.mean(d < 0))
        tables[name] = entry
    return tables


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("validation", type=Path, help="`archlab table validate ... --json --out` (its models' timings are the truth)")
    p.add_argument("tables", type=Path, nargs="+", help="tables with every block of those models (2 or more)")
    add_round_options(p)
    a = p.parse_args()
    report = json.loads(a.validation.read_text())
    truths = [r["measured_ms"] for r in report["models"]]
    params = np.array([r["params"] for r in report["models"]], float)
    points = {}
    for path in a.tables:
        table = LatencyTable.read(path)
        descs = sample_table_models(table, n=report["samples"], seed=a.seed)
        if [d.name for d in descs] != [r["name"] for r in report["models"]]:
            raise SystemExit(f"error: --seed: the validation's models are not those seed {a.seed} draws from {path}")
        points[str(path)] = fit_points(table, descs, truths)
    out: dict[str, object] = {"validation": str(a.validation), "rounds": a.rounds, "pool": a.pool, "models": a.models,
                              "held_out_per_round": len(truths) - a.pool,
                              "tables": held_out_rounds(points, truths, params, rounds=a.rounds, pool=a.pool, models=a.models)}
    print(json.dumps(out, indent=1))
    if a.out is not None:
        write_result(a.out, out)


if __name__ == "__main__":
    main()
