"""How well does the short proxy rank architectures? Kendall tau against a 10x longer proxy.

Samples architectures from the space, trains each proxy for --steps and for 10x --steps
(same seed, same data), and compares the rankings by held-out loss and by evaluator score.

    .venv/bin/python benchmarks/proxy_fidelity.py --archs 10 --steps 250 --out benchmarks/results/proxy_fidelity.json

(--steps 250 is the default proxy; with 10x that is about 3 hours on 2 cores. A shorter pair,
--steps 25, compares a 25-step proxy with the default 250-step one in about 25 minutes.)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from scipy.stats import kendalltau

from archlab.quality.data import SyntheticData
from archlab.quality.metrics import EvalConfig, evaluate_proxy
from archlab.quality.proxy import ProxyConfig, proxy_description
from archlab.quality.train import ProxyModel, TrainConfig, Trainer
from archlab.search.space import load_space


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--space", default="mobilediffusion")
    p.add_argument("--archs", type=int, default=10)
    p.add_argument("--steps", type=int, default=TrainConfig.steps)
    p.add_argument("--factor", type=int, default=10)
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--samples", type=int, default=64)
    p.add_argument("--out", type=Path, default=None, help="Also write the full result as JSON here.")
    a = p.parse_args()
    data = SyntheticData(seed=0, resolution=ProxyConfig.resolution)
    ecfg = EvalConfig(samples=a.samples, heldout=a.samples)
    rows = []
    for _, desc in load_space(a.space).samples(a.archs, a.seed):
        row = {"name": desc.name}
        cfg = TrainConfig(steps=a.steps * a.factor, seed=0)
        torch.manual_seed(cfg.seed)
        trainer = Trainer(ProxyModel(proxy_description(desc, ProxyConfig())), data, cfg)
        trained = 0.0
        # the learning rate is constant after warm-up and batches follow (seed, step), so the
        # short proxy is exactly the long one's checkpoint at --steps: train on from there
        for label, steps in (("short", a.steps), ("long", a.steps * a.factor)):
            trained += trainer.train(steps=steps, progress=False).seconds
            m = evaluate_proxy(trainer.model, data, schedule=cfg.schedule, prediction=cfg.prediction, cfg=ecfg)
            row[label] = {"heldout_loss": m["heldout_loss"], "eval_score": m["eval_score"], "train_seconds": round(trained, 1)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    result = {"archs": a.archs, "short_steps": a.steps, "long_steps": a.steps * a.factor, "rows": rows}
    for metric in ("heldout_loss", "eval_score"):
        tau = kendalltau([r["short"][metric] for r in rows], [r["long"][metric] for r in rows])
        result[f"kendall_tau_{metric}"] = float(tau.statistic)
        result[f"kendall_p_{metric}"] = float(tau.pvalue)
    for label in ("short", "long"):
        result[f"{label}_train_seconds_median"] = float(np.median([r[label]["train_seconds"] for r in rows]))
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=2))
    if a.out is not None:
        a.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
