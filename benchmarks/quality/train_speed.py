"""How fast does a proxy train on this machine, and what bounds it?

Measures the MobileDiffusion proxy's training steps per second under the rule that gave
2.85 steps/s (width 1/16, head counts kept: 4-wide heads), width 1/16 with heads at least
16 wide, the current default (width 1/8, which ranks architectures far above seed noise:
benchmarks/README.md, proxy fidelity) on 2 threads and on 1; then two single-thread worker
processes side by side (what ``archlab study run --workers 2`` with
``quality.train.threads: 1`` gives a study). Variants are interleaved and repeated; medians. Then a profile of the default
step by operator, the answer to "what bounds it".

    .venv/bin/python -m benchmarks.quality.train_speed --rounds 5 --out benchmarks/results/train_speed/train_speed.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import statistics
import time
from pathlib import Path

import torch

from archlab import preset
from archlab.quality import QualityConfig, QualityPipeline
from benchmarks.common import write_result


def trainer(min_head_dim: int, threads: int, arch: str, width: float | None = None):
    base = QualityConfig(device="cpu")
    width = base.proxy.width if width is None else width
    cfg = dataclasses.replace(base, proxy=dataclasses.replace(base.proxy, min_head_dim=min_head_dim, width=width),
                              train=dataclasses.replace(base.train, threads=threads, steps=10**6))
    pipe = QualityPipeline(cfg)
    t = pipe.trainer(pipe.model(preset(arch), seed=0))
    t.train(steps=3, progress=False)  # warm-up: allocations, first-call costs
    return t


def rate(t, steps: int) -> float:
    r = t.train(steps=t.step + steps, progress=False)
    return r.steps_per_s


def _worker(arch: str, steps: int, queue) -> None:
    t = trainer(16, 1, arch)
    start = time.perf_counter()
    t.train(steps=t.step + steps, progress=False)
    queue.put(steps / (time.perf_counter() - start))


def parallel_rate(arch: str, steps: int, workers: int = 2) -> float:
    """Total steps/s of ``workers`` single-thread processes training at once."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(arch, steps, queue)) for _ in range(workers)]
    for p in procs:
        p.start()
    rates = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    return sum(rates)


def profile(t, steps: int = 8) -> list[dict]:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        t.train(steps=t.step + steps, progress=False)
    events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in events)
    groups = {"attention (SDPA)": "scaled_dot_product", "convolution": "convolution", "matmul / linear": ("aten::mm", "aten::addmm", "aten::bmm")}
    out = []
    for label, keys in groups.items():
        keys = (keys,) if isinstance(keys, str) else keys
        share = sum(e.self_cpu_time_total for e in events if any(k in e.key for k in keys)) / total
        out.append({"group": label, "share_of_operator_time": round(share, 3)})
    out.append({"group": "top operators", "ops": [{"op": e.key[:60], "ms_per_step": round(e.self_cpu_time_total / 1e3 / steps, 1),
                                                   "calls_per_step": round(e.count / steps)} for e in events[:12]]})
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--arch", default="mobilediffusion")
    p.add_argument("--steps", type=int, default=20, help="steps per timed round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args()
    old = "width 1/16, 4-wide heads (the 2.85 steps/s rule), 2 threads"
    variants = {old: trainer(0, 2, a.arch, 0.0625), "width 1/16, heads >= 16 wide, 2 threads": trainer(16, 2, a.arch, 0.0625),
                "default (width 1/8, heads >= 16 wide), 2 threads": trainer(16, 2, a.arch), "default, 1 thread": trainer(16, 1, a.arch)}
    rates: dict[str, list[float]] = {k: [] for k in variants}
    rates["default, 2 workers x 1 thread (total)"] = []
    for _ in range(a.rounds):
        for name, t in variants.items():
            torch.set_num_threads(t.cfg.threads)
            rates[name].append(rate(t, a.steps))
        rates["default, 2 workers x 1 thread (total)"].append(parallel_rate(a.arch, a.steps))
    med = {k: statistics.median(v) for k, v in rates.items()}
    base = med[old]
    result = {"arch": a.arch, "batch": QualityConfig().train.batch, "rounds": a.rounds, "steps_per_round": a.steps,
              "steps_per_s": {k: {"median": round(v, 3), "range": [round(min(rates[k]), 3), round(max(rates[k]), 3)],
                                  "vs_previous_rule": round(v / base, 2)} for k, v in med.items()},
              "profile_default": profile(variants["default (width 1/8, heads >= 16 wide), 2 threads"])}
    print(json.dumps(result, indent=1))
    if a.out is not None:
        write_result(a.out, result)


if __name__ == "__main__":
    main()
