"""From a chosen architecture to a few-step model: CFG-aware step distillation and one-step
diffusion-GAN finetuning, both reading one :class:`DistillFile` (``handoff.yaml`` is one).

>>> from archlab.distill import DistillConfig
>>> DistillConfig().guidance_min, DistillConfig().guidance_max, DistillConfig().cfg_probability
(2.0, 14.0, 0.1)
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

from archlab.config import load, read, to_data
from archlab.distill import few_step  # noqa: F401  (registers the few_step_score metric)
from archlab.distill.config import DistillConfig, DistillFile, GanConfig
from archlab.distill.gan import Discriminator, GanFinetuner
from archlab.distill.step import StepDistiller
from archlab.errors import ConfigError
from archlab.files import write_text
from archlab.quality.config import QualityConfig
from archlab.quality.metrics import Estimate
from archlab.quality.pipeline import QualityPipeline
from archlab.quality.train import ProxyModel, read_trained, save_trained

__all__ = ["Discriminator", "DistillConfig", "DistillFile", "GanConfig", "GanFinetuner", "StepDistiller", "load_distill_file",
           "open_teacher", "run_distill", "run_gan"]


def load_distill_file(path: str | Path) -> DistillFile:
    """Read and check a distill file (``handoff.yaml`` from ``archlab export`` is one)."""
    return load(DistillFile, path)


def open_teacher(file: DistillFile, *, model: str | Path | None = None) -> tuple[QualityPipeline, ProxyModel]:
    """The quality pipeline (the file's settings, else those the model was trained under) and the trained model."""
    path = Path(model or file.teacher)
    trained = read_trained(path)
    if trained.metadata.get("weights", "").startswith("random"):
        raise ConfigError("teacher", f"{path} holds {trained.metadata['weights']} weights: a teacher must be trained first "
                          "(point teacher: at a trained model, e.g. `archlab proxy train --out DIR` then DIR/model.safetensors)")
    if file.quality is not None:
        quality = file.quality
    elif trained.quality is not None:
        quality = read(QualityConfig, trained.quality, "quality")
    else:
        raise ConfigError("quality", f"{path} does not record its quality settings; give the file a quality section "
                          "(data, text encoder and proxy rule it was trained with)")
    pipeline = QualityPipeline(quality)
    return pipeline, pipeline.load_trained(path)


def _measure(pipe: QualityPipeline, model: ProxyModel, steps: int, guidance: float | None) -> dict[str, dict[str, float]]:
    estimates: dict[str, Estimate] = pipe.evaluate(model, sampling_steps=steps, guidance=guidance)[0]
    return {k: v.as_dict() for k, v in estimates.items()}


def run_distill(file: DistillFile, *, out: str | Path | None = None, progress: bool = True,
                log: Callable[[str], None] = lambda m: None) -> dict[str, Any]:
    """Distil the teacher; save the student (``student.safetensors``) and a report (``distill.json``)."""
    out = Path(out or file.out)
    pipe, teacher = open_teacher(file)
    cfg = file.distill
    distiller = StepDistiller(teacher, pipe, cfg, out_dir=out)
    log(f"distilling {teacher.description.name}: {cfg.teacher_steps} teacher steps -> {cfg.student_steps} student steps, "
        f"{cfg.steps} iterations from step {distiller.step}")
    result = distiller.train(progress=progress)
    save_trained(distiller.student, out / "student.safetensors", quality=pipe.cfg,
                 extra={"stage": "cfg-aware step distillation", "sampling_steps": str(cfg.student_steps)})
    start = time.perf_counter()
    report = {"teacher": str(file.teacher), "config": to_data(cfg), "steps": result.steps, "train_seconds": round(result.seconds, 1),
              "train_cpu_seconds": round(result.cpu_seconds, 1), "final_loss": result.final_loss,
              f"teacher_at_{cfg.student_steps}": _measure(pipe, teacher, cfg.student_steps, None),
              f"student_at_{cfg.student_steps}": _measure(pipe, distiller.student, cfg.student_steps, None)}
    report["eval_seconds"] = round(time.perf_counter() - start, 1)
    write_text(out / "distill.json", json.dumps(report, indent=1))
    return report


def run_gan(file: DistillFile, *, init: str = "teacher", out: str | Path | None = None, progress: bool = True,
            log: Callable[[str], None] = lambda m: None) -> dict[str, Any]:
    """One-step GAN finetuning from the teacher (or ``init``: ``student`` or a trained-model file);
    save the generator (``one_step.safetensors``) and a report (``gan.json``)."""
    out = Path(out or file.out)
    source = {"teacher": None, "student": out / "student.safetensors"}.get(init, init)
    if isinstance(source, str) and not Path(source).exists():
        raise ConfigError("--init", f"{init!r} is neither teacher, student nor an existing model file")
    if init == "student" and not Path(source).exists():
        raise ConfigError("--init", f"student: {source} does not exist (run `archlab distill` first)")
    pipe, start_model = open_teacher(file, model=source)
    cfg = file.gan
    tuner = GanFinetuner(start_model, pipe, cfg, out_dir=out)
    log(f"one-step GAN finetuning of {start_model.description.name} ({init}): {cfg.steps} iterations from step {tuner.step}")
    result = tuner.train(progress=progress)
    save_trained(tuner.generator, out / "one_step.safetensors", quality=pipe.cfg,
                 extra={"stage": "one-step diffusion-GAN finetuning", "sampling_steps": "1"})
    start = time.perf_counter()
    report = {"init": str(source or file.teacher), "config": to_data(cfg), "steps": result.steps,
              "train_seconds": round(result.seconds, 1), "train_cpu_seconds": round(result.cpu_seconds, 1),
              "final_reconstruction_loss": result.final_loss,
              "init_at_1": _measure(pipe, start_model, 1, 1.0), "generator_at_1": _measure(pipe, tuner.generator, 1, 1.0)}
    report["eval_seconds"] = round(time.perf_counter() - start, 1)
    write_text(out / "gan.json", json.dumps(report, indent=1))
    return report
