"""A search space archlab has never seen: build its latency table, calibrate and validate, in one run.

Writes a small space (different widths, resolution and choices from the shipped ones), times
every distinct block on the backend, fits the overhead term on calibration models, then
validates on sampled models each timed twice (test-retest), and prints the acceptance
figures: share within +-10% and +-5%, RMSPE against the re-measurement's, Spearman, each
beside the FLOPs baseline's. Everything lands in ``--work`` as it is measured (rerun to
resume).

Two calibrations are scored on the same validation timings: the table's own (its
calibration models timed right after the blocks, as ``table build`` does: ``sequential``)
and a refit on the same calibration models timed again in the validation's interleaved
passes (``table validate --recalibrate``: ``joint``). The first is what a user gets; the
second takes out what the host's speed drifted between calibration and validation. The
top-level figures are the joint ones (``--protocol sequential`` makes them the sequential
ones, as runs before 2026-11-25 were); both are in the JSON.

    .venv/bin/python -m benchmarks.latency.latency_unseen_space --backend torch-cpu --samples 30 --out benchmarks/results/latency_unseen_torch-cpu.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import yaml

from archlab.cost.backends import get_backend
from archlab.cost.table import CALIBRATION_MODELS, MAX_PASSES
from archlab.tables import (
    calibrate,
    measure_blocks,
    open_for_build,
    sample_table_models,
    stored_calibration,
    validate,
)
from archlab.tables.sources import source_specs
from benchmarks.common import write_result

SPACE = {
    "name": "unseen",
    "base": {"in_channels": 4, "out_channels": 4, "text_dim": 512, "text_tokens": 32, "resolution": 32},
    "depth": [2, 3],
    "levels": [
        {"channels": [128, 192], "down_resnets": [1, 2], "down_layers": [0, 1], "up_layers": [0, 1], "self_attention": [False, True]},
        {"channels": [256, 384], "down_resnets": [1, 2], "down_layers": [0, 1, 2], "up_layers": [0, 1, 2],
         "separable": [False, True]},
        {"channels": [512, 768], "down_resnets": [1], "down_layers": [1, 2], "up_layers": [1, 2], "separable": [False, True]},
    ],
    "mid": {"layers": [0, 1, 3], "separable": [False, True]},
    "transformer": {"ff": ["geglu", "gelu"], "ff_ratio": [2, 4], "shared_kv": [False, True], "head_dim": [64]},
}


def write_space(work: Path, source: Path | None = None) -> tuple[Path, dict]:
    """The space as a YAML file in ``work`` (made if missing), as archlab reads a user's, and its contents.

    ``source``: another space file to run instead of the built-in one (copied, so the work
    folder holds what was timed).
    """
    work.mkdir(parents=True, exist_ok=True)
    space = SPACE if source is None else yaml.safe_load(source.read_text())
    space_file = work / ("unseen.yaml" if source is None else source.name)
    space_file.write_text(yaml.safe_dump(space, sort_keys=False) if source is None else source.read_text())
    return space_file, space


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--space", type=Path, default=None,
                   help="a space file to run instead of the built-in one (e.g. benchmarks/latency/spaces/fresh_2026-12-04.yaml)")
    p.add_argument("--backend", default="torch-cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--samples", type=int, default=30)
    p.add_argument("--calibrate", type=int, default=CALIBRATION_MODELS, help="calibration models (table build's default)")
    p.add_argument("--validation-seed", type=int, default=1, help="which models validate (another seed: another sample)")
    p.add_argument("--cold", action="store_true", help="time blocks with cold caches")
    p.add_argument("--allocator", choices=("steady", "system"), default=None, help="the backend's default unless given")
    p.add_argument("--passes", type=int, default=2,
                   help="times each validation model is timed, interleaved (a rerun with more adds passes to the stored ones)")
    p.add_argument("--settle", type=float, default=0.0,
                   help="time a validation model again while its two fastest passes differ by more than this share (table validate --settle)")
    p.add_argument("--max-passes", type=int, default=MAX_PASSES, help="with --settle: the most passes a model gets")
    p.add_argument("--protocol", choices=("joint", "sequential"), default="joint",
                   help="joint: calibration models timed again in the validation's passes (see above)")
    p.add_argument("--work", type=Path, default=Path("out/unseen"))
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args()
    space_file, space = write_space(a.work, a.space)
    start = time.perf_counter()
    specs, spaces, _ = source_specs([str(space_file)])
    backend = get_backend(a.backend, threads=a.threads, warmup=2, repeats=8, cold=a.cold, workdir=a.work / f"{a.backend}.work",
                          allocator=a.allocator)
    table = open_for_build(str(a.work / f"{a.backend}.csv"), backend, dtype="float32", batch=1,
                           extra={"text_tokens": space["base"]["text_tokens"], "sources": [str(space_file)]})
    measure_blocks(table, backend, specs)
    built = time.perf_counter()
    sequential_fit = a.work / f"{a.backend}.sequential-overhead.json"  # the build's own fit, kept for rescoring
    if not sequential_fit.exists():
        if len((table.metadata.get("overhead") or {}).get("models", [])) != a.calibrate:
            calibrate(table, backend, sample_table_models(table, n=a.calibrate, seed=0, pick="spread"), seed=0)  # as `table build` does
        sequential_fit.write_text(json.dumps(table.metadata["overhead"]))
    calibrated = time.perf_counter()
    descs = sample_table_models(table, n=a.samples, seed=a.validation_seed)
    validator = get_backend(a.backend, threads=a.threads, warmup=1, repeats=3, cold=False, workdir=a.work / f"{a.backend}.vwork",
                            allocator=a.allocator)
    table.metadata["overhead"] = json.loads(sequential_fit.read_text())  # a rerun starts from the build's fit again
    result = validate(table, validator, descs, seed=a.validation_seed, timings_path=a.work / f"{a.backend}.timings.json",
                      passes=a.passes, recalibrate=stored_calibration(table)[0] if a.protocol == "joint" else (),
                      settle=a.settle, max_passes=a.max_passes).to_dict()
    if a.protocol == "joint":
        result["sequential"] = result.pop("as_stored")  # the build's fit scored on the same timings
    result["protocol"] = a.protocol
    done = time.perf_counter()
    result.update({"space": space, "distinct_blocks": len(specs), "architectures": spaces[0].size(),
                   "overhead": {k: v for k, v in table.metadata["overhead"].items() if k != "models"},
                   "minutes": {"build": round((built - start) / 60, 1), "calibrate": round((calibrated - built) / 60, 1),
                               "validate": round((done - calibrated) / 60, 1)}})
    figures = ("within_10", "within_5", "rmspe", "spearman", "mean_error", "flops_within_10", "flops_within_5", "flops_rmspe",
               "flops_spearman")
    summary = {k: result[k] for k in ("protocol", "samples", *figures, "retest_within_10", "retest_within_5", "retest_rmspe",
                                      "rmspe_over_retest", "truth_spread", "overhead_form", "distinct_blocks", "minutes")}
    if "sequential" in result:
        summary["sequential"] = {k: result["sequential"][k] for k in (*figures, "rmspe_over_retest", "overhead_form")}
    print(json.dumps(summary, indent=2))
    if a.out is not None:
        write_result(a.out, result)
    backend.close()
    validator.close()


if __name__ == "__main__":
    main()
