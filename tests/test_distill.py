"""Few-step stages on tiny models: CFG-aware step distillation and one-step GAN finetuning."""

import json

import pytest
import torch
import yaml
from typer.testing import CliRunner

from archlab import ConfigError, preset
from archlab.cli import app
from archlab.config import read
from archlab.distill import DistillFile, GanFinetuner, StepDistiller, load_distill_file, open_teacher
from archlab.quality.config import QualityConfig
from archlab.quality.pipeline import QualityPipeline
from archlab.quality.train import save_trained

QUALITY = {"proxy": {"width": 1.0, "resolution": 16}, "train": {"steps": 3, "batch": 4, "threads": 1},
           "eval": {"heldout": 4, "samples": 4, "ddim_steps": 2}, "device": "cpu"}
runner = CliRunner()


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A tiny proxy trained for a few steps, saved as archlab writes trained models (with its quality settings)."""
    pipe = QualityPipeline(read(QualityConfig, QUALITY, "quality"))
    judged = pipe.judge(preset("tiny"), metrics=("heldout_loss",), progress=False, keep_model=True)
    return save_trained(judged.model, tmp_path_factory.mktemp("teacher") / "model.safetensors", quality=pipe.cfg)


def _file(teacher, tmp_path, **sections):
    data = {"teacher": str(teacher), "out": str(tmp_path / "out"),
            "distill": {"steps": 4, "batch": 2, "student_steps": 2, "teacher_steps": 4, "checkpoint_every": 2, "cfg_probability": 0.5},
            "gan": {"steps": 4, "batch": 2, "checkpoint_every": 2}, **sections}
    path = tmp_path / "distill.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _weights(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_distillation_changes_the_student_and_resumes_exactly(teacher, tmp_path):
    file = load_distill_file(_file(teacher, tmp_path))
    pipe, model = open_teacher(file)
    straight = StepDistiller(model, pipe, file.distill)
    before = _weights(straight.student.unet)
    loss, parts = straight.loss(0)
    assert torch.isfinite(loss) and {"distill", "denoise", "cfg"} <= set(parts)
    straight.train(progress=False)
    assert any(not torch.equal(before[k], v) for k, v in straight.student.unet.state_dict().items())
    assert all(torch.equal(a, b) for a, b in zip(model.unet.state_dict().values(), before.values()))  # the teacher is untouched
    _resumes_exactly(lambda: StepDistiller(open_teacher(file)[1], pipe, file.distill, out_dir=tmp_path / "ck"),
                     lambda loop: loop.student.unet, straight, atol=1e-6)


def _resumes_exactly(make, trained_of, straight, *, atol):
    """Two steps, a fresh loop from the checkpoint, the rest: the same weights as one straight run."""
    make().train(steps=2, progress=False)
    resumed = make()
    assert resumed.step == 2
    resumed.train(progress=False)
    for k, v in trained_of(straight).state_dict().items():
        assert torch.allclose(v, trained_of(resumed).state_dict()[k], atol=atol), k


def test_gan_finetuning_changes_generator_and_discriminator_and_resumes_exactly(teacher, tmp_path):
    file = load_distill_file(_file(teacher, tmp_path))
    pipe, model = open_teacher(file)
    straight = GanFinetuner(model, pipe, file.gan)
    g0, d0 = _weights(straight.generator.unet), _weights(straight.discriminator)
    # the discriminator starts as the diffusion UNet's encoder
    assert torch.equal(straight.discriminator.trunk.conv_in.weight, model.unet.conv_in.weight)
    straight.train(progress=False)
    assert any(not torch.equal(g0[k], v) for k, v in straight.generator.unet.state_dict().items())
    assert any(not torch.equal(d0[k], v) for k, v in straight.discriminator.state_dict().items())
    _resumes_exactly(lambda: GanFinetuner(open_teacher(file)[1], pipe, file.gan, out_dir=tmp_path / "ck"),
                     lambda loop: loop.generator.unet, straight, atol=1e-5)


def test_command_line_writes_students_and_reports_with_errors(teacher, tmp_path):
    path = _file(teacher, tmp_path)
    distilled = runner.invoke(app, ["distill", str(path), "--json", "--no-progress"])
    assert distilled.exit_code == 0, distilled.output
    report = json.loads(distilled.stdout)
    for row in ("teacher_at_2", "student_at_2"):
        assert {"heldout_loss", "eval_score", "fd"} <= set(report[row]) and report[row]["eval_score"]["n"] == 4
    assert (tmp_path / "out" / "student.safetensors").is_file()
    tuned = runner.invoke(app, ["gan-finetune", str(path), "--init", "student", "--json", "--no-progress"])
    assert tuned.exit_code == 0, tuned.output
    report = json.loads(tuned.stdout)
    assert {"init_at_1", "generator_at_1"} <= set(report) and (tmp_path / "out" / "one_step.safetensors").is_file()


@pytest.mark.parametrize("change,message", [
    ({"distill": {"student_steps": 8, "teacher_steps": 12}}, "distill.teacher_steps: 12 must be a multiple of student_steps (8)"),
    ({"distill": {"guidance_min": 5, "guidance_max": 2}}, "distill.guidance_max: needs 1 <= guidance_min <= guidance_max"),
    ({"gan": {"stepz": 3}}, "gan.stepz: unknown field; allowed: steps, batch"),
])
def test_bad_files_are_refused_in_one_line(teacher, tmp_path, change, message):
    result = runner.invoke(app, ["distill", str(_file(teacher, tmp_path, **change))])
    assert result.exit_code == 2 and result.stderr.startswith(f"error: {message}") and result.stderr.count("\n") == 1


def test_an_untrained_export_is_not_a_teacher(tmp_path):
    from archlab.results.export import export_architecture

    export_architecture(preset("tiny"), tmp_path / "export", onnx=False)
    handoff = load_distill_file(tmp_path / "export" / "handoff.yaml")  # the export's hand-off is a distill file
    assert isinstance(handoff, DistillFile) and handoff.distill.guidance_max == 14.0 and handoff.distill.cfg_probability == 0.1
    with pytest.raises(ConfigError, match="random init"):
        open_teacher(handoff)


def test_few_step_score_as_a_study_objective_distils_a_copy(teacher):
    """The optional few-step objective: a short distillation inside the judgement, the judged model untouched."""
    quality = read(QualityConfig, {**QUALITY, "eval": {**QUALITY["eval"], "few_step": {"student_steps": 2, "iterations": 2, "batch": 2}}},
                   "quality")
    pipe = QualityPipeline(quality)
    model = pipe.load_trained(teacher)
    before = _weights(model.unet)
    estimates, values = pipe.evaluate(model, metrics=("few_step_score",))
    assert estimates["few_step_score"].n == 4 and 0 <= estimates["few_step_score"].value <= 1
    assert all(torch.equal(before[k], v) for k, v in model.unet.state_dict().items())
    assert all(p.requires_grad for p in model.unet.parameters())  # still trainable by its owner
