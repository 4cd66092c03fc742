"""Report in a real headless Chromium, the dashboard's HTTP API, and export."""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
import torch
import yaml

from archlab import count
from archlab.results.export import export_architecture, pick_trial
from archlab.results.report import write_report
from archlab.search.runner import run_study
from archlab.search.study import load_study

STUDIES = os.path.join(os.path.dirname(__file__), "..", "studies")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("study")
    data = yaml.safe_load(open(os.path.join(STUDIES, "tiny.yaml")))
    data["out"] = str(tmp / "out")
    data["budget"] = {"trials": 5}
    path = tmp / "study.yaml"
    path.write_text(yaml.safe_dump(data))
    cfg = load_study(path)
    return path, cfg, run_study(cfg, progress=False)


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip("no Chromium here (.ci/run installs Debian's chromium)")


@pytest.mark.slow
def test_report_renders_in_headless_chromium(finished, tmp_path):
    _, cfg, study = finished
    report = write_report(study, cfg, tmp_path / "report.html")
    text = report.read_text()
    assert "data:image/png;base64," in text  # each front member's sample grid, inline
    assert "lower is better" in text and "held-out denoising loss" in text  # axes say which way, the page what
    assert not re.findall(r"<script[^>]*\bsrc=", text)  # plotly.js is inline: self-contained, opens offline
    chromium = _chromium()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--log-level=0", "--virtual-time-budget=10000"]
    dom = subprocess.run([chromium, *flags, "--dump-dom", report.as_uri()], capture_output=True, text=True, timeout=120)
    plots = text.count('class="plotly-graph-div"')
    assert plots >= 2 and dom.stdout.count('class="plot-container plotly"') == plots, "plotly drew every figure"
    assert dom.stdout.count('class="main-svg"') >= plots
    console_errors = [line for line in dom.stderr.splitlines() if ":CONSOLE(" in line and ("Error" in line or "Uncaught" in line)]
    assert not console_errors, console_errors
    shot = tmp_path / "shot.png"
    subprocess.run([chromium, *flags, f"--screenshot={shot}", "--window-size=1200,1400", report.as_uri()],
                   capture_output=True, timeout=120)
    from PIL import Image
    import numpy as np

    img = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    red = ((img[:, :, 0] > 200) & (img[:, :, 1] < 120) & (img[:, :, 2] < 120)).sum()  # the front's markers
    blue = ((img[:, :, 2] > 140) & (img[:, :, 0] < 120)).sum()
    assert red > 20 and blue > 20, (red, blue)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_dashboard_serves_the_study_on_localhost(finished):
    pytest.importorskip("optuna_dashboard")
    path, cfg, _ = finished
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "archlab.cli", "dashboard", str(path), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        data = None
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2) as r:
                    data = json.loads(r.read())
                break
            except OSError:
                time.sleep(0.3)
        assert data is not None, "the dashboard answered"
        names = [s["study_name"] for s in data["study_summaries"]]
        assert cfg.name in names
        study_id = next(s["study_id"] for s in data["study_summaries"] if s["study_name"] == cfg.name)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies/{study_id}", timeout=10) as r:
            detail = json.loads(r.read())
        assert detail["objective_names"] == [o.name for o in cfg.objectives]  # named, not "Objective 0"
        trained = [t for t in detail["trials"] if any(u["key"] == "samples_artifact" for u in t["user_attrs"])]
        assert trained and all(a["mimetype"] == "image/png" for t in trained for a in t["artifacts"])
        artifact = trained[0]["artifacts"][0]
        url = f"http://127.0.0.1:{port}/artifacts/{study_id}/{trained[0]['trial_id']}/{artifact['artifact_id']}"
        with urllib.request.urlopen(url, timeout=10) as r:
            assert r.read()[:8] == b"\x89PNG\r\n\x1a\n"  # the sample grid itself
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_every_trained_trial_keeps_its_samples_as_an_artifact(finished):
    from optuna.artifacts import get_all_artifact_meta

    _, cfg, study = finished
    trained = [t for t in study.trials if t.state.name == "COMPLETE" and not t.user_attrs.get("quality_skipped")]
    assert trained
    for t in trained:
        meta = get_all_artifact_meta(t, storage=study._storage)
        assert [m.artifact_id for m in meta] == [t.user_attrs["samples_artifact"]]
        assert os.path.isfile(os.path.join(cfg.out_dir, "artifacts", meta[0].artifact_id))


def test_sample_writes_a_grid_with_captions_for_a_trained_proxy(tmp_path):
    from PIL import Image
    from typer.testing import CliRunner

    from archlab.cli import app

    runner = CliRunner()
    trained = runner.invoke(app, ["proxy", "train", "tiny", "--steps", "3", "--batch", "4", "--eval-heldout", "4",
                                  "--eval-samples", "2", "--metric", "heldout_loss", "--out", str(tmp_path / "px"), "--no-progress"])
    assert trained.exit_code == 0, trained.output
    (tmp_path / "captions.txt").write_text("a red circle on the left\na small blue square\n")
    result = runner.invoke(app, ["sample", str(tmp_path / "px" / "model.safetensors"), "--captions", str(tmp_path / "captions.txt"),
                                 "--caption", "a large green triangle", "--steps", "2", "--out", str(tmp_path / "grid.png")])
    assert result.exit_code == 0, result.output
    image = Image.open(tmp_path / "grid.png")
    assert image.size[0] == 3 * 128 and image.size[1] > 128  # three samples in a row, captions beneath
    none = runner.invoke(app, ["sample", str(tmp_path / "px" / "model.safetensors"), "--out", str(tmp_path / "g2.png")])
    assert none.exit_code == 2 and "give at least one caption" in none.stderr


@pytest.mark.slow
def test_export_writes_everything_and_onnx_matches(finished, tmp_path):
    _, cfg, study = finished
    chosen = pick_trial(study, cfg, pick="params<=200000")
    from archlab.arch.reading import description_from_dict

    desc = description_from_dict(chosen.user_attrs["description"])
    metrics = chosen.user_attrs["proxy"]["metrics"]
    card = export_architecture(desc, tmp_path / "export", provenance={"study": cfg.name, "trial": chosen.number}, metrics=metrics)
    for name in ("description.yaml", "description.json", "model.safetensors", "model.onnx", "model_card.json",
                 "MODEL_CARD.md", "handoff.yaml"):
        assert (tmp_path / "export" / name).exists(), name
    assert card["onnx_max_abs_diff"] <= 1e-3
    c = count(desc)
    assert (card["params"], card["gflops"]) == (c.params, c.gflops)
    handoff = yaml.safe_load((tmp_path / "export" / "handoff.yaml").read_text())
    assert (handoff["distill"]["guidance_min"], handoff["distill"]["guidance_max"]) == (2.0, 14.0)
    assert handoff["teacher"] == "." and handoff["gan"]["steps"] >= 1
    from archlab.distill import load_distill_file

    assert load_distill_file(tmp_path / "export" / "handoff.yaml").distill.student_steps == 8
    from safetensors.torch import load_file

    weights = load_file(str(tmp_path / "export" / "model.safetensors"))
    assert sum(v.numel() for v in weights.values()) == c.params
    text = (tmp_path / "export" / "MODEL_CARD.md").read_text()
    assert f"study {cfg.name}, trial {chosen.number}" in text and "proxy heldout_loss:" in text and "±" in text


def test_export_inherits_matching_blocks_from_a_diffusers_unet(tmp_path, tiny_diffusers_unet):
    from safetensors.torch import load_file

    from archlab.arch.description import layout

    from archlab.arch.editing import edit
    from archlab.arch.diffusers_import import read_description, read_weights

    full = read_description(tiny_diffusers_unet)
    smaller = edit(full, "down0.1", "remove")  # SnapFusion-style: a transformer removed
    card = export_architecture(smaller, tmp_path / "out", from_diffusers=tiny_diffusers_unet, onnx=False)
    inherited = {b["block"]: b["from"] for b in card["inherited_blocks"]}
    # every remaining block has an identical block in the same stage of the pretrained UNet
    assert card["fresh_blocks"] == []
    assert set(inherited) == {s.name for s in layout(smaller)} | {"conv_in", "time_embedding", "conv_norm_out", "conv_out"}
    ours, theirs = load_file(str(tmp_path / "out" / "model.safetensors")), read_weights(tiny_diffusers_unet)
    assert inherited["up0.1"] == "up_blocks.1.attentions.0"
    assert torch.equal(ours["stages.up0.1.proj_in.weight"], theirs["up_blocks.1.attentions.0.proj_in.weight"])


def test_export_gives_every_shipped_tables_latency_for_its_own_device_without_a_foreign_machine_warning(recwarn):
    from archlab import preset
    from archlab.cost.fingerprint import DeviceMismatchWarning
    from archlab.cost.table import LatencyTable
    from archlab.resources import names
    from archlab.results.export import latency_on_tables

    out = latency_on_tables(preset("mobilediffusion"))
    assert set(out) == {LatencyTable.load(n).name for n in names("tables")}
    assert out["h100_torch-cuda.csv"]["device"] == "NVIDIA H100 80GB HBM3"  # a table no CPU host is, named as such
    assert all(out[t]["ms"] > 0 for t in ("x86-2core_torch-cpu.csv", "x86-2core_litert.csv", "h100_torch-cuda.csv"))
    # a table of another space (SnapGen's) says how many blocks it lacks rather than inventing a figure
    snapgen = latency_on_tables(preset("snapgen"))
    for table in ("xeon-2core-snapgen_torch-cpu.csv", "xeon-2core-snapgen_litert.csv"):
        assert out[table]["ms"] is None and out[table]["missing_blocks"] > 0
        assert snapgen[table]["ms"] > 0
    assert not [w for w in recwarn if issubclass(w.category, DeviceMismatchWarning)]
