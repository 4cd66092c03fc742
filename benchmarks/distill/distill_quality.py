"""Does the architecture survive step reduction? Teacher vs distilled student vs one-step GAN, on the synthetic domain.

For each architecture, a teacher proxy is trained (``--teacher-steps``, weight-averaged),
then distilled to ``--student-steps`` DDIM steps (SnapFusion's CFG-aware loss) and,
separately, finetuned to one step (UFOGen-style GAN, from the teacher, as MobileDiffusion).
Rows, each with eval_score and FD and their standard errors on the same held-out captions
and sampling noise: teacher at 50 DDIM steps, teacher at the student's steps, the distilled
student, teacher at 1 step, the GAN generator at 1 step (one-step rows without guidance;
the others with the evaluation's CFG scale). Paired differences (student - teacher at the
same steps, generator - teacher at 1 step) come with their standard errors, item by item.

Resumable: every stage saves its model and each row is stored as measured in ``--work``.

    .venv/bin/python -m benchmarks.distill.distill_quality --archs mobilediffusion,snapfusion --out benchmarks/results/distill_quality.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from archlab.arch.presets import resolve
from archlab.distill import DistillConfig, DistillFile, GanConfig, run_distill, run_gan
from archlab.quality import QualityConfig, QualityPipeline
from archlab.quality.metrics import paired
from benchmarks.common import write_result

METRICS = ("eval_score", "fd")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--archs", default="mobilediffusion,snapfusion")
    p.add_argument("--teacher-steps", type=int, default=1500)
    p.add_argument("--student-steps", type=int, default=8)
    p.add_argument("--distill-steps", type=int, default=400)
    p.add_argument("--gan-steps", type=int, default=400)
    p.add_argument("--samples", type=int, default=256, help="captions sampled per row")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=2, help="CPU threads (1 when another job shares 2 cores)")
    p.add_argument("--work", type=Path, default=Path("out/distill"))
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args()
    base = QualityConfig(device=a.device)
    quality = dataclasses.replace(base, train=dataclasses.replace(base.train, steps=a.teacher_steps, ema=0.98, threads=a.threads),
                                  eval=dataclasses.replace(base.eval, samples=a.samples, metrics=METRICS))
    result: dict[str, Any] = {"quality": dataclasses.asdict(quality), "archs": {}}
    for name in a.archs.split(","):
        work = a.work / name
        rows_path = work / "rows.json"
        rows: dict[str, Any] = json.loads(rows_path.read_text()) if rows_path.exists() else {}
        pipe = QualityPipeline(quality)
        teacher_file = work / "teacher" / "model.safetensors"
        if not teacher_file.exists():
            judged = pipe.judge(resolve(name), out_dir=work / "teacher", progress=False, metrics=("heldout_loss",))
            print(json.dumps({"arch": name, "teacher_trained": judged.train.steps, "seconds": round(judged.train.seconds)}), flush=True)
        file = DistillFile(teacher=str(teacher_file), quality=quality,
                           distill=DistillConfig(student_steps=a.student_steps, teacher_steps=2 * a.student_steps, steps=a.distill_steps),
                           gan=GanConfig(steps=a.gan_steps), out=str(work))
        if not (work / "student.safetensors").exists() or not (work / "distill.json").exists():
            run_distill(file, progress=False)
        if not (work / "one_step.safetensors").exists() or not (work / "gan.json").exists():
            run_gan(file, progress=False)
        teacher = pipe.load_trained(teacher_file)
        models = {"teacher": teacher, "student": pipe.load_trained(work / "student.safetensors"),
                  "generator": pipe.load_trained(work / "one_step.safetensors")}
        plan = [("teacher_at_50", "teacher", 50, None), (f"teacher_at_{a.student_steps}", "teacher", a.student_steps, None),
                (f"student_at_{a.student_steps}", "student", a.student_steps, None), ("teacher_at_1", "teacher", 1, 1.0),
                ("generator_at_1", "generator", 1, 1.0)]
        values: dict[str, Any] = {}
        for row, model, steps, guidance in plan:
            estimates, per_item = pipe.evaluate(models[model], metrics=METRICS, sampling_steps=steps, guidance=guidance)
            values[row] = per_item["eval_score"]
            if row not in rows:
                rows[row] = {"model": model, "sampling_steps": steps, "guidance": guidance or quality.eval.guidance,
                             **{m: estimates[m].as_dict() for m in METRICS}}
                tmp = rows_path.with_suffix(".tmp")
                tmp.write_text(json.dumps(rows, indent=1))
                os.replace(tmp, rows_path)
                print(json.dumps({"arch": name, "row": row, **{m: round(estimates[m].value, 4) for m in METRICS}}), flush=True)
        gains = {f"student_minus_teacher_at_{a.student_steps}": paired(values[f"teacher_at_{a.student_steps}"], values[f"student_at_{a.student_steps}"]),
                 "generator_minus_teacher_at_1": paired(values["teacher_at_1"], values["generator_at_1"])}
        result["archs"][name] = {"rows": rows, "paired_eval_score_gains": {k: {**v.as_dict(), "beyond_2_se": not v.within(2.0)}
                                                                            for k, v in gains.items()},
                                 "distill": json.loads((work / "distill.json").read_text()),
                                 "gan": json.loads((work / "gan.json").read_text())}
    print(json.dumps({n: {"rows": {r: {m: f"{v[m]['value']:.3f} ± {v[m]['se']:.3f}" for m in METRICS} for r, v in x["rows"].items()},
                          "gains": {k: f"{v['value']:+.3f} ± {v['se']:.3f}" for k, v in x["paired_eval_score_gains"].items()}}
                      for n, x in result["archs"].items()}, indent=1))
    if a.out is not None:
        write_result(a.out, result)


if __name__ == "__main__":
    main()
