"""Do two evolving searches with different training seeds judge the blocks alike?

Reads the ``log.json`` of two ``archlab evolve`` runs of the same file (``--seed 0`` and
``--seed 1``) and compares their first iteration, where both judge the same architecture:
Kendall tau between the two runs' Delta-quality over every removable block, how many
blocks each run finds beyond its noise (and with which sign), and whether the two agree on
those. Then both runs' actions side by side, and for every removal the decision's margin:
the chosen block against the runner-up in the removal order, as the difference of their
quality-lost per ms saved in standard errors (the two Deltas' errors combined as if
independent). A margin under 2 means a rerun could as well take the runner-up: from there
on the two searches need not take the same blocks.

    archlab evolve studies/evolve-quickstart.yaml --seed 0 --threads 1 --out out/evolve-s0   # and --seed 1 beside it
    .venv/bin/python -m benchmarks.search.evolve_seeds out/evolve-s0 out/evolve-s1 --out benchmarks/results/evolve_seeds/evolve_seeds.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from scipy.stats import kendalltau

from benchmarks.common import write_result


def first_iteration(folder: Path) -> dict[str, dict[str, Any]]:
    log = json.loads((folder / "log.json").read_text())
    return {c["block"]: c for c in log["iterations"][0]["candidates"]}


def sign(c: dict[str, Any]) -> int:
    """+1: losing the block costs quality beyond noise; -1: losing it helps beyond noise; 0: within noise."""
    return 0 if c["within_noise"] else (1 if c["delta_quality"] > 0 else -1)


def blocks_of(log: dict[str, Any]) -> list[str]:
    return [x["block"] for x in log["actions"] if "block" in x]


def effective(c: dict[str, Any]) -> float:
    """Quality lost per ms saved, as evolve ranks removals (a Delta within noise counts as 0)."""
    return (0.0 if c["within_noise"] else c["delta_quality"]) / c["delta_latency_ms"]


def margins(log: dict[str, Any]) -> list[dict[str, Any]]:
    """Each removal iteration's chosen block against the runner-up of the removal order."""
    out = []
    for it in log["iterations"]:
        removed = [a["block"] for a in it["actions"] if a["action"] == "remove"]
        rows = sorted((c for c in it["candidates"] if c["delta_latency_ms"] > 0),
                      key=lambda c: (effective(c), -c["delta_latency_ms"], c["block"]))
        if not removed or len(rows) < 2:
            continue
        chosen = next(c for c in rows if c["block"] == removed[-1])
        runner = next(c for c in rows if c["block"] not in removed)
        se = ((chosen["delta_quality_se"] / chosen["delta_latency_ms"]) ** 2
              + (runner["delta_quality_se"] / runner["delta_latency_ms"]) ** 2) ** 0.5
        gap = effective(runner) - effective(chosen)
        out.append({"iteration": it["iteration"], "chosen": chosen["block"], "runner_up": runner["block"],
                    "chosen_delta": [chosen["delta_quality"], chosen["delta_quality_se"], chosen.get("items")],
                    "runner_up_delta": [runner["delta_quality"], runner["delta_quality_se"], runner.get("items")],
                    "margin_z": gap / se if se else float("inf")})
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("runs", nargs=2, type=Path)
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args()
    first = [first_iteration(r) for r in a.runs]
    blocks = sorted(set(first[0]) & set(first[1]))
    d0 = [first[0][b]["delta_quality"] for b in blocks]
    d1 = [first[1][b]["delta_quality"] for b in blocks]
    signs = [(sign(first[0][b]), sign(first[1][b])) for b in blocks]
    logs = [json.loads((r / "log.json").read_text()) for r in a.runs]
    result = {
        "runs": [str(r) for r in a.runs],
        "blocks": len(blocks),
        "tau_first_iteration_delta_quality": float(kendalltau(d0, d1).statistic),
        "beyond_noise_costly": [sum(s[i] == 1 for s in signs) for i in (0, 1)],
        "beyond_noise_helpful": [sum(s[i] == -1 for s in signs) for i in (0, 1)],
        "within_noise": [sum(s[i] == 0 for s in signs) for i in (0, 1)],
        "same_verdict": sum(x == y for x, y in signs),
        "opposite_verdicts_beyond_noise": sum(x * y == -1 for x, y in signs),
        # the two seeds' Deltas of a block differ by more than their measurement errors allow:
        # the training seed, not the measurement, moves that block's value
        "seeds_differ_beyond_2se": [b for b in blocks if abs(first[0][b]["delta_quality"] - first[1][b]["delta_quality"])
                                    > 2 * (first[0][b]["delta_quality_se"] ** 2 + first[1][b]["delta_quality_se"] ** 2) ** 0.5],
        "first_iteration": {b: {"delta_quality": [first[i][b]["delta_quality"] for i in (0, 1)],
                                "se": [first[i][b]["delta_quality_se"] for i in (0, 1)],
                                "verdict": list(s), "delta_latency_ms": first[0][b]["delta_latency_ms"]}
                            for b, s in zip(blocks, signs)},
        "actions": [[(x["iteration"], x["action"], x["block"]) for x in log["actions"] if "block" in x] for log in logs],
        "first_three": [[{"block": x["block"], "delta_quality": x["delta_quality"], "se": x["delta_quality_se"],
                          "z": x["delta_quality"] / x["delta_quality_se"] if x["delta_quality_se"] else 0.0,
                          "items": x.get("items"), "beyond_noise": not x["within_noise"], "delta_latency_ms": x["delta_latency_ms"]}
                         for x in log["actions"] if "block" in x][:3] for log in logs],
        "first_three_same_blocks": blocks_of(logs[0])[:3] == blocks_of(logs[1])[:3],
        "first_three_same_set": len({frozenset(blocks_of(log)[:3]) for log in logs}) == 1,
        "margins": [margins(log) for log in logs],
        "final_latency_ms": [log.get("final_latency_ms") for log in logs],
        "finished": [log.get("finished", True) for log in logs],
        "seconds": [log["seconds"] for log in logs],
    }
    print(json.dumps({k: v for k, v in result.items() if k != "first_iteration"}, indent=1))
    if a.out is not None:
        write_result(a.out, result)


if __name__ == "__main__":
    main()
