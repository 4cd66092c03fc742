"""SnapFusion's evolving search on a tiny proxy and a table made for the test."""

import json

import pytest
import torch
import yaml

from archlab import ConfigError, preset
from archlab.cost.keys import distinct_specs
from archlab.cost.table import LatencyTable
from archlab.quality.proxy import ProxyConfig, proxy_description
from archlab.quality.train import ProxyModel, TrainConfig
from archlab.search.evolve import EvolveConfig, Evolution, edit, load_evolve_config, removable, transfer
from archlab.search.space import load_space

META = {"device": "test", "runtime": "torch-cpu", "runtime_version": "x", "threads": 1, "dtype": "float32", "batch": 1,
        "warmup": 0, "repeats": 1}


def _table(tmp_path):
    """Latency proportional to FLOPs, with attention at the top level made expensive."""
    table = LatencyTable.create(tmp_path / "t.csv", META)
    for key, spec in distinct_specs(load_space("tiny").iter_stage_variants()).items():
        ms = spec.cost().flops / 1e6 + (5.0 if spec.kind == "transformer" and spec.resolution == 16 else 0.5)
        table.append(key, spec.kind, ms, 0.0, ms, 1)
    return table


def _start():
    space = load_space("tiny")
    choices = {n: space.options[n][-1] for n in space.active(2)}
    choices["depth"] = 2
    return space.decode(choices, name="tiny-start")


def test_removable_blocks_keep_every_other_shape():
    desc = preset("sd15")
    names = {f"{s}.{i}" for s, i in removable(desc)}
    assert "down0.1" in names and "mid.0" in names and "mid.1" in names
    assert "up0.0" not in names  # takes a skip
    assert "down1.0" not in names  # changes width


def test_transfer_keeps_weights_of_untouched_blocks():
    desc = proxy_description(preset("sd15"), ProxyConfig(width=0.05, resolution=16, text_dim=32))
    torch.manual_seed(0)
    model = ProxyModel(desc)
    smaller = edit(desc, "mid", 1, "remove")
    new = transfer(model, smaller, "mid", 1, "remove")
    assert torch.equal(new.unet.stages["mid"][1].conv1.weight, model.unet.stages["mid"][2].conv1.weight)
    bigger = transfer(model, edit(desc, "down0", 1, "copy"), "down0", 1, "copy")
    assert torch.equal(bigger.unet.stages["down0"][2].proj_in.weight, model.unet.stages["down0"][1].proj_in.weight)


def test_evolution_reaches_its_target_and_logs_every_action(tmp_path):
    table = _table(tmp_path)
    start = _start()
    base = table.predict(start).total_ms
    cfg = EvolveConfig(start="unused", table=str(table.path), latency_target_ms=base * 0.8,
                       proxy=ProxyConfig(width=1.0, resolution=16, text_dim=32, text_tokens=10),
                       train=TrainConfig(steps=4, batch=4, block_drop=0.2, threads=1), iterations=6, finetune_steps=1,
                       heldout=8, out=str(tmp_path / "out"))
    evo = Evolution(cfg, progress=False, log=lambda m: None, start=start)
    result = evo.run()
    log = json.loads((tmp_path / "out" / "log.json").read_text())
    assert log["target_met"] and evo.latency(result) <= base * 0.8
    removed = [a for a in log["actions"] if a["action"] == "remove"]
    assert removed and all({"delta_quality", "delta_latency_ms", "latency_after_ms"} <= set(a) for a in removed)
    assert (tmp_path / "out" / "actions.csv").read_text().count("\n") == len(log["actions"]) + 1
    assert yaml.safe_load((tmp_path / "out" / "result.yaml").read_text())["name"].endswith("-evolved")


def test_evolve_config_is_validated(tmp_path):
    path = tmp_path / "e.yaml"
    path.write_text("start: sd15\ntable: t.csv\n")
    with pytest.raises(ConfigError, match="latency_target_ms: is required"):
        load_evolve_config(path)
    path.write_text("start: sd15\ntable: t.csv\nlatency_target_ms: 10\ntrain: {stepz: 3}\n")
    with pytest.raises(ConfigError, match="train.stepz: unknown field"):
        load_evolve_config(path)
