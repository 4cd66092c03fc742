"""Latency tables: file format, refusal of bad files, prediction, resume after a kill."""

import dataclasses
import json
import signal
import subprocess
import sys
import time

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from archlab import ConfigError, Predictor, preset
from archlab.cli import app
from archlab.cost.backends import cpu_name
from archlab.cost.keys import block_specs, distinct_specs
from archlab.cost.table import COLUMNS, MAGIC, FitPoint, LatencyTable, MissingBlocks, Overhead, fit_overhead

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
    from archlab.cost.fingerprint import fingerprint

    meta = {**META, "device": cpu_name(), "warmup": 0, "repeats": 2, "fingerprint": fingerprint(1)}  # this machine's own table
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


def test_fit_overhead_recovers_a_line_and_takes_a_richer_form_only_beyond_noise():
    line = [FitPoint((x, 0.0, 0.0), 0.0, 5 + 2 * x) for x in (10, 20, 40)]
    o, _ = fit_overhead(line)
    assert o.intercept_ms == pytest.approx(5) and o.scales[0] == pytest.approx(2)
    assert fit_overhead([FitPoint((10.0, 0, 0), 0.0, 12)])[0].intercept_ms == pytest.approx(2)
    rng = np.random.default_rng(0)
    weighty = []
    for _ in range(8):  # whole models that pay 100 ms per GB of weights beyond their blocks
        kinds, gb = tuple(rng.uniform(100, 1000, 3)), rng.uniform(0.5, 4)
        weighty.append(FitPoint(kinds, gb, 50 + 0.9 * sum(kinds) + 100 * gb))
    o, loo = fit_overhead(weighty)
    assert o.form == "weights" and o.per_gb_ms == pytest.approx(100) and loo["weights"] < 1e-6 < loo["sum"]
    assert Overhead.from_metadata(o.to_metadata()) == o

    # models whose time is the block sum plus 3% noise: a richer form's lower leave-one-out
    # error is luck, and the lowest one alone would take it in 11 of 40 such sets
    richer, lowest_not_sum = 0, 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        plain = [FitPoint(tuple(rng.uniform(300, 1000, 3)), rng.uniform(0.5, 2), 0.0) for _ in range(8)]
        plain = [FitPoint(p.kind_sums, p.weight_gb, (150 + sum(p.kind_sums)) * (1 + rng.normal(0, 0.03))) for p in plain]
        o, loo = fit_overhead(plain)
        richer += o.form != "sum"
        lowest_not_sum += min(loo, key=loo.get) != "sum"
    assert richer <= 2 and lowest_not_sum >= 8
    assert Overhead.from_metadata({"intercept_ms": 2.0, "scale": 1.5}).scales == (1.5, 1.5, 1.5)  # tables made before forms


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
def test_build_calibrate_validate_check_on_this_machine_with_clean_json(tmp_path):
    """Build, calibrate, validate (test-retest, resumable) and check a table here; every --json prints only JSON."""
    import json

    out = tmp_path / "tiny.csv"
    build = runner.invoke(app, ["table", "build", "tiny", "--out", str(out), "--repeats", "2", "--warmup", "0", "--threads", "1",
                                "--calibrate", "5"])
    assert build.exit_code == 0, build.output
    assert "block(s) measured" in build.stderr and build.stdout == ""
    table = LatencyTable.read(out)
    assert table.metadata["fingerprint"]["cpu_model"] and table.metadata["statistic"] == "min"
    overhead = table.metadata["overhead"]
    assert overhead["form"] in ("sum", "weights", "kinds", "intercept") and len(overhead["models"]) == 5
    assert all("description" in m for m in overhead["models"])
    timings = tmp_path / "v.timings.json"
    args = ["table", "validate", str(out), "--samples", "4", "--seed", "5", "--repeats", "1", "--json", "--timings", str(timings)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)  # nothing but JSON on stdout
    assert data["samples"] == 4 and {"within_10", "rmspe", "spearman", "flops_rmspe", "retest_rmspe", "rmspe_over_retest"} <= set(data)
    assert set(data["table_minus_flops"]) == {"within_10", "within_5", "rmspe", "spearman"}
    stored = json.loads(timings.read_text())
    assert all(len(m["passes"]) == 2 for m in stored["models"].values())
    stamps = {n: [p["measured_at"] for p in m["passes"]] for n, m in stored["models"].items()}
    again = json.loads(runner.invoke(app, args).stdout)  # resumed: nothing re-timed, same figures
    assert again["rmspe"] == data["rmspe"]
    shown = runner.invoke(app, [x for x in args if x != "--json"])  # the same record rendered for a person
    assert shown.exit_code == 0 and "closer than FLOPs" in shown.stdout, shown.output
    assert "goals: within +-10% >= 90%: " in shown.stdout and "Spearman >= 0.97: " in shown.stdout
    assert {n: [p["measured_at"] for p in m["passes"]] for n, m in json.loads(timings.read_text())["models"].items()} == stamps
    from archlab.tables import ModelTimings, score

    stored_timings = ModelTimings.stored(json.loads(timings.read_text()))  # scored again with no backend: same figures
    rescored = score(LatencyTable.read(out), stored_timings, stored_timings.descs, seed=5).to_dict()
    shared = set(rescored) & set(data)
    assert {"rmspe", "flops_spearman", "retest_rmspe", "table_minus_flops", "table_closer"} <= shared
    assert {k: rescored[k] for k in shared} == {k: data[k] for k in shared}
    checked = runner.invoke(app, ["table", "check", str(out), "--models", "2", "--repeats", "1", "--json"])
    assert checked.exit_code == 0, checked.output
    report = json.loads(checked.stdout)
    assert report["fingerprint_differences"] == [] and len(report["models"]) == 2
    assert report["verdict"]["holds"] == (abs(report["median_drift"]) <= 0.10)
    calibrated = runner.invoke(app, ["table", "calibrate", str(out), "--models", "5", "--seed", "2", "--repeats", "2"])
    assert calibrated.exit_code == 0, calibrated.output  # the table's own source (the tiny space), no --space needed
    assert LatencyTable.read(out).metadata["overhead"]["seed"] == 2
    before = LatencyTable.read(out).metadata["overhead"]
    refitted = runner.invoke(app, ["table", "calibrate", str(out), "--refit"])  # times nothing: same models, same fit
    assert refitted.exit_code == 0 and "refitted on 5 stored models" in refitted.stderr, refitted.output
    assert LatencyTable.read(out).metadata["overhead"] == before
    joint_timings = tmp_path / "joint.timings.json"
    joint = runner.invoke(app, ["table", "validate", str(out), "--samples", "3", "--seed", "6", "--repeats", "1", "--json",
                                "--timings", str(joint_timings), "--recalibrate"])
    assert joint.exit_code == 0 and "refitted on 5 calibration models" in joint.stderr, joint.output
    joint_result = json.loads(joint.stdout)
    assert joint_result["calibration"] == "refitted on 5 models timed in the same passes"
    assert joint_result["as_stored"]["overhead"] == {k: v for k, v in before.items() if k != "models"}  # the old fit, same timings
    assert joint_result["as_stored"]["samples"] == 3
    timed = json.loads(joint_timings.read_text())["models"]
    assert len(timed) == 8 and all(len(m["passes"]) == 2 for m in timed.values())  # calibration and validation, interleaved
    after = LatencyTable.read(out).metadata["overhead"]
    assert after["seed"] == 2 and [m["name"] for m in after["models"]] == [m["name"] for m in before["models"]]
    assert [m["measured_ms"] for m in after["models"]] == [round(min(p["min_ms"] for p in timed[m["name"]]["passes"]), 3)
                                                          for m in after["models"]]  # refitted on the new timings
    both = runner.invoke(app, ["table", "calibrate", str(out), "--refit", "--statistic", "median"])
    assert both.exit_code == 2 and "--statistic" in both.stderr
    wrong = runner.invoke(app, ["table", "calibrate", str(out), "--space", "mobilediffusion", "--models", "2"])
    assert wrong.exit_code == 2 and "block(s) not measured" in wrong.stderr  # refused before timing anything

    # the same table as if measured on another machine: predicting warns once, timing refuses
    from archlab.cost.fingerprint import DeviceMismatchWarning

    table = LatencyTable.read(out)
    table.metadata["fingerprint"] = {**table.metadata["fingerprint"], "cpu_model": "Other CPU 9000"}
    table.path = tmp_path / "foreign.csv"
    table.save()
    from archlab import load_space

    member = load_space("tiny").samples(1, seed=0)[0][1]
    (tmp_path / "member.yaml").write_text(member.to_yaml())
    with pytest.warns(DeviceMismatchWarning, match="cpu_model 'Other CPU 9000' there"):
        Predictor([LatencyTable.read(table.path)]).score(member)
    from archlab.cost import fingerprint as fp

    fp._WARNED.clear()  # once per process: the command line is a new process
    described = runner.invoke(app, ["describe", str(tmp_path / "member.yaml"), "--table", str(table.path)])
    assert described.exit_code == 0 and described.stderr.startswith("warning: ") and "foreign.csv was measured on" in described.stderr
    for command in (["table", "validate", str(table.path), "--samples", "2", "--seed", "9"],
                    ["table", "calibrate", str(table.path), "--models", "2"],
                    ["describe", "mobilediffusion", "--table", str(table.path), "--measure-missing"]):
        refused = runner.invoke(app, command)
        assert refused.exit_code == 2 and "measured on another machine" in refused.stderr, command
        assert refused.stderr.count("\n") == 1


def test_recalibrating_in_a_validation_refuses_a_model_in_both_sets_before_timing(tmp_path):
    from archlab.tables import validate

    with pytest.raises(ConfigError, match="recalibrate: calibration and validation models must differ; both hold"):
        validate(_filled(tmp_path), None, [preset("tiny")], seed=1, recalibrate=[preset("tiny")])


def test_same_hardware_but_slower_reference_is_named_as_such():
    """Only the reference benchmark differs: the warning says the hardware reads the same (another host, or busy)."""
    from archlab.cost import fingerprint as fp

    here = fp.fingerprint(1)
    meta = {"device": here["cpu_model"], "runtime": "torch-cpu", "threads": 1,
            "fingerprint": {**here, "reference_ms": here["reference_ms"] / 10}}
    fp._WARNED.discard("busy.csv")
    with pytest.warns(fp.DeviceMismatchWarning, match=r"reads the same as this one .*busy now\): reference benchmark"):
        differences = fp.warn_if_foreign("busy.csv", meta)
    assert differences == [d for d in differences if d.startswith("reference benchmark")] and differences


def test_the_reference_benchmark_is_timed_once_per_process_however_it_is_asked_for(monkeypatch):
    """fingerprint(1) and fingerprint(1, "cpu") are one reading: two readings of a busy machine would disagree."""
    from archlab.cost import fingerprint as fp

    calls = []
    monkeypatch.setattr(fp, "reference_ms", lambda threads, device="cpu", runs=7: calls.append(threads) or 5.0 + len(calls))
    fp._fingerprint.cache_clear()
    try:
        assert fp.fingerprint(3) == fp.fingerprint(3, "cpu") == fp.fingerprint(threads=3, device="cpu")
        assert calls == [3]
    finally:
        fp._fingerprint.cache_clear()


def test_a_slow_reading_of_the_reference_is_timed_again_before_it_refuses(monkeypatch):
    """A burst of load is not another machine: a reference-only difference is re-timed; a lasting one still counts."""
    from archlab.cost import fingerprint as fp

    readings = iter([20.0, 19.0, 10.5])  # busy at first, then the machine's own speed
    monkeypatch.setattr(fp, "reference_ms", lambda threads, device="cpu", runs=7: next(readings))
    fp._fingerprint.cache_clear()
    try:
        recorded = {**fp.static_fingerprint(), "reference_threads": 4, "reference_ms": 10.0}
        assert fp.differences_here(recorded, 4, pause_s=0) == []
        assert fp.fingerprint(4)["reference_ms"] == 10.5  # the fastest reading is kept for the process
        readings = iter([30.0] * 4)
        fp._fingerprint.cache_clear()
        assert fp.differences_here(recorded, 4, pause_s=0) == ["reference benchmark 10.0 ms there, 30.0 ms here (3.00x)"]
    finally:
        fp._fingerprint.cache_clear()


def test_the_reference_is_the_fastest_of_bursts_spread_in_time_so_a_slow_spell_at_build_does_not_set_it(monkeypatch):
    """A build that starts in a slow spell must not record a slow reference (its own host would then be refused)."""
    from archlab.cost import fingerprint as fp

    durations = iter([0.020] * 4 + [0.015] * 4 + [0.008] * 4)  # per run, 2 warm-ups + 2 timed per burst: a slow spell, then quiet
    sleeps = []

    class Clock:
        now, started = 0.0, False

        def perf_counter(self):
            if self.started:
                self.now += next(durations)
            self.started = not self.started
            return self.now

        def sleep(self, s):
            sleeps.append(s)

    monkeypatch.setattr(fp, "time", Clock())
    assert fp.reference_ms(1, runs=2, readings=3, gap_s=0.25) == 8.0
    assert sleeps == [0.25, 0.25]


def test_the_reference_tolerates_a_shared_hosts_own_spread_but_not_a_host_twice_as_fast_or_slow():
    from archlab.cost import fingerprint as fp

    here = {**fp.static_fingerprint(), "reference_threads": 2, "reference_ms": 4.0}
    for there in (2.5, 4.0, 6.0):  # up to 1.6x either way: within a shared 2-core VM's own spread
        assert fp.compare({**here, "reference_ms": there}, here) == []
    for there in (2.0, 8.0):
        assert fp.compare({**here, "reference_ms": there}, here) == [
            f"reference benchmark {there:.1f} ms there, 4.0 ms here ({4.0 / there:.2f}x)"]


def test_calibration_models_span_the_sizes_validation_models_are_drawn_as_the_space_draws():
    """Calibration picks models at quantiles of size (a weight term needs both ends); validation stays random."""
    from archlab import load_space
    from archlab.tables.sources import spread_by_size

    space = load_space("tiny")
    counter = Predictor([])
    pool = sorted(counter.score(d).params for _, d in space.samples(80, 4))
    picked = [counter.score(d).params for d in spread_by_size(space, 4, 4)]
    assert picked == sorted(picked) and len(picked) == 4
    assert picked[0] <= pool[len(pool) // 4] and picked[-1] >= pool[3 * len(pool) // 4]
    assert spread_by_size(space, 4, 4) == spread_by_size(space, 4, 4)  # seeded


def test_a_converting_backend_checks_the_disk_first_converts_atomically_and_removes_its_models_when_done(tmp_path, monkeypatch):
    import shutil as shutil_module
    from collections import namedtuple

    from archlab.tables import timing as measure
    from archlab.cost.backends import get_backend

    backend = get_backend("onnxruntime", threads=1, warmup=0, repeats=1, workdir=tmp_path / "work")
    assert backend.converted_suffix == ".onnx" and get_backend("torch-cpu").converted_suffix is None
    timings = measure.ModelTimings(tmp_path / "t.json", backend, [preset("tiny")], batch=1)
    kept = backend.converted_path(measure.model_file_name(preset("tiny")))
    usage = namedtuple("usage", "total used free")
    real_usage = shutil_module.disk_usage
    monkeypatch.setattr(shutil_module, "disk_usage", lambda path: usage(10**12, 10**12, 1000))  # 1 kB free
    with pytest.raises(ConfigError, match="GB free for the onnxruntime models"):
        timings.run(passes=2, repeats=1, seed=0, show_progress=False)
    assert not (tmp_path / "t.json").exists() and not any((tmp_path / "work").iterdir())  # nothing timed or converted
    kept.write_text("converted earlier")  # already there: nothing more to store
    timings.check_disk(passes=2)
    kept.unlink()

    def crash(out):
        Path(out).write_text("half a model")
        raise RuntimeError("converter died")

    with pytest.raises(RuntimeError):
        backend.converted("model-tiny", crash)
    assert not kept.exists()  # a crash leaves nothing the next pass would reuse
    monkeypatch.setattr(shutil_module, "disk_usage", real_usage)
    timings.run(passes=2, repeats=1, seed=0, show_progress=False)
    assert len(json.loads((tmp_path / "t.json").read_text())["models"]["tiny"]["passes"]) == 2
    assert not kept.exists()  # every pass timed: the converted copy is removed


def test_rerunning_a_validation_with_more_passes_adds_passes_and_keeps_the_stored_ones(tmp_path):
    from archlab.tables import timing as measure
    from archlab.cost.backends import get_backend

    backend = get_backend("torch-cpu", threads=1, warmup=0, repeats=1)
    models = [preset("tiny"), dataclasses.replace(preset("tiny"), name="tiny-2")]
    measure.ModelTimings(tmp_path / "t.json", backend, models, batch=1).run(passes=2, repeats=1, seed=0, show_progress=False)
    before = json.loads((tmp_path / "t.json").read_text())["models"]
    timings = measure.ModelTimings(tmp_path / "t.json", backend, models, batch=1)
    timings.run(passes=3, repeats=1, seed=0, show_progress=False)
    after = json.loads((tmp_path / "t.json").read_text())["models"]
    for name, entry in after.items():
        assert entry["passes"][:2] == before[name]["passes"] and len(entry["passes"]) == 3  # one pass added, none re-timed
        assert timings.truth(timings.description(name), "min") == min(p["min_ms"] for p in entry["passes"])


def _scripted_times(monkeypatch, script):
    """Replace whole-model timing by ``script`` (model name -> its successive times); returns the order timed."""
    from archlab.tables import timing as measure
    from archlab.cost.backends import Timing

    timed, left = [], {name: list(times) for name, times in script.items()}

    def fake(backend, desc, *, batch, repeats):
        timed.append(desc.name)
        return Timing.from_samples([left[desc.name].pop(0)])

    monkeypatch.setattr(measure, "time_model", fake)
    return timed


def test_settling_times_again_only_the_models_whose_fastest_passes_disagree_and_stops_at_max_passes(tmp_path, monkeypatch):
    from archlab.tables import timing as measure
    from archlab.cost.backends import get_backend

    backend = get_backend("torch-cpu", threads=1, warmup=0, repeats=1)
    names = ["steady", "slow-then-steady", "never"]
    models = [dataclasses.replace(preset("tiny"), name=n) for n in names]
    script = {"steady": [100, 102], "slow-then-steady": [150, 100, 103], "never": [100, 140, 120, 130, 125]}
    timed = _scripted_times(monkeypatch, script)
    timings = measure.ModelTimings(tmp_path / "t.json", backend, models, batch=1)
    timings.run(passes=2, repeats=1, seed=0, show_progress=False, settle=0.05, max_passes=4)
    passes = {n: [p["min_ms"] for p in timings.passes(m)] for n, m in zip(names, models)}
    assert passes == {"steady": [100, 102], "slow-then-steady": [150, 100, 103], "never": [100, 140, 120, 130]}
    assert sorted(timed[:6]) == sorted(names * 2)  # both passes over every model first
    assert timed[6:] in (["slow-then-steady", "never", "never"], ["never", "slow-then-steady", "never"])
    assert [timings.settled(m, 0.05) for m in models] == [True, True, False]
    with pytest.raises(ConfigError, match="max-passes: must be at least --passes"):
        timings.run(passes=3, repeats=1, seed=0, show_progress=False, settle=0.05, max_passes=2)
    # stored as measured: a rerun with the same settings times nothing more
    timed.clear()
    measure.ModelTimings(tmp_path / "t.json", backend, models, batch=1).run(passes=2, repeats=1, seed=0, show_progress=False,
                                                                           settle=0.05, max_passes=4)
    assert timed == []


def test_validate_reports_how_settled_its_truth_is_and_refuses_a_bad_settle(tmp_path, monkeypatch):
    from archlab.tables import validation

    table = _filled(tmp_path)
    table.metadata["overhead"] = {"intercept_ms": 0.0, "scale": 1.0, "models": [{"gflops": 1.0, "measured_ms": 10.0},
                                                                               {"gflops": 2.0, "measured_ms": 20.0}]}
    table.save()
    models = [dataclasses.replace(preset("tiny"), name=f"t{i}") for i in range(3)]
    _scripted_times(monkeypatch, {"t0": [10, 10.2], "t1": [20, 30, 21], "t2": [15, 15]})
    result = validation.validate(table, _counting_backend(tmp_path / "w"), models, seed=3, passes=2, show_progress=False,
                              settle=0.05, max_passes=3)
    assert [r.passes_ms for r in result.models] == [(10, 10.2), (20, 30, 21), (15, 15)]
    assert result.passes == 2 and result.truth_spread.passes_max == 3
    assert result.truth_spread.max == pytest.approx(0.05)
    for args, field in ((["--settle", "-0.1"], "settle"), (["--settle", "0.05", "--passes", "3", "--max-passes", "2"], "max-passes")):
        bad = runner.invoke(app, ["table", "validate", str(table.path), *args])
        assert bad.exit_code == 2 and bad.stderr.startswith(f"error: {field}:") and len(bad.stderr.strip().splitlines()) == 1


def _counting_backend(workdir, stop_after=None, converting=False):
    """A backend that times nothing real: it records which block was prepared when, and is killed after ``stop_after``;
    ``converting``: it keeps a converted copy of each, as LiteRT does (``exported``: the names converted)."""
    from archlab.cost.backends import LatencyBackend

    class Counting(LatencyBackend):
        name = "counting"
        converted_suffix = ".bin" if converting else None

        def __init__(self):
            super().__init__(threads=1, warmup=0, repeats=4, workdir=workdir)
            self.prepared, self.exported = [], []

        def prepare(self, module, inputs, *, name="model"):
            if len(self.prepared) == stop_after:
                raise KeyboardInterrupt  # the build is killed here
            self.prepared.append(name)
            if converting:
                self.converted(name, lambda out: (self.exported.append(name), Path(out).write_text("weights")))
            return lambda: None

        def runtime_version(self):
            return "counting 1"

    return Counting()


def test_blocks_are_timed_in_whole_sweeps_and_an_interrupted_build_keeps_every_stored_sweep(tmp_path):
    from archlab.tables import measure_blocks

    table = LatencyTable.create(tmp_path / "t.csv", META)
    specs = distinct_specs([preset("tiny")])
    n = len(specs)
    first = _counting_backend(tmp_path / "work", stop_after=n + 2)  # killed in the second sweep, after two of its blocks
    with pytest.raises(KeyboardInterrupt):
        measure_blocks(table, first, specs, show_progress=False)
    assert sorted(first.prepared[:n]) == sorted(specs)  # the first sweep times every block once
    assert first.prepared[n:] != first.prepared[:2]  # the second runs in another order
    assert len(LatencyTable.read(table.path)) == 2  # rows land when a block's last sweep is done
    table = LatencyTable.read(table.path)
    second = _counting_backend(tmp_path / "work")
    assert measure_blocks(table, second, specs, show_progress=False) == n - 2
    assert sorted(second.prepared) == sorted(set(specs) - set(first.prepared[n:]))  # stored sweeps are not re-timed
    table = LatencyTable.read(table.path)
    assert len(table) == n and set(table.rows["repeats"]) == {4}  # 2 samples from each of the 2 sweeps
    assert not (tmp_path / "t.csv.sweeps.jsonl").exists()


def test_a_build_killed_between_a_blocks_last_sweep_and_its_row_writes_the_row_on_resume(tmp_path, monkeypatch):
    from archlab.tables import measure_blocks

    table = LatencyTable.create(tmp_path / "t.csv", META)
    specs = distinct_specs([preset("tiny")])
    n = len(specs)

    def killed(*args, **kwargs):  # the kill lands after the last sweep's samples are stored, before the row
        raise KeyboardInterrupt

    monkeypatch.setattr(table, "append", killed)
    first = _counting_backend(tmp_path / "work")
    with pytest.raises(KeyboardInterrupt):
        measure_blocks(table, first, specs, show_progress=False)
    assert len(first.prepared) == n + 1  # the whole first sweep, one block of the second
    table = LatencyTable.read(table.path)
    assert len(table) == 0
    second = _counting_backend(tmp_path / "work")
    assert measure_blocks(table, second, specs, show_progress=False) == n
    assert len(second.prepared) == n - 1 and first.prepared[-1] not in second.prepared  # its stored sweep is not re-timed
    assert len(LatencyTable.read(table.path)) == n


def test_the_table_is_compared_with_flops_beyond_noise_by_a_paired_bootstrap():
    from archlab.tables import paired_bootstrap

    rng = np.random.default_rng(0)
    measured = rng.uniform(100, 500, 30)
    close, far = measured * (1 + rng.normal(0, 0.02, 30)), measured * (1 + rng.normal(0, 0.15, 30))
    same = paired_bootstrap(close, close, measured)
    assert all(v["difference"] == 0 and v["se"] == 0 for v in same.values())
    better = paired_bootstrap(close, far, measured)
    assert better["rmspe"]["ci95"][1] < 0 < better["within_10"]["ci95"][0]  # beyond noise, both ways round
    assert better["rmspe"]["difference"] == pytest.approx(np.sqrt(np.mean((close / measured - 1) ** 2))
                                                          - np.sqrt(np.mean((far / measured - 1) ** 2)))


def test_a_disagreement_pick_takes_the_models_the_table_and_flops_disagree_on_most_both_ways():
    """Validation can be aimed where the table and the FLOPs baseline differ: whichever is right there is better."""
    import math

    from archlab.tables import DISAGREEMENT_POOL, closer_share, flops_baseline, sample_table_models, table_space

    table = LatencyTable.load("x86-2core_litert")  # predicting only, so any machine's table will do
    picked = sample_table_models(table, n=6, seed=3, pick="disagreement")
    assert picked == sample_table_models(table, n=6, seed=3, pick="disagreement")  # seeded
    a, b = flops_baseline(table)
    predictor = Predictor([table], check_device=False)

    def log_ratio(d):
        c = predictor.breakdown(d)
        return math.log(c.latency_ms[table.label] / (a + b * c.gflops))

    mine = [log_ratio(d) for d in picked]
    assert sum(r > 0 for r in mine) == 3 and sum(r <= 0 for r in mine) == 3  # both ways round
    from archlab.cost.backends import BACKENDS

    space = table_space(table).with_constraints(max_params=BACKENDS["litert"].max_params)  # as validation samples
    others = [log_ratio(d) for _, d in space.samples(DISAGREEMENT_POOL * 6, 3) if d not in picked]
    assert min(r for r in mine if r > 0) >= max(r for r in others if r > 0)
    assert max(r for r in mine if r <= 0) <= min(r for r in others if r <= 0)
    with pytest.raises(ConfigError, match="--pick"):
        sample_table_models(table, n=2, seed=3, pick="worst")
    bad = runner.invoke(app, ["table", "validate", "x86-2core_litert", "--pick", "worst", "--seed", "4"])
    assert bad.exit_code == 2 and bad.stderr.count("\n") == 1 and "--pick" in bad.stderr

    truth = [100.0, 200.0, 300.0, 400.0]
    won = closer_share([101, 199, 302, 390], [110, 180, 302, 420], truth)
    assert (won["closer"], won["farther"], won["share"]) == (3, 0, 0.875) and 0 < won["sign_test_p"] <= 0.25


def test_how_far_flops_stands_from_the_table_is_known_before_timing_and_says_which_figures_can_separate_them():
    from archlab.tables import disagreement, flops_baseline, versus_flops

    d = disagreement([100, 200, 300, 400], [104, 188, 345, 400])  # FLOPs +4%, -6%, +15%, 0%
    assert d["models"] == 4 and (d["flops_off_5"], d["flops_off_10"]) == (0.5, 0.25)
    assert d["largest_over"] == pytest.approx(0.15) and d["largest_under"] == pytest.approx(-0.06)
    assert d["rms"] == pytest.approx(np.sqrt((0.04**2 + 0.06**2 + 0.15**2) / 4)) and d["spearman"] == 1.0

    table = LatencyTable.load("x86-2core_torch-cpu")  # predicting only: any machine's table will do
    result = versus_flops(table, n=40, seed=2)
    assert result == versus_flops(table, n=40, seed=2)  # seeded
    a, b = flops_baseline(table)
    assert result["models"] == 40 and result["baseline_ms"] == {"intercept": a, "per_gflop": b}
    cli = runner.invoke(app, ["table", "vs-flops", "x86-2core_torch-cpu", "--samples", "40", "--seed", "2", "--json"])
    assert cli.exit_code == 0 and json.loads(cli.stdout) == json.loads(json.dumps(result))
    human = runner.invoke(app, ["table", "vs-flops", "x86-2core_torch-cpu", "--samples", "40", "--seed", "2"])
    assert human.exit_code == 0 and "if the table were exact FLOPs would be off by more than 5%" in human.stdout
    bad = runner.invoke(app, ["table", "vs-flops", "x86-2core_torch-cpu", "--samples", "2"])
    assert bad.exit_code == 2 and bad.stderr.startswith("error: --samples:") and bad.stderr.count("\n") == 1


def test_calibration_models_can_be_settled_and_the_table_records_how_they_were_timed(tmp_path, monkeypatch):
    from archlab.tables import calibration

    table = _filled(tmp_path)
    table.metadata["statistic"] = "min"
    table.save()
    models = [dataclasses.replace(preset("tiny"), name=f"c{i}") for i in range(3)]
    timed = _scripted_times(monkeypatch, {"c0": [10, 10.1], "c1": [30, 20, 20.5], "c2": [15, 15]})
    calibration.calibrate(table, _counting_backend(tmp_path / "w"), models, seed=4, show_progress=False, settle=0.05, max_passes=3)
    assert sorted(timed) == ["c0", "c0", "c1", "c1", "c1", "c2", "c2"]  # only the model whose passes disagree, once more
    overhead = LatencyTable.read(table.path).metadata["overhead"]
    assert [m["measured_ms"] for m in overhead["models"]] == [10, 20, 15]  # the fastest pass of each
    assert overhead["timing"] == {"passes": 2, "settle": 0.05, "passes_max": 3}
    shown = runner.invoke(app, ["table", "show", str(table.path)])
    assert shown.exit_code == 0 and "passes settled within 5%: up to 3 passes" in shown.stdout
    calibration.refit(LatencyTable.read(table.path))  # a refit times nothing and keeps the record
    assert LatencyTable.read(table.path).metadata["overhead"]["timing"] == overhead["timing"]
    for command in (["table", "build", "tiny", "--out", str(tmp_path / "n.csv"), "--settle", "-1"],
                    ["table", "calibrate", str(table.path), "--settle", "0.05", "--max-passes", "1"]):
        bad = runner.invoke(app, command)
        assert bad.exit_code == 2 and bad.stderr.count("\n") == 1, bad.output
        assert not (tmp_path / "n.csv").exists()  # refused before anything is written


def test_a_checked_table_says_whether_it_holds_here_and_what_to_do_when_it_does_not():
    from archlab.tables import DRIFT_LIMIT, drift_verdict

    assert drift_verdict("t.csv", [], 0.041) == {"holds": True, "advice": "holds here: median drift within +-10%"}
    drifted = drift_verdict("t.csv", [], -0.15)
    assert not drifted["holds"] and "-15%" in drifted["advice"] and "archlab table calibrate t.csv" in drifted["advice"]
    foreign = drift_verdict("t.csv", ["cpu_flags differ"], 0.02)  # another machine never holds, whatever the drift
    assert not foreign["holds"] and "build a table here" in foreign["advice"]
    assert drift_verdict("t.csv", [], DRIFT_LIMIT)["holds"]
    bad = runner.invoke(app, ["table", "check", "x86-2core_torch-cpu", "--passes", "0"])
    assert bad.exit_code == 2 and bad.stderr.startswith("error: passes:") and bad.stderr.count("\n") == 1


def test_a_table_older_than_the_allocator_field_was_timed_with_the_systems_and_resumes_only_so(tmp_path):
    from archlab.cost.backends import get_backend
    from archlab.tables import backend_for, open_for_build, table_allocator

    system = get_backend("torch-cpu", threads=1, warmup=0, repeats=1, allocator="system")
    meta = {k: v for k, v in system.metadata().items() if k != "allocator"}  # as tables were written before the field
    old = LatencyTable.create(tmp_path / "old.csv", {**meta, "dtype": "float32", "batch": 1, "statistic": "min"})
    assert table_allocator(old) == "system"
    again = backend_for(old, warmup=0, repeats=1)  # validate, calibrate and measure-missing time as the table did
    assert again.allocator == "system"
    again.close()
    assert open_for_build(str(old.path), system, dtype="float32", batch=1, extra={}).metadata.get("allocator") is None
    steady = get_backend("torch-cpu", threads=1, warmup=0, repeats=1)
    if steady.allocator == "steady":  # where the C library has mallopt
        with pytest.raises(ConfigError, match=r"metadata\.allocator: the file says 'system', this build 'steady'"):
            open_for_build(str(old.path), steady, dtype="float32", batch=1, extra={})
    result = runner.invoke(app, ["table", "build", "preset:tiny", "--out", str(tmp_path / "new.csv"), "--allocator", "fast",
                                 "--calibrate", "0", "--no-progress"])
    assert result.exit_code == 2 and "allocator: 'fast' is not allowed; allowed: steady, system" in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "new.csv").exists()  # refused before anything was written


def test_every_table_in_the_repository_reads_into_typed_metadata(tmp_path):
    """Shipped tables and the benchmark's kept tables read into TableMeta; an unknown metadata field is refused."""
    import glob
    import os

    from archlab.cost.table_meta import TableMeta

    root = os.path.join(os.path.dirname(__file__), "..")
    paths = glob.glob(os.path.join(root, "archlab/resources/latency_tables/*.csv")) + \
        glob.glob(os.path.join(root, "benchmarks/results/tables/*.csv"))
    assert len(paths) >= 10
    for path in paths:
        meta = LatencyTable.read(path).meta
        assert isinstance(meta, TableMeta) and meta.batch == 1 and meta.identity["device"]
        assert meta.timing.statistic in ("median", "min")
    shipped = LatencyTable.load("x86-2core_torch-cpu")
    first, rest = shipped.path.read_text().split("\n", 1)
    data = json.loads(first[len(MAGIC):])
    data["colour"] = "blue"
    (tmp_path / "t.csv").write_text(MAGIC + json.dumps(data) + "\n" + rest)
    with pytest.raises(ConfigError, match="metadata.colour: unknown field"):
        LatencyTable.read(tmp_path / "t.csv")


def test_an_interrupted_calibration_resumes_with_the_models_already_timed(tmp_path, monkeypatch):
    import json

    from archlab.tables import calibration

    table = _filled(tmp_path)
    table.metadata["statistic"] = "min"
    table.save()
    models = [dataclasses.replace(preset("tiny"), name=f"c{i}") for i in range(3)]
    _scripted_times(monkeypatch, {"c0": [10, 10.1], "c1": [20, 20.2], "c2": [15]})  # killed when c2 is timed again
    with pytest.raises(IndexError):
        calibration.calibrate(table, _counting_backend(tmp_path / "w"), models, seed=4, show_progress=False)
    stored = tmp_path / "t.csv.calibration.json"
    kept = {n: len(m["passes"]) for n, m in json.loads(stored.read_text())["models"].items()}
    assert kept["c2"] == 1 and sum(kept.values()) >= 3  # every timing made before the kill is on disk
    assert "overhead" not in LatencyTable.read(table.path).metadata  # nothing half-written into the table
    again = _scripted_times(monkeypatch, {"c0": [10.1], "c1": [20.2], "c2": [15.5]})
    calibration.calibrate(LatencyTable.read(table.path), _counting_backend(tmp_path / "w"), models, seed=4, show_progress=False)
    assert sorted(again) == sorted(n for n, k in kept.items() if k < 2)  # only the missing passes
    assert [m["measured_ms"] for m in LatencyTable.read(table.path).metadata["overhead"]["models"]] == [10, 20, 15]
    assert not stored.exists()  # gone once the fit is stored
    stored.write_text('{"table_created": "another table", "models": {}}')  # left by a table since rebuilt: ignored
    fresh = _scripted_times(monkeypatch, {"c0": [9, 9], "c1": [19, 19], "c2": [14, 14]})
    calibration.calibrate(LatencyTable.read(table.path), _counting_backend(tmp_path / "w"), models, seed=4, show_progress=False)
    assert sorted(fresh) == ["c0", "c0", "c1", "c1", "c2", "c2"]


def test_a_converting_backend_converts_each_block_once_and_keeps_no_copy_after_its_last_sweep(tmp_path):
    from archlab.tables import measure_blocks

    table = LatencyTable.create(tmp_path / "t.csv", META)
    specs = distinct_specs([preset("tiny")])
    backend = _counting_backend(tmp_path / "work", converting=True)
    assert measure_blocks(table, backend, specs, show_progress=False) == len(specs)
    assert len(backend.prepared) == 2 * len(specs) and sorted(backend.exported) == sorted(specs)  # the second sweep reuses it
    assert not list((tmp_path / "work").glob("*.bin"))  # every block's copy gone once its row is written
