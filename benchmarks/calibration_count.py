"""How many calibration models the overhead fit needs: 24 against 8 of them, on the same timings.

Reads unseen-space runs made with ``latency_unseen_space.py --calibrate 24`` (joint protocol:
the 24 calibration models are timed in the validation's passes and the table is refitted on
them). Offline, nothing timed: the overhead is fitted again, by the table's own rule, on
each third of the 24 (sorted by parameters, so each third is spread over the sizes as a
draw of 8 is), and the 30 validation models are scored under each fit. The three 8-model
fits' figures are averaged and set beside the 24-model fit's, with the run's 1.25 x retest
RMSPE bar.

    .venv/bin/python benchmarks/calibration_count.py --runs 26-33 \
        --out benchmarks/results/calibration_count_torch-cpu.json
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from archlab.cost.measure import ModelTimings, score, store_fit, stored_calibration
from archlab.cost.predict import Predictor
from archlab.cost.table import LatencyTable
from unseen_error_sources import run_arguments, run_numbers  # the sibling script (benchmarks/ is on sys.path when run)

FIGURES = ("within_10", "within_5", "rmspe", "spearman")


def main() -> None:
    a = run_arguments(__doc__, runs="26-33", work="out/unseen-joint24-{n}")
    rows = []
    for n in run_numbers(a.runs):
        work = Path(a.work.format(n=n))
        result = json.loads(Path(f"benchmarks/results/latency_unseen_{a.backend}_joint_cal24_{n}.json").read_text())
        timings = ModelTimings.stored(json.loads((work / f"{a.backend}.timings.json").read_text()))
        descs = [timings.description(m["name"]) for m in result["models"]]
        table = LatencyTable.load(work / f"{a.backend}.csv")
        calib, calib_ms = stored_calibration(table)
        predictor = Predictor([table], check_device=False)
        params = [predictor.score(d).params for d in calib]
        order = np.argsort(params)
        fits = {"24": score(table, timings, descs, seed=n)}
        forms = {"24": table.metadata["overhead"]["form"]}
        for third in range(3):
            keep = order[third::3]
            with tempfile.TemporaryDirectory() as tmp:  # store_fit saves: a scratch copy, not the run's table
                copy = LatencyTable(Path(tmp) / "copy.csv", json.loads(json.dumps(table.metadata)), table.rows.copy())
                store_fit(copy, [calib[i] for i in keep], [calib_ms[i] for i in keep], seed=0)
                fits[f"8/{third}"] = score(copy, timings, descs, seed=n)
                forms[f"8/{third}"] = copy.metadata["overhead"]["form"]
        eights = [fits[f"8/{t}"] for t in range(3)]
        row = {"run": n, "retest_rmspe": result["retest_rmspe"], "bar_rmspe": 1.25 * result["retest_rmspe"],
               "retest_within_10": result["retest_within_10"], "forms": forms}
        for k in FIGURES:
            row[f"{k}_24"] = fits["24"][k]
            row[f"{k}_8"] = float(np.mean([f[k] for f in eights]))
            row[f"{k}_8_each"] = [f[k] for f in eights]
        rows.append(row)
        print(f"run {n}: retest RMSPE {row['retest_rmspe']:.1%} (bar {row['bar_rmspe']:.1%}); "
              + "; ".join(f"{k} 24: {row[f'{k}_24']:.3f}, 8: {row[f'{k}_8']:.3f} "
                          f"({', '.join(f'{v:.3f}' for v in row[f'{k}_8_each'])})" for k in FIGURES)
              + f"; forms {forms}")
    summary = {
        "runs": len(rows),
        "rmspe_24_lower": sum(r["rmspe_24"] < r["rmspe_8"] for r in rows),
        "median_rmspe_24": float(np.median([r["rmspe_24"] for r in rows])),
        "median_rmspe_8": float(np.median([r["rmspe_8"] for r in rows])),
        "meets_rmspe_bar_24": sum(r["rmspe_24"] <= r["bar_rmspe"] for r in rows),
        "meets_rmspe_bar_8": sum(r["rmspe_8"] <= r["bar_rmspe"] for r in rows),
    }
    print(json.dumps(summary, indent=1))
    if a.out is not None:
        a.out.write_text(json.dumps({"summary": summary, "runs": rows}, indent=1))


if __name__ == "__main__":
    main()
