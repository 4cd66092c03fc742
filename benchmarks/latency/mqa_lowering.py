"""How much the multi-query lowering fix moves latency: the SnapGen preset's multi-query blocks, and the whole
preset, timed with key/value heads shared by ``expand`` (how the shipped SnapGen tables were timed; litert-torch
0.10 converts it wrongly) and by concatenation (``archlab.arch.modules.share_kv_heads`` now), interleaved in one run.

On LiteRT the old graph computed the wrong thing; this says whether it also cost a different time, i.e. whether
the shipped ``xeon-2core-snapgen_litert`` table's multi-query blocks still hold for the correct graph. The same
is done on torch-cpu, where both forms compute the same and only their speed can differ.

    .venv/bin/python -m benchmarks.latency.mqa_lowering --out benchmarks/results/mqa_lowering/mqa_lowering.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from statistics import fmean
from typing import Any

import numpy as np
import torch

from archlab import preset
from archlab.arch import modules
from archlab.arch.description import TransformerBlock
from archlab.cost.backends import get_backend
from archlab.cost.keys import distinct_specs
from archlab.tables.timing import time_model
from benchmarks.common import write_result

FORMS = {
    "expand": lambda t, heads: t[:, :, None].expand(t.shape[0], t.shape[1], heads // t.shape[1], t.shape[2], t.shape[3])
    .reshape(t.shape[0], heads, t.shape[2], t.shape[3]),
    "concat": modules.share_kv_heads,
}


def mqa_specs() -> dict[str, Any]:
    """The preset's distinct multi-query transformer blocks, by key."""
    return {k: s for k, s in distinct_specs([preset("snapgen")]).items()
            if isinstance(s.block, TransformerBlock) and s.block.kv_heads is not None}


def spread(times: list[float]) -> float:
    """A form's second fastest pass over its fastest, less one: the host's repeatability."""
    fastest, second = sorted(times)[:2]
    return second / fastest - 1


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runtimes", default="litert,torch-cpu")
    p.add_argument("--passes", type=int, default=3)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--whole", action=argparse.BooleanOptionalAction, default=True, help="also time the whole preset")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/mqa_lowering/mqa_lowering.json"))
    a = p.parse_args()
    specs = mqa_specs()
    rng = np.random.default_rng(0)
    times: dict[str, dict[str, dict[str, list[float]]]] = {}
    for runtime in a.runtimes.split(","):
        backend = get_backend(runtime, threads=2)
        items = [(key, form) for key in [*specs, *(["whole:snapgen"] if a.whole else [])] for form in FORMS]
        for pass_ in range(a.passes):
            for i in rng.permutation(len(items)):
                key, form = items[int(i)]
                modules.share_kv_heads = FORMS[form]
                name = f"{form}-{abs(hash(key)) % 10**8}"
                if key.startswith("whole:"):
                    t = time_model(backend, preset("snapgen"), batch=1, repeats=a.repeats)
                    backend.discard_converted("model-snapgen")
                else:
                    spec = specs[key]
                    with torch.no_grad():
                        t = backend.measure(backend.prepare(spec.module(), spec.inputs(), name=name), repeats=a.repeats)
                    if pass_ == a.passes - 1:
                        backend.discard_converted(name)
                times.setdefault(runtime, {}).setdefault(key, {}).setdefault(form, []).append(round(t.min_ms, 3))
                print(json.dumps({"runtime": runtime, "pass": pass_, "form": form, "key": key[:60], "min_ms": round(t.min_ms, 2)}), flush=True)
    modules.share_kv_heads = FORMS["concat"]
    summary = {}
    for runtime, by_key in times.items():
        ratios = {k: min(v["concat"]) / min(v["expand"]) for k, v in by_key.items()}
        blocks = [r for k, r in ratios.items() if not k.startswith("whole:")]
        summary[runtime] = {"block_ratio_concat_over_expand": {"mean": round(fmean(blocks), 4), "min": round(min(blocks), 4),
                                                               "max": round(max(blocks), 4), "blocks": len(blocks)},
                            "whole_ratio_concat_over_expand": round(ratios["whole:snapgen"], 4) if "whole:snapgen" in ratios else None,
                            # the host's own repeatability: a form's fastest pass against its second fastest
                            "retest_spread": round(fmean(spread(x) for v in by_key.values() for x in v.values()), 4)}
    print(json.dumps(summary, indent=1))
    write_result(a.out, {"benchmark": "mqa_lowering", "passes": a.passes, "repeats": a.repeats, "summary": summary, "times_ms": times})


if __name__ == "__main__":
    main()
