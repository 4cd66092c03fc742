"""Does the evolving quickstart's robust training stay stable? Loss and activation size every 50 steps.

Re-runs the robust training of ``studies/evolve-quickstart.yaml`` (the same seeded model,
batches, timesteps and dropped blocks as ``archlab evolve --seed SEED``) at a chosen learning
rate, and every 50 steps prints the mean training loss of those steps, the largest weight,
and the standard deviation of four stages' outputs on 16 held-out images at t = 500 (eval
mode). A run that blows up shows the activations running away before the loss does.

    .venv/bin/python -m benchmarks.quality.training_stability 0 2e-3 > benchmarks/results/training_stability/training_stability_s0_lr2e-3.log
    .venv/bin/python -m benchmarks.quality.training_stability 0 1e-3 > benchmarks/results/training_stability_s0_lr1e-3.log
"""

import dataclasses
import sys

import numpy as np
import torch

from archlab.arch.presets import resolve
from archlab.quality.metrics import images_to_tensor
from archlab.quality.pipeline import QualityPipeline
from archlab.search.evolve import load_evolve_file

seed, lr = int(sys.argv[1]), float(sys.argv[2])
cfg = load_evolve_file("studies/evolve-quickstart.yaml")
q = cfg.quality
q = dataclasses.replace(q, train=dataclasses.replace(q.train, seed=seed, threads=1, lr=lr))
pipe = QualityPipeline(q)
model = pipe.model(resolve(cfg.evolve.start))  # the file's paths are resolved against it
trainer = pipe.trainer(model, block_drop=cfg.evolve.block_drop, train=dataclasses.replace(q.train, ema=0.0))
feats: dict[str, float] = {}
for name, mod in model.unet.stages.named_children():
    mod[-1].register_forward_hook(lambda m, i, o, name=name: feats.__setitem__(name, (o[0] if isinstance(o, tuple) else o).detach().std().item()))
s = pipe.data(model.description.resolution)
x0 = images_to_tensor([x for x, _ in s.items[:16]])
caps = [c for _, c in s.items[:16]]
for k in range(50, cfg.evolve.robust_steps + 1, 50):
    r = trainer.train(steps=k, progress=False)
    wmax = max(p.detach().abs().max().item() for p in model.unet.parameters())
    with torch.no_grad():
        model.eval()
        model(x0 * 0.7 + torch.randn(x0.shape, generator=torch.Generator().manual_seed(0)) * 0.7, torch.full((16,), 500.0),
              model.encode(caps))
        model.train()
    print(k, "loss %.4f" % np.mean(r.losses), "max|w| %.2f" % wmax, {n: "%.3g" % v for n, v in feats.items() if n in ("down1", "mid", "up2", "up0")},
          flush=True)
