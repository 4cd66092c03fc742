"""Which overhead form predicts new models: the lowest leave-one-out error, or the simplest unless beaten beyond noise?

Offline, on kept validations (no timing): each table's stored calibration models (8, spread
over sizes) fit every overhead form (``sum``: intercept + scale x block sum; ``weights``:
plus a term per GB of weights; ``kinds``: a scale per block kind), and each fit predicts
that table's validation models (30, each timed in 2 passes far apart; their descriptions
are read from the validation's ``.timings.json``). Per validation the report gives each
form's leave-one-out RMSPE on the calibration models, its held-out figures, and the form
each rule picks:

- ``lowest``: the lowest leave-one-out RMSPE, the simpler form within 5% of it (the rule
  tables were built with until 2026-11-24);
- ``beyond_noise``: the simplest form unless a richer one's leave-one-out squared errors are
  lower by more than 2 paired standard errors (:func:`archlab.cost.table.choose_form`).

    .venv/bin/python -m benchmarks.latency.overhead_form_choice --out benchmarks/results/overhead_form_choice/overhead_form_choice.json

Pass ``--case TABLE VALIDATION`` (repeatable) for other pairs; the defaults are every table
and validation kept in this repository. ``VALIDATION:as_stored`` takes a ``--recalibrate``
run's FLOPs baseline and retest under the fit the table had before it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from archlab.arch.reading import description_from_dict
from archlab.cost.table import FIT_FORMS, LatencyTable, _loo_errors, _solve, choose_form
from archlab.tables import accuracy, closer_share, fit_points, paired_bootstrap
from benchmarks.common import write_result

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
TABLES = ROOT / "latency_tables"
CASES = [
    (TABLES / "x86-2core_litert.csv", RESULTS / "validate_litert.json"),
    (TABLES / "x86-2core_litert.csv", RESULTS / "validate_litert_disagreement.json"),
    (TABLES / "x86-2core_litert.csv", RESULTS / "validate_litert_seed21.json"),
    (RESULTS / "previous_2026-11-24-am_litert.csv", RESULTS / "validate_litert_2026-11-24-am.json"),
    (TABLES / "x86-2core_torch-cpu.csv", RESULTS / "validate_torch-cpu.json"),
    (RESULTS / "previous_2026-11-24-pm_torch-cpu.csv", RESULTS / "validate_torch-cpu_2026-11-24-pm.json"),
    (RESULTS / "previous_2026-11-24-0224_torch-cpu.csv", RESULTS / "validate_torch-cpu_2026-11-24-0224.json"),
    # seed 31 (--recalibrate): once under the shipped fit, once under the fit on the
    # calibration models timed again in the validation's own passes
    (TABLES / "x86-2core_litert.csv", RESULTS / "validate_litert_seed31_recalibrate.json:as_stored"),
    (RESULTS / "recalibrated_seed31_litert.csv", RESULTS / "validate_litert_seed31_recalibrate.json"),
    (TABLES / "x86-2core_torch-cpu.csv", RESULTS / "validate_torch-cpu_seed31_recalibrate.json:as_stored"),
    (RESULTS / "recalibrated_seed31_torch-cpu.csv", RESULTS / "validate_torch-cpu_seed31_recalibrate.json"),
    (TABLES / "x86-2core_litert.csv", RESULTS / "validate_litert_disagreement_seed41.json:as_stored"),
]


def lowest_rule(loo: dict[str, float]) -> str:
    best = min(loo.values())
    return next(f for f in FIT_FORMS if f in loo and loo[f] <= best * 1.05)


def in_repo(path: Path) -> str:
    """The path as written in results: relative to the repository when inside it."""
    path = Path(path).absolute()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def replay(table_path: Path, validation: Path) -> dict[str, object]:
    path, _, part = str(validation).partition(":")
    validation_path = Path(path)
    table = LatencyTable.read(table_path)
    stored = table.metadata["overhead"]["models"]
    calibration = fit_points(table, [description_from_dict(m["description"]) for m in stored], [m["measured_ms"] for m in stored])
    report = json.loads(validation_path.read_text())
    report = {**report, **report[part]} if part else report
    timed = json.loads(validation_path.with_suffix(".timings.json").read_text())["models"]
    rows = report["models"]
    held_out = fit_points(table, [description_from_dict(timed[r["name"]]["description"]) for r in rows],
                          [r["measured_ms"] for r in rows])
    truth = [p.measured_ms for p in held_out]
    errors = {f: _loo_errors(calibration, f) for f in FIT_FORMS}
    loo = {f: float(np.sqrt(np.mean(e**2))) for f, e in errors.items()}
    forms, predicted = {}, {}
    for f in FIT_FORMS:
        o = _solve(calibration, f)
        predicted[f] = [o.apply(p.kind_sums, p.weight_gb) for p in held_out]
        forms[f] = {"leave_one_out_rmspe": loo[f], "intercept_ms": o.intercept_ms, "scales": list(o.scales),
                    "per_gb_ms": o.per_gb_ms, "held_out": accuracy(predicted[f], truth)}
    picks = {"lowest": lowest_rule(loo), "beyond_noise": choose_form(errors)}
    flops = [r["flops_predicted_ms"] for r in rows]
    chosen = predicted[picks["beyond_noise"]]
    return {"table": in_repo(table_path), "validation": in_repo(validation_path) + (f":{part}" if part else ""), "pick": report.get("pick", "random"),
            "seed": report.get("seed"), "models": len(rows), "forms": forms, "picks": picks,
            "flops_held_out": accuracy(flops, truth),
            "beyond_noise_minus_flops": paired_bootstrap(chosen, flops, truth, seed=report.get("seed") or 0),
            "beyond_noise_closer_than_flops": closer_share(chosen, flops, truth),
            "retest_rmspe": report.get("retest_rmspe"),
            "held_out_rmspe_beyond_noise_minus_lowest": forms[picks["beyond_noise"]]["held_out"]["rmspe"]
            - forms[picks["lowest"]]["held_out"]["rmspe"]}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--case", nargs=2, type=Path, action="append", metavar=("TABLE", "VALIDATION"))
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args()
    cases = [replay(t, v) for t, v in (a.case or CASES) if Path(str(v).partition(":")[0]).exists()]
    for c in cases:
        held = {f: f"{c['forms'][f]['held_out']['rmspe']:.1%}" for f in FIT_FORMS}
        print(f"{Path(c['validation']).name}: picks {c['picks']}, held-out RMSPE {held}, "
              f"FLOPs {c['flops_held_out']['rmspe']:.1%}")
    out = {"cases": cases, "rule_beyond_noise_not_worse": sum(c["held_out_rmspe_beyond_noise_minus_lowest"] <= 0 for c in cases),
           "of": len(cases)}
    if a.out is not None:
        write_result(a.out, out)


if __name__ == "__main__":
    main()
