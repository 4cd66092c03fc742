"""SnapFusion's evolving search: tiny proxies on tables made for the test, and the real regime
(a pretrained diffusers UNet, VAE latents of an image folder, a frozen OpenCLIP text tower, clip_score)."""

import dataclasses
import json

import pytest
import torch
import yaml
from typer.testing import CliRunner

from archlab import ConfigError, Predictor, preset, removable
from archlab.arch.editing import edit
from archlab.cli import app
from archlab.config import read
from archlab.cost.keys import distinct_specs
from archlab.cost.table import LatencyTable
from archlab.quality.config import ProxyConfig, QualityConfig
from archlab.quality.proxy import proxy_description
from archlab.quality.text import SmallTextEncoder
from archlab.quality.train import ProxyModel, Trainer, divergence
from archlab.search.evolve import EvolveConfig, evolve, load_evolve_file, quality_lost, transfer
from archlab.search.space import load_space

META = {"device": "test", "runtime": "torch-cpu", "runtime_version": "x", "threads": 1, "dtype": "float32", "batch": 1,
        "warmup": 0, "repeats": 1}


def _table(path, descs):
    """Latency proportional to FLOPs, with attention at the top level made expensive."""
    table = LatencyTable.create(path, META)
    for key, spec in distinct_specs(descs).items():
        ms = spec.cost().flops / 1e6 + (5.0 if spec.kind == "transformer" and spec.resolution >= 16 else 0.5)
        table.append(key, spec.kind, ms, 0.0, ms, 1)
    return table


def _start():
    space = load_space("tiny")
    choices = {n: space.options[n][-1] for n in space.active(2)}
    choices["depth"] = 2
    return space.decode(choices, name="tiny-start")


def _quality(**changes):
    data = {"proxy": {"width": 1.0, "resolution": 16}, "train": {"batch": 4, "threads": 1},
            "eval": {"heldout": 16, "samples": 4, "ddim_steps": 2}, "device": "cpu", **changes}
    return read(QualityConfig, data, "quality")


def test_transfer_keeps_weights_of_untouched_blocks():
    desc = proxy_description(preset("sd15"), ProxyConfig(width=0.05, resolution=16), channels=3, text_dim=32, text_tokens=16)
    torch.manual_seed(0)
    model = ProxyModel(desc, text_encoder=SmallTextEncoder([1, 2, 3], width=32, tokens=16))
    smaller = transfer(model, edit(desc, "mid.1", "remove"), "mid.1", "remove")
    assert torch.equal(smaller.unet.stages["mid"][1].conv1.weight, model.unet.stages["mid"][2].conv1.weight)
    bigger = transfer(model, edit(desc, "down0.1", "copy"), "down0.1", "copy")
    assert torch.equal(bigger.unet.stages["down0"][2].proj_in.weight, model.unet.stages["down0"][1].proj_in.weight)
    assert torch.equal(bigger.unet.stages["down0"][3].conv1.weight, model.unet.stages["down0"][2].conv1.weight)


def test_quality_lost_is_signed_by_the_metrics_direction():
    import numpy as np

    base, without = np.array([0.10, 0.20, 0.30]), np.array([0.12, 0.21, 0.33])
    assert quality_lost("heldout_loss", base, without).value > 0  # the loss rises without the block: worse
    assert quality_lost("text_gap", base, without).value < 0  # the text gap rises without it: better


@pytest.mark.slow
def test_evolution_reaches_its_target_and_logs_every_candidate(tmp_path):
    start = _start()
    table = _table(tmp_path / "t.csv", [start])
    base = Predictor([table]).score(start).latency_ms["t"]
    cfg = EvolveConfig(metric="heldout_loss", robust_steps=4, block_drop=0.2, iterations=6, finetune_steps=1,
                       remove_per_iteration=2)
    result = evolve(cfg, quality=_quality(), table=table, target_ms=base * 0.8, out=tmp_path / "out", progress=False,
                    log=lambda m: None, start=start)
    log = json.loads((tmp_path / "out" / "log.json").read_text())
    assert log["finished"] and log["target_met"] and result.latency_ms <= base * 0.8
    removed = [a for a in log["actions"] if a["action"] == "remove"]
    assert removed and all({"delta_quality", "delta_quality_se", "within_noise", "delta_latency_ms", "ratio"} <= set(a)
                           for a in removed)
    first = log["iterations"][0]
    assert {c["block"] for c in first["candidates"]} == set(removable(start))
    assert len(first["actions"]) <= 2 and first["eval_items"] == 16 and "ties" in log
    assert (tmp_path / "out" / "actions.csv").read_text().count("\n") == len(log["actions"]) + 1
    assert yaml.safe_load((tmp_path / "out" / "result.yaml").read_text())["name"].endswith("-evolved")
    assert (tmp_path / "out" / "model.safetensors").is_file()  # the evolved proxy with its text encoder


def test_a_second_look_decides_on_more_items(tmp_path):
    start = _start()
    table = _table(tmp_path / "t.csv", [start])
    base = Predictor([table]).score(start).latency_ms["t"]
    cfg = EvolveConfig(metric="text_gap", robust_steps=2, iterations=1, confirm_items=40, confirm_top=2)
    said = []
    evolve(cfg, quality=_quality(), table=table, target_ms=base * 0.9, out=tmp_path / "out", progress=False, log=said.append,
           start=start)
    log = json.loads((tmp_path / "out" / "log.json").read_text())
    first = log["iterations"][0]
    gap = first["quality"]  # the model's own text_gap: a model that ignores its captions is said to
    assert gap["n"] == 16 and any("does not use its captions" in m for m in said) == (abs(gap["value"]) <= 2 * gap["se"])
    confirmed = [c for c in first["candidates"] if "screening" in c]
    assert len(confirmed) >= 2 and first["confirm_items"] == 40
    assert all(c["items"] == 40 and c["screening"]["items"] == 16 for c in confirmed)
    assert all(c["items"] == 16 for c in first["candidates"] if "screening" not in c)
    action = log["actions"][-1]
    assert action["block"] in {c["block"] for c in confirmed} and action["items"] == 40
    with pytest.raises(ConfigError, match="evolve.confirm_items: 600 is more than the 512 items data.heldout keeps"):
        evolve(EvolveConfig(confirm_items=600), quality=_quality(), table=table, target_ms=base, out=tmp_path / "o2",
               progress=False, log=lambda m: None, start=start)


def test_a_training_blow_up_stops_the_search_with_its_log(tmp_path, monkeypatch):
    assert divergence([0.2] * 30 + [0.1] * 30) is None  # falling or noisy losses are fine
    assert divergence([0.1, 0.3] * 30) is None
    assert divergence([0.1] * 40 + [0.5] * 20) == pytest.approx((0.1, 0.5))
    start = _start()
    table = _table(tmp_path / "t.csv", [start])
    real = Trainer.train

    def blows_up(self, *, steps=None, progress=True):  # the loss runs away in the last 20 of 60 steps
        result = real(self, steps=steps, progress=progress)
        return dataclasses.replace(result, losses=[0.1] * 40 + [0.5] * 20)

    monkeypatch.setattr(Trainer, "train", blows_up)
    with pytest.raises(ConfigError, match=r"quality.train.lr: training diverged by step 3 \(mean loss of 20 steps 0.1000 -> 0.5000\)"):
        evolve(EvolveConfig(metric="heldout_loss", robust_steps=3), quality=_quality(), table=table, target_ms=1.0,
               out=tmp_path / "out", progress=False, log=lambda m: None, start=start)
    log = json.loads((tmp_path / "out" / "log.json").read_text())
    assert not log["finished"] and log["diverged_at_step"] == 3 and len(log["training_losses"]) == 60


def test_evolve_files_are_validated(tmp_path):
    path = tmp_path / "e.yaml"
    path.write_text("table: t.csv\n")
    with pytest.raises(ConfigError, match="latency_target_ms: is required"):
        load_evolve_file(path)
    path.write_text("table: t.csv\nlatency_target_ms: 10\nevolve: {robust_stepz: 3}\n")
    with pytest.raises(ConfigError, match="evolve.robust_stepz: unknown field; allowed: start, metric"):
        load_evolve_file(path)
    path.write_text("table: t.csv\nlatency_target_ms: 10\nquality: {train: {stepz: 3}}\n")
    with pytest.raises(ConfigError, match="quality.train.stepz: unknown field"):
        load_evolve_file(path)
    path.write_text("table: t.csv\nlatency_target_ms: 10\nevolve: {metric: fd}\n")
    with pytest.raises(ConfigError, match="evolve.metric: 'fd' is not one of"):
        load_evolve_file(path)
    path.write_text("table: t.csv\nlatency_target_ms: 10\nevolve: {metric: clip_score}\n")
    result = CliRunner().invoke(app, ["evolve", str(path)])
    assert result.exit_code == 2 and result.stderr.startswith("error: evolve.metric: clip_score needs a local OpenCLIP")


@pytest.mark.slow
def test_real_regime_pretrained_unet_latents_openclip_then_export(tmp_path, tiny_diffusers_unet, tiny_vae, tiny_openclip,
                                                                   english_folder):
    """From a pretrained diffusers UNet, on VAE latents of an image folder with English captions, a frozen OpenCLIP
    text tower and Delta from clip_score: evolve end to end, then export the evolved full-size model."""
    from archlab.arch.diffusers_import import read_description

    config, weights = tiny_openclip
    desc = read_description(tiny_diffusers_unet)
    table = _table(tmp_path / "unet.csv", [desc])
    target = Predictor([table]).score(desc).latency_ms["unet"] * 0.85
    clip = {"checkpoint": str(weights), "model_config": str(config)}
    spec = {"table": str(table.path), "latency_target_ms": target, "out": str(tmp_path / "out"),
            "evolve": {"start": str(tiny_diffusers_unet), "metric": "clip_score", "robust_steps": 2, "iterations": 3,
                       "finetune_steps": 1, "block_drop": 0.2},
            "quality": {"data": {"kind": "folder", "path": str(english_folder), "heldout": 8, "vae": str(tiny_vae),
                                 "cache": str(tmp_path / "cache")},
                        "text": {"encoder": "openclip", **clip}, "proxy": {"width": 1.0, "resolution": None},
                        "train": {"batch": 4, "threads": 1},
                        "eval": {"heldout": 8, "samples": 4, "ddim_steps": 2, "clip": clip}, "device": "cpu"}}
    path = tmp_path / "evolve.yaml"
    path.write_text(yaml.safe_dump(spec))
    runner = CliRunner()
    result = runner.invoke(app, ["evolve", str(path), "--no-progress"])
    assert result.exit_code == 0, result.output
    log = json.loads((tmp_path / "out" / "log.json").read_text())
    assert log["pretrained"] and log["metric"] == "clip_score" and log["target_met"]
    assert all("delta_quality_se" in c for it in log["iterations"] for c in it["candidates"])
    assert "clip_score" in log["final_metrics"]
    assert (tmp_path / "out" / "model.safetensors").is_file()  # the evolved full-size model, trained weights
    exported = runner.invoke(app, ["export", str(tmp_path / "out"), "--out", str(tmp_path / "export")])
    assert exported.exit_code == 0, exported.output
    card = json.loads((tmp_path / "export" / "model_card.json").read_text())
    assert card["weights"].startswith("trained") and card["onnx_max_abs_diff"] < 1e-3
    evolved = yaml.safe_load((tmp_path / "out" / "result.yaml").read_text())
    assert card["params"] < Predictor().score(desc).params  # blocks were removed
    assert evolved["name"].endswith("-evolved")


@pytest.mark.slow
def test_a_study_with_the_evolve_sampler_runs_the_same_search(tmp_path):
    start = _start()
    (tmp_path / "start.yaml").write_text(start.to_yaml())
    table = _table(tmp_path / "t.csv", [start])
    target = Predictor([table]).score(start).latency_ms["t"] * 0.8
    study = {"name": "evolving", "space": "tiny", "out": str(tmp_path / "out"),
             "objectives": [{"metric": "latency_ms", "direction": "minimize", "table": str(table.path)},
                            {"metric": "heldout_loss", "direction": "minimize"}],
             "constraints": [{"metric": "latency_ms", "max": target, "table": str(table.path)}],
             "sampler": {"kind": "evolve"},
             "evolve": {"start": str(tmp_path / "start.yaml"), "metric": "heldout_loss", "robust_steps": 3, "iterations": 6,
                        "finetune_steps": 1, "remove_per_iteration": 2},
             "quality": {"proxy": {"width": 1.0, "resolution": 16}, "train": {"steps": 3, "batch": 4, "threads": 1},
                         "eval": {"heldout": 8, "samples": 4, "ddim_steps": 2}, "device": "cpu"}}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    from archlab.search.runner import run_study
    from archlab.search.study import load_study

    result = run_study(load_study(path), progress=False)
    (trial,) = result.get_trials()
    log = json.loads((tmp_path / "out" / "evolve" / "log.json").read_text())
    assert log["config"]["remove_per_iteration"] == 2 and log["target_met"]
    assert trial.user_attrs["metric.latency_ms@t"] <= target and "metric.heldout_loss_se" in trial.user_attrs
    assert trial.user_attrs["evolve_log"].endswith("log.json") and trial.constraints
