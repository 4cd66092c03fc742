"""What settling buys: unseen-space runs made with ``--settle`` scored again on their first two passes only.

Offline, nothing timed. Each run (``latency_unseen_space.py --settle S``, joint protocol)
stored every pass of its calibration and validation models. Here the overhead is refitted,
by the table's own rule, on the calibration models' fastest of their first two passes, and
the validation models are scored against the fastest of theirs: what the same run would have
reported without settling. Both sets of figures are set beside the run's retest (pass 1 vs 2,
the same in both) and its ``truth_spread``.

    .venv/bin/python -m benchmarks.latency.settle_effect --runs 60-63 --work 'out/unseen-t1-{n}' \\
        --result 'benchmarks/results/latency_unseen_torch-cpu_fresh_t1_settle_{n}.json' \\
        --out benchmarks/results/settle_effect/settle_effect_torch-cpu_t1.json
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

from archlab.cost.table import LatencyTable
from archlab.tables import ModelTimings, stored_calibration
from benchmarks.common import write_result
from benchmarks.latency.unseen_error_sources import refit_and_score, run_numbers

FIGURES = ("within_10", "within_5", "rmspe", "spearman")


def first_passes(data: dict, n: int) -> dict:
    """A timings file's contents with each model's first ``n`` passes only."""
    out = copy.deepcopy(data)
    for entry in out["models"].values():
        entry["passes"] = entry["passes"][:n]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", required=True, help="validation seeds, e.g. 60-63")
    p.add_argument("--backend", default="torch-cpu")
    p.add_argument("--work", required=True, help="each run's work folder ({n}: its seed)")
    p.add_argument("--result", required=True, help="each run's result JSON ({n}: its seed)")
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args()
    rows = []
    for n in run_numbers(a.runs):
        work, result = Path(a.work.format(n=n)), json.loads(Path(a.result.format(n=n)).read_text())
        data = json.loads((work / f"{a.backend}.timings.json").read_text())
        table = LatencyTable.load(work / f"{a.backend}.csv")  # holds the fit on the settled calibration timings
        calib, _ = stored_calibration(table)
        names = [m["name"] for m in result["models"]]
        scored = {}
        for label, timings in (("settled", ModelTimings.stored(data)), ("two passes", ModelTimings.stored(first_passes(data, 2)))):
            descs = [timings.description(name) for name in names]
            scored[label], _ = refit_and_score(table, calib, [timings.truth(d, table.statistic) for d in calib], timings, descs,
                                               seed=n)
        row = {"run": n, "retest_rmspe": result["retest_rmspe"], "retest_within_10": result["retest_within_10"],
               "truth_spread": {k: scored[k]["truth_spread"] for k in scored}}
        for label, s in scored.items():
            row[label] = {k: s[k] for k in FIGURES} | {f"flops_{k}": s[f"flops_{k}"] for k in FIGURES}
        rows.append(row)
        print(f"run {n} (retest RMSPE {row['retest_rmspe']:.1%}): " + "; ".join(
            f"{label}: " + ", ".join(f"{k} {row[label][k]:.3f}/{row[label][f'flops_{k}']:.3f}" for k in FIGURES)
            + f", truth spread {row['truth_spread'][label]['rms']:.1%}" for label in scored))
    if a.out is not None:
        write_result(a.out, {"runs": rows})


if __name__ == "__main__":
    main()
