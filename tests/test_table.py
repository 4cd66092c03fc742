"""Latency tables: file format, refusal of bad files, prediction, resume after a kill."""

import signal
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from archlab import ConfigError, Predictor, preset
from archlab.cli import app
from archlab.cost.backends import cpu_name
from archlab.cost.keys import block_specs, distinct_specs
from archlab.cost.table import COLUMNS, MAGIC, LatencyTable, MissingBlocks, fit_overhead

META = {"device": "test cpu", "runtime": "torch-cpu", "runtime_version": "torch x", "threads": 1, "dtype": "float32",
        "batch": 1, "warmup": 0, "repeats": 1}
runner = CliRunner()


def _filled(tmp_path, desc=None):
    desc = desc or preset("tiny")
    table = LatencyTable.create(tmp_path / "t.csv", META)
    for i, (key, spec) in enumerate(distinct_specs([desc]).items()):
        table.append(key, spec.kind, 1.0 + i, 0.1, 0.9 + i, 3)
    return table


def test_round_trip_and_prediction(tmp_path):
    table = _filled(tmp_path)
    again = LatencyTable.read(table.path)
    assert len(again) == len(table) and list(again.rows.columns) == COLUMNS
    again.metadata["overhead"] = {"intercept_ms": 2.0, "scale": 1.5}
    again.save()
    table = LatencyTable.read(table.path)
    pred = Predictor([table]).breakdown(preset("tiny"))
    expected_sum = sum(table.ms(spec.key) for _, spec in block_specs(preset("tiny")))
    assert pred.block_sum_ms[table.label] == pytest.approx(expected_sum)
    assert pred.latency_ms[table.label] == pytest.approx(2.0 + 1.5 * expected_sum)
    assert Predictor([table]).score(preset("tiny")).latency_ms[table.label] == pytest.approx(pred.latency_ms[table.label])


def test_missing_blocks_are_listed_then_measured_on_the_spot(tmp_path):
    meta = {**META, "device": cpu_name(), "warmup": 0, "repeats": 2}  # this machine's own table
    table = LatencyTable.create(tmp_path / "t.csv", meta)
    with pytest.raises(MissingBlocks) as info:
        Predictor([table]).score(preset("tiny"))
    assert "block(s) not measured" in str(info.value) and "resnet(" in str(info.value)
    assert len(info.value.keys) == len(distinct_specs([preset("tiny")]))
    result = runner.invoke(app, ["describe", "tiny", "--table", str(table.path), "--measure-missing", "--json"])
    assert result.exit_code == 0, result.output
    again = LatencyTable.read(table.path)
    assert len(again) == len(distinct_specs([preset("tiny")]))
    import json

    assert json.loads(result.stdout)["latency_ms"] == pytest.approx(Predictor([again]).score(preset("tiny")).latency_ms["t"])


def test_fit_overhead_recovers_a_line():
    o = fit_overhead([(10, 25), (20, 45), (40, 85)])
    assert o.intercept_ms == pytest.approx(5) and o.scale == pytest.approx(2)
    assert fit_overhead([(10, 12)]).intercept_ms == pytest.approx(2)


@pytest.mark.parametrize("corrupt,message", [
    (lambda text: "key,kind\n" + text, "not an archlab latency table"),
    (lambda text: MAGIC + "{not json\n" + text.split("\n", 1)[1], "metadata is not valid JSON"),
    (lambda text: text.replace('"runtime": "torch-cpu", ', ""), "metadata.runtime: is missing"),
    (lambda text: text.replace('"format": "archlab-latency-table/1"', '"format": "nn-meter"'), "metadata.format"),
    (lambda text: text.replace("median_ms", "latency"), "columns"),
    (lambda text: text.replace(",1.0,0.1,", ",fast,0.1,"), "column median_ms: must hold numbers"),
    (lambda text: text + text.splitlines()[2] + "\n", "appears twice"),
])
def test_corrupted_or_foreign_tables_are_refused(tmp_path, corrupt, message):
    table = _filled(tmp_path)
    table.path.write_text(corrupt(table.path.read_text()))
    with pytest.raises(ConfigError, match=message):
        LatencyTable.read(table.path)
    result = runner.invoke(app, ["describe", "tiny", "--table", str(table.path)])
    assert result.exit_code == 2 and result.stderr.startswith("error: ") and "Traceback" not in result.output


def test_a_partial_last_row_is_dropped_and_repaired(tmp_path):
    table = _filled(tmp_path)
    n = len(table)
    with open(table.path, "a") as f:
        f.write("resnet(conv=regular,k=3,act=si")  # a build killed mid-write
    again = LatencyTable.read(table.path)
    assert len(again) == n
    again.append("extra-key", "resnet", 1.0, 0.0, 1.0, 1)
    assert len(LatencyTable.read(table.path)) == n + 1


def test_describe_with_a_table_adds_milliseconds(tmp_path):
    table = _filled(tmp_path)
    import json

    result = runner.invoke(app, ["describe", "tiny", "--table", str(table.path), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["latency_ms"] == pytest.approx(sum(b["latency_ms"] for b in data["blocks"]))
    assert "ms" in runner.invoke(app, ["describe", "tiny", "--table", str(table.path)]).stdout


@pytest.mark.slow
def test_killed_build_resumes_without_measuring_twice(tmp_path):
    out = tmp_path / "resume.csv"
    cmd = [sys.executable, "-m", "archlab.cli", "table", "build", "tiny", "--out", str(out), "--repeats", "1",
           "--warmup", "0", "--threads", "1", "--calibrate", "0", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline:  # wait until some rows are on disk, then kill -9 mid-build
        if out.exists() and out.read_text().count("\n") >= 12:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = LatencyTable.read(out)
    from archlab import load_space

    total = len(distinct_specs(load_space("tiny").iter_stage_variants()))
    assert 0 < len(before) < total, "the kill should land mid-build"
    stamps = dict(zip(before.rows["key"], before.rows["measured_at"]))
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert f"{total - len(before)} block(s) measured, {len(before)} already there" in result.stderr
    after = LatencyTable.read(out)  # reading refuses duplicate keys
    assert len(after) == total
    assert all(dict(zip(after.rows["key"], after.rows["measured_at"]))[k] == v for k, v in stamps.items())


def test_resume_refuses_other_settings(tmp_path):
    table = _filled(tmp_path)
    result = runner.invoke(app, ["table", "build", "preset:tiny", "--out", str(table.path), "--threads", "2", "--calibrate", "0", "--no-progress"])
    assert result.exit_code == 2 and "metadata." in result.stderr


def test_a_min_statistic_table_predicts_from_minima(tmp_path):
    table = _filled(tmp_path)  # rows: median 1 + i, min 0.9 + i
    table.metadata["statistic"] = "min"
    table.save()
    table = LatencyTable.read(table.path)
    total = Predictor([table]).breakdown(preset("tiny")).block_sum_ms[table.label]
    medians = sum(float(table.rows.set_index("key").loc[s.key, "median_ms"]) for _, s in block_specs(preset("tiny")))
    assert total == pytest.approx(medians - 0.1 * len(block_specs(preset("tiny"))))
    table.metadata["statistic"] = "mode"
    table.save()
    with pytest.raises(ConfigError, match="metadata.statistic"):
        LatencyTable.read(table.path)


@pytest.mark.slow
def test_build_calibrate_validate_on_this_machine_with_clean_json(tmp_path):
    """Every --json prints only JSON on stdout: progress bars and messages go to stderr."""
    import json

    out = tmp_path / "tiny.csv"
    build = runner.invoke(app, ["table", "build", "tiny", "--out", str(out), "--repeats", "2", "--warmup", "0", "--threads", "1",
                                "--calibrate", "3"])
    assert build.exit_code == 0, build.output
    assert "block(s) measured" in build.stderr and build.stdout == ""
    result = runner.invoke(app, ["table", "validate", str(out), "--samples", "3", "--seed", "5", "--repeats", "1", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)  # nothing but JSON on stdout
    assert data["samples"] == 3 and {"within_10", "rmspe", "spearman", "flops_rmspe"} <= set(data)
    calibrated = runner.invoke(app, ["table", "calibrate", str(out), "--models", "3", "--seed", "2", "--repeats", "2"])
    assert calibrated.exit_code == 0, calibrated.output  # the table's own source (the tiny space), no --space needed
    assert LatencyTable.read(out).metadata["overhead"]["seed"] == 2
    wrong = runner.invoke(app, ["table", "calibrate", str(out), "--space", "mobilediffusion", "--models", "2"])
    assert wrong.exit_code == 2 and "block(s) not measured" in wrong.stderr  # refused before timing anything
