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
