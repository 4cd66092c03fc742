"""How well does the short proxy rank architectures? Kendall tau against a 10x longer proxy.

Samples architectures from the space, trains each proxy for --steps and for 10x --steps
(same seed, same data), and compares the rankings by held-out loss and by evaluator score.

    .venv/bin/python benchmarks/proxy_fidelity.py --archs 10 --steps 100
"""

from __future__ import annotations

import argparse
import json
import time

from scipy.stats import kendalltau

from archlab.quality.data import SyntheticData
from archlab.quality.metrics import EvalConfig, evaluate_proxy
from archlab.quality.proxy import ProxyConfig, proxy_description
from archlab.quality.train import TrainConfig, train_proxy
from archlab.search.space import load_space


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--space", default="mobilediffusion")
    p.add_argument("--archs", type=int, default=10)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--factor", type=int, default=10)
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--samples", type=int, default=64)
    a = p.parse_args()
    data = SyntheticData(seed=0, resolution=32)
    ecfg = EvalConfig(samples=a.samples, heldout=a.samples)
    rows = []
    for _, desc in load_space(a.space).samples(a.archs, a.seed):
        row = {"name": desc.name}
        for label, steps in (("short", a.steps), ("long", a.steps * a.factor)):
            cfg = TrainConfig(steps=steps, seed=0)
            start = time.perf_counter()
            model, _ = train_proxy(proxy_description(desc, ProxyConfig()), data, cfg, progress=False)
            m = evaluate_proxy(model, data, schedule=cfg.schedule, prediction=cfg.prediction, cfg=ecfg)
            row[label] = {"heldout_loss": m["heldout_loss"], "eval_score": m["eval_score"], "seconds": round(time.perf_counter() - start, 1)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    result = {"archs": a.archs, "short_steps": a.steps, "long_steps": a.steps * a.factor, "rows": rows}
    for metric in ("heldout_loss", "eval_score"):
        tau = kendalltau([r["short"][metric] for r in rows], [r["long"][metric] for r in rows])
        result[f"kendall_tau_{metric}"] = float(tau.statistic)
        result[f"kendall_p_{metric}"] = float(tau.pvalue)
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=2))


if __name__ == "__main__":
    main()
