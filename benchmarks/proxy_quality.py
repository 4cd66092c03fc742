"""Does proxy training learn the text conditioning? Trained vs untrained vs shuffled captions.

Trains the proxy of one architecture on the synthetic domain for the default step count,
once with the true captions and once with captions shuffled across images, and scores both
(and the untrained proxy) with the exact evaluator on held-out captions.

    .venv/bin/python benchmarks/proxy_quality.py --arch mobilediffusion --samples 128
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from archlab.arch.presets import resolve
from archlab.quality.data import ShuffledCaptions, SyntheticData
from archlab.quality.metrics import EvalConfig, evaluate_proxy
from archlab.quality.proxy import ProxyConfig, proxy_description
from archlab.quality.train import ProxyModel, TrainConfig, train_proxy


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--arch", default="mobilediffusion")
    p.add_argument("--steps", type=int, default=TrainConfig.steps)
    p.add_argument("--samples", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    cfg = TrainConfig(steps=a.steps, seed=a.seed)
    proxy = proxy_description(resolve(a.arch), ProxyConfig())
    data = SyntheticData(seed=a.seed, resolution=ProxyConfig.resolution)
    ecfg = EvalConfig(samples=a.samples, heldout=a.samples)
    out = {"arch": a.arch, "steps": a.steps, "batch": cfg.batch, "resolution": ProxyConfig.resolution,
           "prediction": cfg.prediction, "proxy_channels": list(proxy.channels), "eval_samples": a.samples}
    torch.manual_seed(a.seed)
    out["untrained"] = evaluate_proxy(ProxyModel(proxy), data, schedule=cfg.schedule, prediction=cfg.prediction, cfg=ecfg)
    for name, ds in (("trained", data), ("shuffled_captions", ShuffledCaptions(data, seed=a.seed))):
        start = time.perf_counter()
        model, result = train_proxy(proxy, ds, cfg, progress=False)
        out[name] = {**evaluate_proxy(model, data, schedule=cfg.schedule, prediction=cfg.prediction, cfg=ecfg),
                     "train_seconds": round(result.seconds, 1), "steps_per_s": round(result.steps_per_s, 2),
                     "total_seconds": round(time.perf_counter() - start, 1)}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
