"""Does proxy training learn the text conditioning? Trained vs untrained vs shuffled captions.

Trains the proxy of one architecture on the synthetic domain at the default quality
settings, once with the true captions and once with captions shuffled across images, and
measures both (and the untrained proxy) on held-out data with every metric and its
standard error.

    .venv/bin/python -m benchmarks.quality.proxy_quality --arch mobilediffusion --samples 128
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

from archlab.arch.presets import resolve
from archlab.quality import QualityConfig, QualityPipeline, ShuffledCaptions


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--arch", default="mobilediffusion")
    p.add_argument("--steps", type=int, default=None, help="default: the quality defaults")
    p.add_argument("--samples", type=int, default=128, help="captions sampled for eval_score / fd")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    a = p.parse_args()
    cfg = QualityConfig(device=a.device)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seed=a.seed, steps=a.steps or cfg.train.steps),
                              eval=dataclasses.replace(cfg.eval, samples=a.samples))
    pipe = QualityPipeline(cfg)
    desc = resolve(a.arch)
    out = {"arch": a.arch, "steps": cfg.train.steps, "batch": cfg.train.batch, "proxy": dataclasses.asdict(cfg.proxy),
           "eval": {"heldout": cfg.eval.heldout, "samples": cfg.eval.samples}, "device": pipe.device}
    estimates, _ = pipe.evaluate(pipe.model(desc, seed=a.seed))
    out["untrained"] = {k: v.as_dict() for k, v in estimates.items()}
    control = ShuffledCaptions(pipe.data(pipe.input_side(desc)).train, seed=a.seed)
    for name, data in (("trained", None), ("shuffled_captions", control)):
        start = time.perf_counter()
        judged = pipe.judge(desc, seed=a.seed, train_data=data, progress=False)
        out[name] = {**judged.report(), "total_seconds": round(time.perf_counter() - start, 1)}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
