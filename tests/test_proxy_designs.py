"""Proxy designs: learning-curve scores, several seeds, a shared teacher, a shared supernet (on tiny models)."""

import dataclasses
import os

import numpy as np
import pytest
import torch
import yaml

from archlab import ConfigError, load_space, preset
from archlab.quality.amortised import Supernet, canonical_names, extreme, gated_parameters, run_view
from archlab.quality.config import EvalConfig, ProxyConfig, QualityConfig, TrainConfig
from archlab.quality.pipeline import QualityPipeline

SPACE = load_space("tiny")
BASE = QualityConfig(proxy=ProxyConfig(width=1.0, resolution=16), train=TrainConfig(steps=4, batch=4, threads=1, warmup_steps=1),
                     eval=EvalConfig(heldout=8, samples=4, ddim_steps=2), device="cpu")


def _cfg(**sections):
    return dataclasses.replace(BASE, **{k: dataclasses.replace(getattr(BASE, k), **v) for k, v in sections.items()})


def test_the_learning_curve_score_is_the_mean_of_the_logged_values():
    pipe = QualityPipeline(_cfg(eval={"curve": 2}))
    judged = pipe.judge(preset("tiny"), metrics=("heldout_loss", "text_gap"), progress=False)
    assert [p["step"] for p in judged.curve] == [2, 4]
    for name in ("heldout_loss", "text_gap"):
        assert judged.metrics[name].value == pytest.approx(np.mean([p[name] for p in judged.curve]))
    end = QualityPipeline(BASE).judge(preset("tiny"), metrics=("heldout_loss",), progress=False)
    assert end.metrics["heldout_loss"].value == pytest.approx(judged.curve[-1]["heldout_loss"])  # the same run's end


def test_several_seeds_average_item_by_item_and_report_their_spread():
    one = [QualityPipeline(_cfg(train={"seed": s})).judge(preset("tiny"), metrics=("heldout_loss",), progress=False)
           for s in (3, 4)]
    both = QualityPipeline(_cfg(train={"seed": 3, "seeds": 2})).judge(preset("tiny"), metrics=("heldout_loss",), progress=False)
    values = [j.metrics["heldout_loss"].value for j in one]
    assert both.metrics["heldout_loss"].value == pytest.approx(np.mean(values))
    assert both.seed_sd["heldout_loss"] == pytest.approx(np.std(values, ddof=1))
    # the standard error counts the seeds: at least their spread over sqrt(2)
    assert both.metrics["heldout_loss"].se >= both.seed_sd["heldout_loss"] / np.sqrt(2) - 1e-12
    assert both.train.cpu_seconds > max(j.train.cpu_seconds for j in one) * 0.5


def test_distillation_lowers_the_distance_to_the_teacher(tmp_path):
    cfg = _cfg(amortised={"kind": "teacher", "arch": "tiny", "steps": 6, "weight": 1.0}, train={"steps": 12, "lr": 3e-3})
    pipe = QualityPipeline(cfg, amortised_dir=tmp_path)
    desc = preset("tiny").replace(name="student")
    model = pipe.model(desc, seed=1)
    before = pipe.evaluate(model, metrics=("teacher_distance",))[0]["teacher_distance"].value
    pipe.trainer(model).train(progress=False)
    after = pipe.evaluate(model, metrics=("teacher_distance",))[0]["teacher_distance"].value
    assert after < 0.5 * before
    assert (pipe.teacher().folder / "done.json").is_file()


def test_inherited_weights_equal_the_supernets_slices(tmp_path):
    pipe = QualityPipeline(_cfg(amortised={"kind": "supernet", "steps": 2, "members": 3}), space=SPACE, amortised_dir=tmp_path)
    supernet = pipe.supernet()
    rng = np.random.default_rng(0)
    for _ in range(4):
        desc = pipe.proxy(SPACE.sample(rng)[1])
        model = pipe.model(desc, seed=0)
        share = supernet.inherit(model)
        assert share == 1.0  # every member of the space is covered
        names, gated = canonical_names(model), gated_parameters(model)
        for name, p in model.named_parameters():
            source = supernet.params[names[name]].detach()
            if name in gated:  # each half's leading rows
                h, H = p.shape[0] // 2, source.shape[0] // 2
                source = torch.cat([source[:h], source[H:H + h]])
            expected = source[tuple(slice(0, n) for n in p.shape)]
            assert torch.equal(p.detach(), expected), name


def test_a_supernet_view_trains_the_shared_weights_and_runs_like_the_inherited_model(tmp_path):
    pipe = QualityPipeline(_cfg(amortised={"kind": "supernet", "steps": 1, "members": 2}), space=SPACE, amortised_dir=tmp_path)
    supernet = pipe.supernet()
    small = pipe.proxy(extreme(SPACE, largest=False))
    model = pipe.model(small, seed=0)
    supernet.inherit(model)
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([10.0, 500.0])
    captions = ["a red circle", "a blue square"]
    with torch.no_grad():
        own = model(x, t, model.encode(captions))
    viewed = run_view(model, supernet.view(model), x, t, captions)
    assert torch.allclose(own, viewed, atol=1e-5)
    viewed.square().mean().backward()
    touched = [k for k, p in supernet.params.items() if p.grad is not None and p.grad.abs().sum() > 0]
    assert touched and len(touched) < len(supernet.params)  # the small member's slice, not every parameter


def test_a_supernet_training_resumes_from_its_checkpoint_and_is_then_only_read(tmp_path):
    cfg = _cfg(amortised={"kind": "supernet", "steps": 3, "members": 2}, train={"checkpoint_every": 1})
    first = Supernet(QualityPipeline(cfg, space=SPACE), SPACE, tmp_path)
    first.step = 0
    # a run killed after two steps: train to 2, leave the checkpoint, no done marker
    killed = dataclasses.replace(cfg, amortised=dataclasses.replace(cfg.amortised, steps=2))
    partial = Supernet(QualityPipeline(killed, space=SPACE), SPACE, tmp_path)
    partial.folder = first.folder
    partial._train(progress=False)
    os.remove(first.folder / "done.json")
    again = Supernet(QualityPipeline(cfg, space=SPACE), SPACE, tmp_path)
    again.ensure()
    assert again.step == 3  # resumed at 2, one step more
    stored = {k: v.detach().clone() for k, v in again.params.items()}
    read = Supernet(QualityPipeline(cfg, space=SPACE), SPACE, tmp_path)
    read.ensure()
    assert read.step == 3 and all(torch.equal(stored[k], read.params[k].detach()) for k in stored)


def test_a_supernet_needs_its_space():
    with pytest.raises(ConfigError, match="amortised.space: a supernet needs the search space"):
        QualityPipeline(_cfg(amortised={"kind": "supernet"})).supernet()


def test_a_study_resumed_after_a_kill_reuses_its_stored_teacher(tmp_path):
    from archlab.search.runner import run_study
    from archlab.search.study import load_study

    data = yaml.safe_load(open(os.path.join(os.path.dirname(__file__), "..", "studies", "tiny.yaml")))
    data["quality"]["amortised"] = {"kind": "teacher", "arch": "tiny", "steps": 3}
    data["quality"]["eval"]["metrics"] = ["teacher_distance"]
    data["out"] = str(tmp_path / "out")
    data["budget"] = {"trials": 1}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(data))
    cfg = load_study(path)
    run_study(cfg, progress=False)
    folders = list((tmp_path / "out" / "amortised").glob("teacher-*"))
    assert len(folders) == 1 and (folders[0] / "done.json").is_file()
    stamp = (folders[0] / "model.safetensors").stat().st_mtime_ns
    cfg2 = load_study(path)
    study = run_study(dataclasses.replace(cfg2, budget=dataclasses.replace(cfg2.budget, trials=2)), progress=False)
    assert (folders[0] / "model.safetensors").stat().st_mtime_ns == stamp  # read, not trained again
    assert all("metric.teacher_distance" in t.user_attrs for t in study.trials if t.state.name == "COMPLETE")


def test_the_teacher_is_its_architecture_under_the_proxy_rule_once(tmp_path):
    cfg = _cfg(amortised={"kind": "teacher", "arch": "mobilediffusion", "steps": 1}, proxy={"width": 0.125})
    pipe = QualityPipeline(cfg, amortised_dir=tmp_path)
    teacher = pipe.teacher().model()
    assert teacher.description.channels == pipe.proxy(preset("mobilediffusion")).channels == (40, 80, 128)
