"""``few_step_score``: how well a candidate survives step reduction, registered as a quality metric.

After the candidate's proxy is trained, a copy is distilled (CFG-aware, two teacher steps per
student step) for ``eval.few_step.iterations`` and sampled in ``eval.few_step.student_steps``;
the score, per caption, is eval_score on the synthetic domain or clip_score on real data.
The distillation layer registers it, so the quality layer beneath never imports this one.
"""

from __future__ import annotations

import numpy as np

from archlab.distill.config import DistillConfig
from archlab.distill.step import StepDistiller
from archlab.quality import registry


def applies(cfg) -> str | None:
    if cfg.data.kind != "synthetic" and cfg.eval.clip is None:
        return "on real data is a clip_score: it needs quality.eval.clip.checkpoint"
    return None


def measure(m) -> dict[str, np.ndarray]:
    """Distil a copy of the measured model briefly, then score its few-step samples per caption."""
    pipe, f = m.pipe, m.cfg.eval.few_step
    cfg = DistillConfig(student_steps=f.student_steps, teacher_steps=2 * f.student_steps, steps=f.iterations, batch=f.batch,
                        seed=m.cfg.train.seed)
    distiller = StepDistiller(m.model, pipe, cfg)
    distiller.train(progress=False)
    captions = [c for _, c in m.held(m.cfg.eval.samples)]
    pixels01 = pipe.sample_pixels(distiller.student, captions, steps=f.student_steps)
    return {"few_step_score": pipe.score_samples(pixels01, captions, m.model.description.resolution)}


registry.register(registry.Metric(
    "few_step_score", True, "eval_score (or clip_score) after a brief distillation to a few sampling steps", measure,
    applies=applies, sampled=True, default=False, worst=0.0))
