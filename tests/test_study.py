"""Studies: files validated, trials stored and read back, kill -9 and resume, many workers."""

import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
import yaml

from archlab import ConfigError
from archlab.search.runner import completed, open_study, pareto, run_study, trials_frame
from archlab.search.study import load_study

STUDIES = os.path.join(os.path.dirname(__file__), "..", "studies")


def _study(tmp_path, **changes):
    data = yaml.safe_load(open(os.path.join(STUDIES, "tiny.yaml")))
    data.update(changes)
    data["out"] = str(tmp_path / "out")
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_trials_store_everything_needed_to_read_them_back(tmp_path):
    cfg = load_study(_study(tmp_path))
    study = run_study(cfg, progress=False)
    assert completed(study) == 4
    t = study.best_trials[0]
    assert {"description", "metric.params", "metric.heldout_loss", "summary", "proxy.steps_per_s"} <= set(t.user_attrs)
    assert list(t.constraints) == ["params<=200000"]
    frame = trials_frame(study)
    assert len(frame) >= 4 and {"feasible", "params", "heldout_loss", "summary"} <= set(frame.columns)
    front, hv, ref = pareto(study, cfg)
    assert front and hv > 0 and len(ref) == 2


def test_infeasible_trials_are_kept_and_marked(tmp_path):
    cfg = load_study(_study(tmp_path, constraints=[{"metric": "params", "max": 10}]))
    study = run_study(cfg, progress=False)
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(trials) == 4 and all(t.user_attrs["quality_skipped"] for t in trials)
    assert all(t.constraints["params<=10"] > 0 for t in trials)
    assert study.best_trials == []  # Optuna keeps infeasible trials off the front


def test_a_failing_trial_is_recorded_and_the_study_goes_on(tmp_path, monkeypatch):
    from archlab.search import runner

    calls = {"n": 0}
    original = runner.Evaluator.proxy

    def flaky(self, desc, seed):
        calls["n"] += 1
        if calls["n"] == 2:
            raise FloatingPointError("loss is nan at step 3")
        return original(self, desc, seed)

    monkeypatch.setattr(runner.Evaluator, "proxy", flaky)
    study = run_study(load_study(_study(tmp_path)), progress=False)
    failed = study.get_trials(states=(optuna.trial.TrialState.FAIL,))
    assert completed(study) == 4 and len(failed) == 1
    assert "loss is nan" in failed[0].user_attrs["error"]


def test_kill_minus_9_then_rerun_loses_nothing(tmp_path):
    path = _study(tmp_path, budget={"trials": 6}, proxy={"steps": 40, "batch": 4, "width": 1.0, "resolution": 16,
                                                          "eval_samples": 4, "ddim_steps": 2})
    cfg = load_study(path)
    cmd = [sys.executable, "-m", "archlab.cli", "study", "run", str(path), "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    seen = 0
    while time.time() < deadline:  # kill it once a trial is done and another is running
        time.sleep(0.5)
        if os.path.exists(cfg.out + "/study.db"):
            try:
                study = open_study(cfg)
                seen = completed(study)
                running = study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
            except Exception:
                continue
            if seen >= 1 and running:
                break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = completed(open_study(cfg))
    assert before >= 1
    # (the kill lands mid-trial almost always; if a trial finished in between, the rest still holds)
    time.sleep(cfg.grace_period + 1)  # the heartbeat goes stale
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    study = open_study(cfg)
    assert completed(study) == 6 >= before
    assert not study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
    numbers = [t.number for t in study.get_trials()]
    assert len(numbers) == len(set(numbers))


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_workers_share_one_storage(tmp_path, backend, request):
    url = None if backend == "sqlite" else request.getfixturevalue("postgres_url")
    if url:
        url = url + ""  # one database per test run is enough: study names differ
    path = _study(tmp_path, name=f"workers-{backend}-{os.getpid()}", budget={"trials": 6})
    cfg = load_study(path)
    study = run_study(cfg, url=url, workers=2, progress=False)
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(trials) >= 6
    assert len({t.number for t in trials}) == len(trials)
    assert not study.get_trials(states=(optuna.trial.TrialState.FAIL,))


@pytest.mark.parametrize("change,message", [
    ({"objectives": []}, "objectives: must be a non-empty list"),
    ({"objectives": [{"metric": "speed", "direction": "minimize"}]}, "objectives[0].metric: 'speed' is not one of"),
    ({"objectives": [{"metric": "params", "direction": "down"}]}, "objectives[0].direction"),
    ({"objectives": [{"metric": "latency_ms", "direction": "minimize"}]}, "objectives[0].table: latency_ms needs a latency table"),
    ({"sampler": {"kind": "cma"}}, "sampler.kind: 'cma' is not one of"),
    ({"budget": {"trials": 0}}, "budget.trials: 0 is not a positive integer"),
    ({"constraints": [{"metric": "params"}]}, "constraints[0]: needs max or min"),
    ({"proxy": {"epochs": 3}}, "proxy.epochs: unknown field"),
    ({"space": "nowhere"}, "unknown search space 'nowhere'"),
    ({"colour": 1}, "colour: unknown field"),
])
def test_bad_study_files_name_the_field(tmp_path, change, message):
    with pytest.raises(ConfigError) as info:
        load_study(_study(tmp_path, **change))
    assert message in str(info.value)


def test_cli_pareto_and_trials(tmp_path):
    from typer.testing import CliRunner

    from archlab.cli import app

    path = _study(tmp_path)
    runner = CliRunner()
    assert runner.invoke(app, ["study", "run", str(path), "--no-progress"]).exit_code == 0
    out = runner.invoke(app, ["study", "pareto", str(path), "--json"])
    assert out.exit_code == 0 and '"hypervolume"' in out.stdout
    assert runner.invoke(app, ["study", "trials", str(path), "--csv", str(tmp_path / "t.csv")]).exit_code == 0
    assert (tmp_path / "t.csv").read_text().count("\n") >= 5
    bad = runner.invoke(app, ["study", "run", str(tmp_path / "missing.yaml")])
    assert bad.exit_code == 2 and bad.stderr.startswith("error:")
