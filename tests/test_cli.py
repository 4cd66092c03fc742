"""The command line: describe, presets, and one-line errors with exit code 2."""

import json

import pytest
from typer.testing import CliRunner

from archlab.cli import app

runner = CliRunner()


def test_describe_json_has_the_documented_keys():
    result = runner.invoke(app, ["describe", "sd15", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["params"] == 859_520_964 and abs(data["gflops"] / 392 - 1) <= 0.05
    for key in ("conv_blocks", "self_attention", "cross_attention"):
        assert key in data
    block = data["blocks"][0]
    assert {"stage", "index", "kind", "params", "gflops"} <= set(block)
    assert sum(b["params"] for b in data["blocks"]) + data["stem"]["params"] == data["params"]


def test_describe_table_and_resolution():
    result = runner.invoke(app, ["describe", "mobilediffusion"])
    assert result.exit_code == 0 and "11 conv, 15 SA, 18 CA" in result.stdout
    small = json.loads(runner.invoke(app, ["describe", "sd15", "--resolution", "32", "--json"]).stdout)
    assert small["params"] == 859_520_964 and small["gflops"] < 120


def test_describe_a_file_and_presets_list(tmp_path):
    from archlab import preset
    path = tmp_path / "mine.yaml"
    path.write_text(preset("tiny").to_yaml())
    assert runner.invoke(app, ["describe", str(path), "--json"]).exit_code == 0
    listing = runner.invoke(app, ["presets"])
    assert listing.exit_code == 0 and "mobilediffusion" in listing.stdout


def test_bad_input_is_one_line_and_exit_2(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: b\nchannels: [32, 64]\nstages:\n  down0: {blocks: [resnet, downsample]}\n"
                    "  down1: {blocks: [resnet, {transformer: {heads: 3}}]}\n  mid: {blocks: []}\n"
                    "  up1: {blocks: [resnet, upsample]}\n  up0: {blocks: [resnet]}\n")
    result = runner.invoke(app, ["describe", str(path)])
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: stages.down1.blocks[1].heads: 64 channels is not divisible by 3 heads"
    assert "Traceback" not in result.output
    assert runner.invoke(app, ["describe", "nope"]).exit_code == 2
    assert runner.invoke(app, ["describe", "sd15", "--resolution", "30"]).exit_code == 2


@pytest.mark.parametrize("table", ["xeon-2core-snapgen_torch-cpu", "xeon-2core-snapgen_litert"])
def test_describe_snapgen_on_its_shipped_tables_times_every_block(table):
    """SnapGen's acceptance: near 379M parameters and a latency for every block from each shipped table of its space."""
    result = runner.invoke(app, ["describe", "snapgen", "--table", table, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert abs(data["params"] / 379e6 - 1) <= 0.03
    assert data["blocks"] and all(b["latency_ms"] > 0 for b in data["blocks"])
    assert data["latency_table"].endswith(f"{table}.csv")
