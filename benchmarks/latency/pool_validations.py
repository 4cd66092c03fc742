"""Score several validations of one table together: more models, smaller standard errors.

Thirty models cannot tell two good predictors apart on every figure (a Spearman difference
of 0.02 has a bootstrap se near 0.02 there). This pools the validation models of several
``table validate`` runs, each from its stored timings (``RESULT.timings.json`` beside the
result), and scores them all under the table as it is now, exactly as ``table validate``
scores one run: the table, the FLOPs baseline fitted on its calibration models, test-retest,
paired bootstrap. Nothing is timed; each run's predictions are first recomputed and checked
against the ones it stored, so only runs of the same fit are pooled.

    .venv/bin/python -m benchmarks.latency.pool_validations --table latency_tables/x86-2core_torch-cpu.csv \
        benchmarks/results/table_validations/validate_torch-cpu.json benchmarks/results/table_validations/validate_torch-cpu_seed31_recalibrate.json:as_stored \
        --out benchmarks/results/pool_validations/validate_torch-cpu_pooled.json

``RESULT:as_stored`` takes a ``--recalibrate`` run's figures under the fit the table had.
``--refitted`` scores runs timed under an earlier fit of the same blocks under the table's fit
now (an out-of-sample test of a refit: its calibration models are none of these runs' models).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from archlab.cost.predict import Predictor
from archlab.cost.table import LatencyTable
from archlab.tables import FIGURES, ModelTimings, score
from benchmarks.common import write_result


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--table", required=True, help="the table every run validated (file or shipped name)")
    p.add_argument("results", nargs="+", help="table validate --out files; RESULT:as_stored for a --recalibrate run's old fit")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--refitted", action="store_true",
                   help="the runs were scored under an earlier overhead fit: score them under the table's fit now")
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args()
    table = LatencyTable.load(a.table)
    predictor = Predictor([table], check_device=False)
    merged = {"runtime": None, "device": None, "models": {}}
    names, runs = [], []
    for spec in a.results:
        path, _, part = spec.partition(":")
        result = json.loads(Path(path).read_text())
        rows = (result[part] if part else result)["models"]
        stored = json.loads(Path(path).with_suffix(".timings.json").read_text())
        for key in ("runtime", "device"):
            if merged[key] not in (None, stored[key]):
                raise SystemExit(f"{path}: timed on {stored[key]}, the others on {merged[key]}")
            merged[key] = stored[key]
        for row in rows:
            if row["name"] in merged["models"]:
                raise SystemExit(f"{path}: model {row['name']} is in two runs")
            merged["models"][row["name"]] = stored["models"][row["name"]]
            names.append(row["name"])
        runs.append({"result": spec, "models": len(rows)})
        clash = {r["name"] for r in rows} & {m.get("name") for m in table.meta.calibration_models}
        if clash:
            raise SystemExit(f"{spec}: {sorted(clash)[0]} is one of the table's calibration models: not a test of its fit")
        # the same fit: this run's stored predictions are what the table predicts now
        timings = ModelTimings.stored(merged)
        off = max(abs(predictor.breakdown(timings.description(r["name"])).latency_ms[table.label] - r["predicted_ms"])
                  / r["predicted_ms"] for r in rows)
        if off > 1e-4 and not a.refitted:
            raise SystemExit(f"{spec}: its predictions differ from the table's now by up to {off:.2%}: another fit; not pooled")
    timings = ModelTimings.stored(merged)
    result = score(table, timings, [timings.description(n) for n in names], seed=a.seed).to_dict()
    result["runs"] = runs
    print(json.dumps({k: result[k] for k in ("samples", *FIGURES, *(f"flops_{k}" for k in FIGURES),
                                             *(f"retest_{k}" for k in ("within_10", "within_5", "rmspe")),
                                             "rmspe_over_retest", "table_minus_flops", "table_closer", "runs")}, indent=2))
    if a.out is not None:
        write_result(a.out, result)


if __name__ == "__main__":
    main()
