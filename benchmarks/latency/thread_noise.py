"""Is a host's timing noise a multi-thread effect? One model timed at 1 and at N threads, interleaved.

On a shared VM a parallel region waits for its slowest thread, so a vCPU that is busy
elsewhere for a moment stalls the whole run on N threads but only every Nth run on one. This
times a few models sampled from the unseen space of ``latency_unseen_space.py`` (the same
SPACE), each ``--rounds`` times at every thread count in turn (1, N, 1, N, ...: the same
spells of the host fall on both), and reports each count's median and 90th percentile over
its fastest run. Nothing else should run on the CPU meanwhile.

    .venv/bin/python -m benchmarks.latency.thread_noise --threads 1 2 --models 3 --rounds 25 \\
        --out benchmarks/results/thread_noise/thread_noise_torch-cpu.json
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from archlab.convert import model_and_inputs
from archlab.search.space import load_space
from benchmarks.common import write_result
from benchmarks.latency.latency_unseen_space import write_space


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--models", type=int, default=3, help="models sampled from the unseen space")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rounds", type=int, default=25)
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        space = load_space(write_space(Path(tmp))[0])
    rows = []
    for _, desc in space.samples(a.models, seed=a.seed):
        model, inputs = model_and_inputs(desc, batch=1)
        model.eval()
        runs: dict[int, list[float]] = {t: [] for t in a.threads}
        with torch.inference_mode():
            for t in a.threads:  # one warm-up at each count
                torch.set_num_threads(t)
                model(*inputs)
            for _ in range(a.rounds):
                for t in a.threads:
                    torch.set_num_threads(t)
                    start = time.perf_counter()
                    model(*inputs)
                    runs[t].append((time.perf_counter() - start) * 1000)
        row = {"name": desc.name, "threads": {}}
        for t, xs in runs.items():
            x = np.array(xs)
            row["threads"][str(t)] = {"min_ms": round(float(x.min()), 2), "median_over_min": round(float(np.median(x) / x.min()), 3),
                                      "p90_over_min": round(float(np.quantile(x, 0.9) / x.min()), 3),
                                      "runs_ms": [round(v, 1) for v in xs]}
        rows.append(row)
        print(desc.name, {t: {k: v for k, v in r.items() if k != "runs_ms"} for t, r in row["threads"].items()})
    if a.out is not None:
        write_result(a.out, {"rounds": a.rounds, "seed": a.seed, "models": rows})


if __name__ == "__main__":
    main()
