"""The quality reference's bookkeeping: which runs are unfinished, and what a collection keeps."""

import json

from benchmarks.quality.quality_reference import collect, unfinished


def _runs(tmp_path, stored):
    archs = [{"name": n} for n in stored]
    for name, runs in stored.items():
        for run, steps in runs.items():
            (tmp_path / name).mkdir(parents=True, exist_ok=True)
            (tmp_path / name / f"{run}.json").write_text(json.dumps([{"step": s} for s in steps]))
    return archs


def test_a_run_is_unfinished_until_it_reaches_its_last_step(tmp_path):
    archs = _runs(tmp_path, {"a": {"s100": [250, 500, 750, 1000], "s101": [250, 500]}, "b": {}})
    assert unfinished(tmp_path, archs, 1000, [100, 101]) == [("a", 101), ("b", 100), ("b", 101)]
    assert unfinished(tmp_path, archs, 1000, [100]) == [("b", 100)]


def test_collecting_finished_runs_only_leaves_out_a_run_whose_checkpoint_is_not_kept(tmp_path):
    archs = _runs(tmp_path, {"a": {"s100": [250, 500, 750, 1000], "s101": [250, 500]}})
    assert set(collect(tmp_path, archs, 1000)["a"]) == {"s100", "s101"}
    assert set(collect(tmp_path, archs, 1000, finished_only=True)["a"]) == {"s100"}


def test_a_design_run_is_finished_when_measured_at_all_its_points(tmp_path):
    from benchmarks.quality.proxy_designs import DESIGNS, unfinished

    cosine = DESIGNS["cosine"]  # seeds 0 and 1, each measured at 125
    archs = _runs(tmp_path / "cosine", {"a": {"s0": [125], "s1": [60]}})
    assert unfinished(tmp_path, archs, cosine, [0, 1]) == [("a", 1)]


def test_a_gpu_runs_cpu_time_is_no_candidates_cost():
    from benchmarks.quality.quality_analysis import _cost, _median_minutes

    assert _cost({"train_cpu_s": 100.0, "eval_cpu_s": 20.0}) == 120.0  # runs before devices were recorded: the CPU
    assert _cost({"device": "cpu", "train_cpu_s": 100.0, "eval_cpu_s": 20.0}) == 120.0
    assert _cost({"device": "cuda", "train_cpu_s": 100.0, "eval_cpu_s": 20.0}) is None
    assert _median_minutes([60.0, None, 180.0]) == 2.0
    assert _median_minutes([None, None]) is None
