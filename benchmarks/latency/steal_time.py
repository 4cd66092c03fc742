"""Did the hypervisor take the CPU when a validation's passes disagreed? Steal time beside each pass.

A shared VM's slow spells could be the hypervisor descheduling us (``steal`` in /proc/stat)
or something it does not count (a neighbour's memory traffic, clock changes). This reads a
log of /proc/stat's first line, sampled once a second beside a run, and a validation's stored
timings, and reports for each model its pass-to-pass ratio (slowest over fastest pass) beside
the steal seconds in the few seconds before each pass was stored. Timing nothing itself.

    (while true; do echo "$(date +%s.%N | cut -c1-14) $(head -1 /proc/stat)"; sleep 1; done > out/steal/run.log &)
    .venv/bin/python -m benchmarks.latency.latency_unseen_space ... --work out/WORK ...
    .venv/bin/python -m benchmarks.latency.steal_time --log out/steal/run.log --timings out/WORK/litert.timings.json \
        --out benchmarks/results/steal_time_RUN.json
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
from datetime import datetime
from pathlib import Path

from benchmarks.common import write_result

STEAL = 7  # index of steal among /proc/stat's "cpu" fields: user nice system idle iowait irq softirq steal ...
WINDOW_S = 6.0  # seconds before a pass's stored time that count as "during" it (a pass of one model: < 5 s here)


def read_log(path: Path) -> tuple[list[float], list[int], list[int]]:
    """Times, cumulative steal ticks and cumulative all-state ticks, one row per sample."""
    times, steal, total = [], [], []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) < 2 + STEAL + 1 or parts[1] != "cpu":
            continue  # a line cut short when the sampler was stopped
        ticks = [int(x) for x in parts[2:]]
        times.append(float(parts[0]))
        steal.append(ticks[STEAL])
        total.append(sum(ticks[:STEAL + 1]))
    return times, steal, total


def steal_share(times, steal, total, start: float, end: float) -> float:
    """Stolen share of all CPU time between two moments (0 when the log does not cover them)."""
    i, j = bisect.bisect_left(times, start), bisect.bisect_right(times, end) - 1
    if j <= i:
        return 0.0
    return (steal[j] - steal[i]) / max(total[j] - total[i], 1)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--log", required=True, type=Path)
    p.add_argument("--timings", required=True, type=Path)
    p.add_argument("--out", type=Path)
    a = p.parse_args()
    times, steal, total = read_log(a.log)
    hz = os.sysconf("SC_CLK_TCK")
    models = json.loads(a.timings.read_text())["models"]
    rows = []
    for name, entry in models.items():
        passes = entry["passes"]
        if len(passes) < 2:
            continue
        mins = [q["min_ms"] for q in passes]
        at = [datetime.fromisoformat(q["measured_at"]).timestamp() for q in passes]
        shares = [steal_share(times, steal, total, t - WINDOW_S, t + 1.0) for t in at]
        rows.append({"model": name, "spread": round(max(mins) / min(mins) - 1, 4),
                     "steal_share_per_pass": [round(s, 4) for s in shares]})
    covered = times[-1] - times[0] if times else 0.0
    stolen_s = (steal[-1] - steal[0]) / hz if times else 0.0
    spread_steal = [r for r in rows if max(r["steal_share_per_pass"]) > 0]
    out = {
        "log_seconds": round(covered, 1), "stolen_seconds": round(stolen_s, 2),
        "stolen_share": round(stolen_s / max(covered * os.cpu_count(), 1e-9), 5),
        "models": len(rows), "models_with_steal_in_a_pass": len(spread_steal),
        "spread_over_5pct": sum(r["spread"] > 0.05 for r in rows),
        "spread_over_5pct_with_steal": sum(r["spread"] > 0.05 for r in spread_steal),
        "rows": rows,
    }
    if a.out:
        write_result(a.out, out)
    print(json.dumps({k: v for k, v in out.items() if k != "rows"}, indent=1))


if __name__ == "__main__":
    main()
