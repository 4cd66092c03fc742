"""Where the table's error on the unseen space comes from, replayed offline over the kept runs.

Every ``latency_unseen_space.py`` run builds its own table of the same 240 blocks, so the
runs together say how much of one run's error is its own block timings and how much is a
term the overhead fit lacks. Three checks, nothing timed, each on every run's stored
validation timings with the overhead refitted on its calibration models (timed in the same
passes, as the joint protocol does):

- consensus blocks: each block's time replaced by its median over the *other* runs (each
  run's times first divided by that run's overall speed). If a run's block timings were the
  main error, this would predict its validation better.
- a per-block term: ``intercept + scale x block sum + c x number of blocks`` against the
  plain sum, fitted on the 8 calibration models (held-out RMSPE on the 30) and on the 30
  themselves (in-sample: what the term could give at best), and whether the form rule
  (``choose_form``: a richer form only when its leave-one-out squared errors are lower by
  more than 2 paired se) would have picked it.
- more calibration models: the same two forms fitted on the 8 calibration models plus half
  of the 30 validation models (timed in the same passes), scored on the other half, then the
  halves swapped (every validation model predicted once by a fit without it): would 23
  calibration models make the per-block term pay, and would the rule pick it then?

    .venv/bin/python -m benchmarks.latency.unseen_error_sources --runs 1-25 \
        --out benchmarks/results/unseen_error_sources/unseen_error_sources_torch-cpu.json

Work folders ``out/unseen-joint-N`` must still hold each run's table and timings.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from archlab.cost.predict import Predictor
from archlab.cost.table import RICHER_FORM_SE, LatencyTable
from archlab.tables import ModelTimings, refit, score, store_fit, stored_calibration
from benchmarks.common import write_result


def run_numbers(text: str) -> list[int]:
    first, _, last = text.partition("-")
    return list(range(int(first), int(last or first) + 1))


def refit_and_score(table: LatencyTable, calib: list, truths: list[float], timings: ModelTimings, descs: list,
                    *, seed: int) -> tuple[dict, str]:
    """The overhead fitted again, by the table's own rule, on ``calib`` timed at ``truths``, and
    ``descs`` scored under it (on a scratch copy: store_fit saves, the run's table stays as it
    is); with the form the rule picked."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = LatencyTable(Path(tmp) / "copy.csv", json.loads(json.dumps(table.metadata)), table.rows.copy())
        store_fit(copy, calib, truths, seed=0)
        return score(copy, timings, descs, seed=seed).to_dict(), copy.metadata["overhead"]["form"]


def relative_fit(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least squares on relative errors, as the table's own overhead fit."""
    coef, *_ = np.linalg.lstsq(x / y[:, None], np.ones(len(y)), rcond=None)
    return coef


def rmspe(x: np.ndarray, coef: np.ndarray, y: np.ndarray) -> float:
    return float(np.sqrt(np.mean((x @ coef / y - 1) ** 2)))


def loo_errors(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    keep = ~np.eye(len(y), dtype=bool)
    return np.array([x[i] @ relative_fit(x[keep[i]], y[keep[i]]) / y[i] - 1 for i in range(len(y))])


def rule_picks_count(x: np.ndarray, y: np.ndarray) -> bool:
    """Whether the form rule (as ``choose_form``) would take the per-block term over the plain sum."""
    gain = loo_errors(x[:, :2], y) ** 2 - loo_errors(x, y) ** 2
    return bool(gain.mean() > RICHER_FORM_SE * gain.std(ddof=1) / np.sqrt(len(gain)))


def run_arguments(doc: str | None, *, runs: str, work: str) -> argparse.Namespace:
    """``--runs``, ``--backend``, ``--work`` and ``--out`` of the scripts that replay unseen-space runs."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", default=runs, help=f"validation seeds of the runs, e.g. {runs}")
    p.add_argument("--backend", default="torch-cpu")
    p.add_argument("--work", default=work, help="each run's work folder ({n}: its seed)")
    p.add_argument("--out", type=Path, default=None)
    return p.parse_args()


def main() -> None:
    a = run_arguments(__doc__, runs="1-25", work="out/unseen-joint-{n}")
    runs = run_numbers(a.runs)
    tables = {n: LatencyTable.load(Path(a.work.format(n=n)) / f"{a.backend}.csv") for n in runs}
    keys = sorted(tables[runs[0]].rows.key)
    stat = f"{tables[runs[0]].statistic}_ms"
    times = pd.DataFrame({n: t.rows.set_index("key").loc[keys, stat] for n, t in tables.items()})
    speed = np.exp(np.log(times.div(times.median(axis=1), axis=0)).median())  # each run's overall block speed
    normalised = times.div(speed, axis=1)
    rows = []
    for n in runs:
        work = Path(a.work.format(n=n))
        result = json.loads(Path(f"benchmarks/results/latency_unseen_{a.backend}_joint_{n}.json").read_text())
        timings = ModelTimings.stored(json.loads((work / f"{a.backend}.timings.json").read_text()))
        descs = [timings.description(m["name"]) for m in result["models"]]
        own = tables[n]
        consensus_rows = own.rows.set_index("key")
        consensus_rows.loc[keys, stat] = (normalised.drop(columns=n).median(axis=1) * speed[n]).loc[keys].values
        with tempfile.TemporaryDirectory() as tmp:
            consensus = LatencyTable(Path(tmp) / "consensus.csv", json.loads(json.dumps(own.metadata)),
                                     consensus_rows.reset_index())
            consensus.save()
            consensus = LatencyTable.load(consensus.path)
            refit(consensus)  # on the same calibration timings
            consensus_rmspe = score(consensus, timings, descs, seed=n).table.rmspe

        predictor = Predictor([own], check_device=False)

        def features(d):
            c = predictor.breakdown(d)
            return [1.0, c.block_sum_ms[own.label], float(len(c.blocks))]

        calib, calib_ms = stored_calibration(own)
        xc, yc = np.array([features(d) for d in calib]), np.array(calib_ms)
        xv, yv = np.array([features(d) for d in descs]), np.array([m["measured_ms"] for m in result["models"]])
        count_fit, count_in = relative_fit(xc, yc), relative_fit(xv, yv)
        half = np.arange(len(yv)) % 2  # the held-out half each validation model is in
        sum_23, count_23 = np.empty(len(yv)), np.empty(len(yv))
        picks_23 = []
        for k in (0, 1):
            held = half == k
            xf, yf = np.vstack([xc, xv[~held]]), np.concatenate([yc, yv[~held]])
            sum_23[held] = xv[held][:, :2] @ relative_fit(xf[:, :2], yf) / yv[held] - 1
            count_23[held] = xv[held] @ relative_fit(xf, yf) / yv[held] - 1
            picks_23.append(rule_picks_count(xf, yf))
        rule_23 = np.where(np.array(picks_23)[half], count_23, sum_23)
        rows.append({
            "run": n, "retest_rmspe": result["retest_rmspe"], "block_speed": round(float(speed[n]), 4),
            "block_dispersion": round(float(np.sqrt(np.mean(np.log(normalised[n] / normalised.median(axis=1)) ** 2))), 4),
            "rmspe": result["rmspe"], "consensus_rmspe": consensus_rmspe,
            "sum_held_out": rmspe(xv[:, :2], relative_fit(xc[:, :2], yc), yv), "count_held_out": rmspe(xv, count_fit, yv),
            "sum_in_sample": rmspe(xv[:, :2], relative_fit(xv[:, :2], yv), yv), "count_in_sample": rmspe(xv, count_in, yv),
            "count_ms_per_block": float(count_fit[2]), "count_ms_per_block_in_sample": float(count_in[2]),
            "rule_picks_count": rule_picks_count(xc, yc),
            "sum_held_out_23": float(np.sqrt(np.mean(sum_23 ** 2))), "count_held_out_23": float(np.sqrt(np.mean(count_23 ** 2))),
            "rule_23_held_out": float(np.sqrt(np.mean(rule_23 ** 2))), "rule_23_picks_count": sum(picks_23)})
    df = pd.DataFrame(rows)
    pd.set_option("display.width", 200)
    shown = df.drop(columns=["block_speed"]).copy()
    for c in shown.columns:
        if c not in ("run", "rule_picks_count", "count_ms_per_block", "count_ms_per_block_in_sample", "rule_23_picks_count"):
            shown[c] = (100 * shown[c]).round(2)
    print(shown.round(3).to_string(index=False))
    quiet = df.retest_rmspe <= 0.035

    def better(frame: pd.DataFrame, new: str, old: str) -> str:
        return f"{int((frame[new] < frame[old]).sum())}/{len(frame)}"

    summary = {
        "runs": len(df), "quiet_runs": [int(r) for r in df.run[quiet]],
        "consensus_better": better(df, "consensus_rmspe", "rmspe"),
        "median_rmspe": float(df.rmspe.median()), "median_consensus_rmspe": float(df.consensus_rmspe.median()),
        "count_better_held_out": better(df, "count_held_out", "sum_held_out"),
        "count_better_held_out_quiet": better(df[quiet], "count_held_out", "sum_held_out"),
        "median_quiet_sum_held_out": float(df.sum_held_out[quiet].median()),
        "median_quiet_count_held_out": float(df.count_held_out[quiet].median()),
        "count_ms_per_block_in_sample_quiet": [round(float(v), 2) for v in df.count_ms_per_block_in_sample[quiet]],
        "rule_picks_count": [int(r) for r in df.run[df.rule_picks_count]],
        "rule_pick_held_out": {int(r.run): {"sum": r.sum_held_out, "count": r.count_held_out}
                               for r in df[df.rule_picks_count].itertuples()},
        "count_better_held_out_23": better(df, "count_held_out_23", "sum_held_out_23"),
        "count_better_held_out_23_quiet": better(df[quiet], "count_held_out_23", "sum_held_out_23"),
        "median_sum_held_out_23": float(df.sum_held_out_23.median()),
        "median_count_held_out_23": float(df.count_held_out_23.median()),
        "median_quiet_sum_held_out_23": float(df.sum_held_out_23[quiet].median()),
        "median_quiet_count_held_out_23": float(df.count_held_out_23[quiet].median()),
        "rule_23_picks_count_halves": int(df.rule_23_picks_count.sum()),
        "rule_23_better": better(df, "rule_23_held_out", "sum_held_out_23"),
        "rule_23_worse": better(df, "sum_held_out_23", "rule_23_held_out"),
        "median_rule_23_held_out": float(df.rule_23_held_out.median()),
    }
    print(json.dumps(summary, indent=1))
    if a.out is not None:
        write_result(a.out, {"summary": summary, "runs": rows})


if __name__ == "__main__":
    main()
