"""Pool runs of the noise-aware simulation that differ only in their worlds into one summary.

Each file must come from ``benchmarks/search/noise_aware.py`` with the same calibration, budget and
racing settings and disjoint worlds; their per-world hypervolumes are joined and summarised as one
run (``summarise``: medians, quartiles, paired differences with a bootstrap interval). Refuses files
that differ in anything but their worlds, in one line, exit 2.

    .venv/bin/python -m benchmarks.search.noise_aware_pool \\
        benchmarks/results/noise_aware/confirm18_first_look50_ms1.json \\
        benchmarks/results/noise_aware/confirm18b_first_look50_ms1_w160-239.json \\
        --out benchmarks/results/noise_aware/confirm18_pooled_first_look50_ms1.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path
from typing import Any

from benchmarks.common import write_result
from benchmarks.search.noise_aware import summarise

SAME = ("calibration", "budget", "max_seeds", "z", "first_look_z")


def pool(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One summary of ``runs`` (ValueError naming what differs, or overlapping worlds)."""
    first = runs[0]
    for run in runs[1:]:
        for key in SAME:
            if run.get(key) != first.get(key):
                raise ValueError(f"{key} differs between the runs; pool only runs that differ in their worlds")
        if set(run["per_world"]) != set(first["per_world"]):
            raise ValueError("the runs compare different methods")
    spans = sorted(tuple(r["worlds"]) for r in runs)
    for (_, end), (start, _) in itertools.pairwise(spans):
        if start <= end:
            raise ValueError(f"worlds overlap ({spans}); each world may be counted once")
    results = {m: [v for r in runs for v in r["per_world"][m]] for m in first["per_world"]}
    return {"benchmark": "noise_aware", **{k: first.get(k) for k in SAME}, "worlds": [list(s) for s in spans],
            "summary": summarise(results), "per_world": results}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", type=Path, nargs="+")
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args()
    try:
        out = pool([json.loads(path.read_text()) for path in a.runs])
    except (ValueError, OSError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2)
    print(json.dumps(out["summary"], indent=1))
    write_result(a.out, out)


if __name__ == "__main__":
    main()
