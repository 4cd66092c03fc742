"""How many calibration models the overhead fit needs: 24 against 16, 12 and 8 of them, on the same timings.

Reads unseen-space runs made with ``latency_unseen_space.py --calibrate 24`` (joint protocol:
the 24 calibration models are timed in the validation's passes and the table is refitted on
them). Offline, nothing timed: the overhead is fitted again, by the table's own rule, on
each third of the 24, each half, and the 24 less each third (sorted by parameters, so each
part is spread over the sizes as a smaller draw is), and the 30 validation models are
scored under each fit.
Each size's fits are averaged and set beside the 24-model fit's, with the run's 1.25 x
retest RMSPE bar and whether each fit meets every absolute goal.

    .venv/bin/python -m benchmarks.latency.calibration_count --runs 26-41 \
        --out benchmarks/results/calibration_count/calibration_count_torch-cpu.json
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from archlab.cost.predict import Predictor
from archlab.cost.table import LatencyTable
from archlab.tables import GOALS, ModelTimings, score, stored_calibration
from benchmarks.common import write_result
from benchmarks.latency.unseen_error_sources import (
    refit_and_score,
    run_arguments,
    run_numbers,
)

FIGURES = ("within_10", "within_5", "rmspe", "spearman")
SUBSETS = (16, 12, 8)


def parts(order: np.ndarray) -> dict[str, np.ndarray]:
    """Parts of the calibration models (``order``: sorted by parameters), each spread over the sizes:
    the whole less each third (16 of 24), each half (12) and each third (8)."""
    return ({f"16/{t}": np.delete(order, np.s_[t::3]) for t in range(3)}
            | {f"12/{h}": order[h::2] for h in range(2)}
            | {f"8/{t}": order[t::3] for t in range(3)})


def meets_goals(fit: dict, bar_rmspe: float) -> bool:
    """The absolute goals (:data:`archlab.tables.GOALS`) with the RMSPE bar given."""
    return fit["within_10"] >= GOALS.within_10 and fit["rmspe"] <= bar_rmspe and fit["spearman"] >= GOALS.spearman


def main() -> None:
    a = run_arguments(__doc__, runs="26-41", work="out/unseen-joint24-{n}")
    rows = []
    for n in run_numbers(a.runs):
        work = Path(a.work.format(n=n))
        result = json.loads(Path(f"benchmarks/results/latency_unseen_{a.backend}_joint_cal24_{n}.json").read_text())
        timings = ModelTimings.stored(json.loads((work / f"{a.backend}.timings.json").read_text()))
        descs = [timings.description(m["name"]) for m in result["models"]]
        table = LatencyTable.load(work / f"{a.backend}.csv")
        calib, calib_ms = stored_calibration(table)
        if len(calib) != 24:
            raise SystemExit(f"run {n}: {len(calib)} calibration models, not 24 (made with --calibrate 24?)")
        predictor = Predictor([table], check_device=False)
        params = [predictor.score(d).params for d in calib]
        fits = {"24": score(table, timings, descs, seed=n).to_dict()}
        forms = {"24": table.metadata["overhead"]["form"]}
        for name, keep in parts(np.argsort(params)).items():
            fits[name], forms[name] = refit_and_score(table, [calib[i] for i in keep], [calib_ms[i] for i in keep], timings,
                                                      descs, seed=n)
        bar = GOALS.rmspe_over_retest * result["retest_rmspe"]
        row = {"run": n, "retest_rmspe": result["retest_rmspe"], "bar_rmspe": bar,
               "retest_within_10": result["retest_within_10"], "forms": forms,
               "goals_24": meets_goals(fits["24"], bar)}
        for k in FIGURES:
            row[f"{k}_24"] = fits["24"][k]
        for size in SUBSETS:
            each = [f for name, f in fits.items() if name.startswith(f"{size}/")]
            row[f"goals_{size}_each"] = [meets_goals(f, bar) for f in each]
            for k in FIGURES:
                row[f"{k}_{size}"] = float(np.mean([f[k] for f in each]))
                row[f"{k}_{size}_each"] = [f[k] for f in each]
        rows.append(row)
        print(f"run {n}: retest RMSPE {row['retest_rmspe']:.1%} (bar {bar:.1%}); "
              + "; ".join(f"{k} 24: {row[f'{k}_24']:.3f}, "
                          + ", ".join(f"{size}: {row[f'{k}_{size}']:.3f} "
                                      f"({', '.join(f'{v:.3f}' for v in row[f'{k}_{size}_each'])})" for size in SUBSETS)
                          for k in FIGURES)
              + f"; forms {forms}")
    summary = {"runs": len(rows), "goals_24": sum(r["goals_24"] for r in rows),
               "median_rmspe_24": float(np.median([r["rmspe_24"] for r in rows]))}
    for size in SUBSETS:
        summary[f"median_rmspe_{size}"] = float(np.median([r[f"rmspe_{size}"] for r in rows]))
        summary[f"goals_{size}"] = f"{sum(sum(r[f'goals_{size}_each']) for r in rows)}/{sum(len(r[f'goals_{size}_each']) for r in rows)}"
    for more, fewer in [(24, s) for s in SUBSETS] + list(zip(SUBSETS, SUBSETS[1:])):
        for k in ("rmspe", "within_5", "within_10"):
            diff = np.array([r[f"{k}_{more}"] - r[f"{k}_{fewer}"] for r in rows])  # paired by run
            summary[f"{k}_{more}_minus_{fewer}"] = {"mean": float(diff.mean()), "se": float(diff.std(ddof=1) / np.sqrt(len(diff))),
                                                   "lower_in": int((diff < 0).sum()), "higher_in": int((diff > 0).sum())}
    print(json.dumps(summary, indent=1))
    if a.out is not None:
        write_result(a.out, {"summary": summary, "runs": rows})


if __name__ == "__main__":
    main()
