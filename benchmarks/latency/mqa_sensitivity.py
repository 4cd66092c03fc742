"""What the multi-query lowering fix does to the LiteRT SnapGen table's validation, bounded from measurements.

``xeon-2core-snapgen_litert`` timed its multi-query blocks, and its validation timed its whole models, with
key/value heads shared by ``expand`` (the graph litert-torch 0.10 converted wrongly). archlab now exports the
concatenated form, which ``benchmarks.latency.mqa_lowering`` timed against the old one on the same host
(concat / expand, per block and for the whole preset). Its host is not at hand to re-time the table, so this
asks how the validation's figures would read if each validated model's multi-query blocks ran ``r`` times as
long, for the ratios that run measured (the fastest block, their mean, the slowest, and 1 for the table as
validated), and how far that ratio could go before a goal fails: the new graph's time of a model is taken as its measured time less ``(1 - r)`` x its multi-query
blocks' share of the table's prediction (block figures x the fit's scale). The table's predictions are
unchanged (it keeps the old graph's figures). A bound from measured ratios, not a measurement of new models.

    .venv/bin/python -m benchmarks.latency.mqa_sensitivity --out benchmarks/results/mqa_lowering/mqa_sensitivity.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np

from archlab.arch.description import TransformerBlock
from archlab.arch.reading import description_from_dict
from archlab.cost.predict import Predictor
from archlab.cost.table import LatencyTable, latency_kind
from archlab.tables import GOALS, accuracy
from benchmarks.common import write_result

RESULTS = Path(__file__).resolve().parents[1] / "results"
VALIDATION = RESULTS / "table_validations/validate_xeon-2core-snapgen_litert_seed111_recalibrate.json"
TABLE = "xeon-2core-snapgen_litert"
LOWERING = RESULTS / "mqa_lowering/mqa_lowering.json"


def sensitivity() -> dict:
    """The validation's figures under each measured ratio, and the first ratios either way at which a goal fails."""
    validation = json.loads(VALIDATION.read_text())
    descriptions = json.loads(VALIDATION.with_name(VALIDATION.stem + ".timings.json").read_text())["models"]
    table = LatencyTable.load(TABLE)
    predictor = Predictor([table], check_device=False)
    scales = table.overhead.scales
    lowering = json.loads(LOWERING.read_text())["summary"]["litert"]["block_ratio_concat_over_expand"]
    ratios = {"as validated": 1.0, "slowest block": lowering["max"], "mean block": lowering["mean"], "fastest block": lowering["min"]}

    measured, predicted, mqa_ms, shares = [], [], [], []
    for m in validation["models"]:
        count = predictor.breakdown(description_from_dict(descriptions[m["name"]]["description"]))
        mqa = sum(scales[latency_kind(b.site.block.kind)] * b.ms[table.label] for b in count.blocks
                  if isinstance(b.site.block, TransformerBlock) and b.site.block.kv_heads == 1)
        if abs(count.latency_ms[table.label] - m["predicted_ms"]) > 1e-3 * m["predicted_ms"]:
            raise SystemExit(f"error: {m['name']}: the shipped table predicts {count.latency_ms[table.label]:.1f} ms, "
                             f"the validation {m['predicted_ms']:.1f}: they are not the same table")
        measured.append(m["measured_ms"])
        predicted.append(m["predicted_ms"])
        mqa_ms.append(mqa)
        shares.append(mqa / m["predicted_ms"])
    measured_a, predicted_a, mqa_a = map(np.array, (measured, predicted, mqa_ms))
    retest = validation["retest_rmspe"]
    rows = {}
    for label, r in ratios.items():
        f = accuracy(predicted_a, measured_a - (1 - r) * mqa_a)
        rows[label] = {"ratio": r, **{k: round(v, 4) for k, v in f.items()}, "rmspe_over_retest": round(f["rmspe"] / retest, 3)}
    goals = dataclasses.asdict(GOALS)

    def meets(r: float) -> bool:
        f = accuracy(predicted_a, measured_a - (1 - r) * mqa_a)
        return f["within_10"] >= GOALS.within_10 and f["rmspe"] <= GOALS.rmspe_over_retest * retest and f["spearman"] >= GOALS.spearman

    # how far the multi-query blocks could move, all alike, before a goal fails (steps of 0.01 each way)
    lowest = next((round(1 - i / 100, 2) for i in range(1, 100) if not meets(1 - i / 100)), None)
    highest = next((round(1 + i / 100, 2) for i in range(1, 300) if not meets(1 + i / 100)), None)
    out = {"benchmark": "mqa_sensitivity", "table": TABLE, "validation": str(VALIDATION.relative_to(RESULTS.parent.parent)),
           "lowering": str(LOWERING.relative_to(RESULTS.parent.parent)),
           "models": len(measured), "models_with_multi_query": int(np.sum(mqa_a > 0)),
           "multi_query_share_of_prediction": {"median": round(float(np.median(shares)), 4), "max": round(float(np.max(shares)), 4)},
           "retest_rmspe": retest, "goals": goals, "by_ratio": rows,
           "first_failing_ratio": {"below": lowest, "above": highest}}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=RESULTS / "mqa_lowering/mqa_sensitivity.json")
    a = p.parse_args()
    out = sensitivity()
    print(json.dumps(out, indent=1))
    write_result(a.out, out)


if __name__ == "__main__":
    main()
