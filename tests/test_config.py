"""The one config reader: every file kind goes through it, errors name the field, nothing is half-done."""

from dataclasses import dataclass, field
from typing import Literal

import pytest
import yaml
from typer.testing import CliRunner

from archlab import ConfigError
from archlab.cli import app
from archlab.config import FilePath, NameOrPath, load, read, require, to_data
from archlab.quality.config import QualityConfig
from archlab.search.evolve import EvolveFile
from archlab.search.study import StudyConfig


@dataclass(frozen=True)
class Inner:
    n: int = 1
    ratio: float = 0.5
    kind: Literal["a", "b"] = "a"

    def __post_init__(self):
        require(self.n >= 1, "n", f"{self.n} is not a positive integer")


@dataclass(frozen=True)
class Outer:
    name: str
    inner: Inner = field(default_factory=Inner)
    items: tuple[int, ...] = ()
    path: FilePath | None = None
    ref: NameOrPath | None = None
    mapping: dict[str, float] = field(default_factory=dict)


def test_types_defaults_and_nesting():
    cfg = read(Outer, {"name": "x", "inner": {"n": 3, "ratio": 2}, "items": 4, "mapping": {"a": 1}})
    assert cfg == Outer("x", Inner(3, 2.0, "a"), (4,), None, None, {"a": 1.0})  # a tuple takes one value; ints widen to floats
    assert read(Outer, to_data(cfg)) == cfg  # round trip


@pytest.mark.parametrize("data,message", [
    ({}, "name: is required"),
    ({"name": "x", "nmae": 1}, "nmae: unknown field; allowed: name, inner, items, path, ref, mapping"),
    ({"name": "x", "inner": {"m": 1}}, "inner.m: unknown field; allowed: n, ratio, kind"),
    ({"name": "x", "inner": {"n": 0}}, "inner.n: 0 is not a positive integer"),
    ({"name": "x", "inner": {"n": True}}, "inner.n: True is not an integer"),
    ({"name": "x", "inner": {"n": "3"}}, "inner.n: '3' is not an integer"),
    ({"name": "x", "inner": {"kind": "c"}}, "inner.kind: 'c' is not one of a, b"),
    ({"name": "x", "inner": 3}, "inner: must be a mapping of fields, got 3"),
    ({"name": "x", "items": [1, "two"]}, "items[1]: 'two' is not an integer"),
    ({"name": 5}, "name: 5 is not a string"),
])
def test_errors_name_the_field_path(data, message):
    with pytest.raises(ConfigError) as info:
        read(Outer, data)
    assert str(info.value) == message


def test_paths_are_relative_to_the_file(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.yaml").write_text("name: x\npath: ../data\nref: mobilediffusion\n")
    cfg = load(Outer, tmp_path / "sub" / "c.yaml")
    assert cfg.path == str(tmp_path / "data") and cfg.ref == "mobilediffusion"  # a registry name stays a name
    (tmp_path / "sub" / "c.yaml").write_text("name: x\nref: my-space.yaml\n")
    assert load(Outer, tmp_path / "sub" / "c.yaml").ref == str(tmp_path / "sub" / "my-space.yaml")


def test_every_file_kind_is_read_by_the_same_reader_and_defaults_live_once():
    study = read(StudyConfig, {"name": "s", "space": "tiny", "objectives": [{"metric": "params", "direction": "minimize"}]})
    evolve = read(EvolveFile, {"table": "x86-2core_torch-cpu", "latency_target_ms": 100})
    assert study.quality == QualityConfig() == evolve.quality  # one quality pipeline, one set of defaults
    assert study.sampler.kind == "tpe" and evolve.evolve.metric == "text_gap"
    assert study.quality_metrics == () and not study.needs_proxy
    watched = read(StudyConfig, {"name": "s", "space": "tiny", "objectives": [{"metric": "heldout_loss", "direction": "minimize"}],
                                 "quality": {"eval": {"metrics": ["text_gap", "heldout_loss"]}}})
    assert watched.quality_metrics == ("heldout_loss", "text_gap")  # objectives first, then the extra metrics to store


@pytest.mark.parametrize("command,text,message", [
    (["study", "run"], "name: s\nspace: tiny\nobjectives: [{metric: params, direction: minimize}]\nsampler: {kind: tpe, sed: 3}\n",
     "error: sampler.sed: unknown field; allowed: kind, seed, startup_trials, population"),
    (["evolve"], "table: x86-2core_torch-cpu\nlatency_target_ms: 100\nevolve: {iterations: 0}\n",
     "error: evolve.iterations: 0 is not a positive integer"),
    (["proxy", "train", "tiny", "--config"], "train: {batch: 0}\n", "error: quality.train.batch: 0 must be at least 1"),
    (["table", "keys"], "name: s\nlevels: [{channels: [16], colour: [1]}]\n",
     "error: levels[0].colour: unknown field; allowed: channels, down_resnets, down_layers, up_layers, self_attention, separable"),
    (["describe"], "name: d\nchannels: [32]\nstages: {down0: {blocks: [resnet]}, mid: {blocks: []}, up0: {blocks: [resnet]}}\nfoo: 1\n",
     "error: foo: unknown field; allowed: name, channels, stages,"),
])
def test_bad_files_are_one_line_exit_2_and_nothing_is_written(tmp_path, command, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    before = set(tmp_path.rglob("*"))
    result = CliRunner().invoke(app, [*command, str(path)])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(message) and result.stderr.count("\n") == 1 and "Traceback" not in result.output
    assert set(tmp_path.rglob("*")) == before  # nothing half-written


def test_study_files_in_the_repository_read_cleanly():
    from pathlib import Path

    from archlab.search.evolve import load_evolve_file
    from archlab.search.study import load_study

    studies = Path(__file__).parents[1] / "studies"
    for path in studies.glob("*.yaml"):
        data = yaml.safe_load(path.read_text())
        if "objectives" in data:
            assert load_study(path).name == data["name"]
        elif "latency_target_ms" in data:
            assert load_evolve_file(path).latency_target_ms > 0
