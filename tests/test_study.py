"""Studies: files validated, trials stored and read back, kill -9 and resume, many workers."""

import json
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
from helpers import tiny_study

from typer.testing import CliRunner

from archlab import ConfigError
from archlab.cli import app
from archlab.results.pareto import pareto, trials_frame
from archlab.search.runner import completed, open_study, run_study
from archlab.search.study import load_study

STUDIES = os.path.join(os.path.dirname(__file__), "..", "studies")


_study = tiny_study


def test_trials_store_everything_needed_to_read_them_back(tmp_path):
    cfg = load_study(_study(tmp_path))
    study = run_study(cfg, progress=False)
    assert completed(study) == 4
    t = study.best_trials[0]
    assert {"description", "metric.params", "metric.heldout_loss", "metric.heldout_loss_se", "summary", "proxy"} <= set(t.user_attrs)
    assert t.user_attrs["proxy"]["metrics"]["heldout_loss"]["n"] == 4 and t.user_attrs["metric.heldout_loss_se"] > 0
    assert list(t.constraints) == ["params<=200000"]
    frame = trials_frame(study)
    assert len(frame) >= 4 and {"feasible", "params", "heldout_loss", "heldout_loss_se", "summary"} <= set(frame.columns)
    front, hv, ref = pareto(study, cfg)
    assert front and hv > 0 and len(ref) == 2


@pytest.mark.slow
def test_infeasible_trials_are_kept_and_marked(tmp_path):
    cfg = load_study(_study(tmp_path, constraints=[{"metric": "params", "max": 10}]))
    study = run_study(cfg, progress=False)
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(trials) == 4 and all(t.user_attrs["quality_skipped"] for t in trials)
    assert all(t.constraints["params<=10"] > 0 for t in trials)
    assert study.best_trials == []  # Optuna keeps infeasible trials off the front


@pytest.mark.slow
def test_a_failing_trial_is_recorded_and_the_study_goes_on(tmp_path, monkeypatch):
    from archlab.search import runner

    calls = {"n": 0}
    original = runner.TrialEvaluator.quality

    def flaky(self, desc, seed, trial=None):
        calls["n"] += 1
        if calls["n"] == 2:
            raise FloatingPointError("loss is nan at step 3")
        return original(self, desc, seed, trial)

    monkeypatch.setattr(runner.TrialEvaluator, "quality", flaky)
    study = run_study(load_study(_study(tmp_path)), progress=False)
    failed = study.get_trials(states=(optuna.trial.TrialState.FAIL,))
    assert completed(study) == 4 and len(failed) == 1
    assert "loss is nan" in failed[0].user_attrs["error"]


@pytest.mark.slow
def test_kill_minus_9_then_rerun_loses_nothing(tmp_path):
    path = _study(tmp_path, budget={"trials": 6}, quality={"proxy": {"width": 1.0, "resolution": 16}, "device": "cpu",
                                                            "train": {"steps": 40, "batch": 4},
                                                            "eval": {"heldout": 4, "samples": 4, "ddim_steps": 2}})
    cfg = load_study(path)
    cmd = [sys.executable, "-m", "archlab.cli", "study", "run", str(path), "--no-progress"]
    log = open(tmp_path / "first-run.log", "w+")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 300
    seen = 0
    while time.time() < deadline:  # kill it once a trial is done and another is running
        time.sleep(0.5)
        if proc.poll() is not None:  # it ended on its own: say why rather than time out
            log.seek(0)
            pytest.fail(f"the study ended before it was killed (exit {proc.returncode}): {log.read()[-2000:]}")
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
    log.seek(0)
    assert before >= 1, f"no trial finished in 300 s; the run printed: {log.read()[-2000:]}"
    # (the kill lands mid-trial almost always; if a trial finished in between, the rest still holds)
    time.sleep(cfg.heartbeat.grace + 1)  # the heartbeat goes stale
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    study = open_study(cfg)
    assert completed(study) == 6 >= before
    assert not study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
    numbers = [t.number for t in study.get_trials()]
    assert len(numbers) == len(set(numbers))


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_workers_share_one_storage(tmp_path, backend, request):
    url = None if backend == "sqlite" else request.getfixturevalue("postgres_url")  # study names differ per run
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
    ({"sampler": {"kind": "tpe", "sed": 3}}, "sampler.sed: unknown field; allowed: kind, seed, startup_trials, population"),
    ({"sampler": {"kind": "evolve"}}, "evolve: sampler kind evolve needs an evolve: section"),
    ({"quality": {"train": {"steps": 0}}}, "quality.train.steps: 0 must be at least 1"),
    ({"quality": {"data": {"kind": "folder"}}}, "quality.data.path: folder data needs a path"),
    ({"objectives": [{"metric": "eval_score", "direction": "maximize"}], "quality": {"data": {"kind": "folder", "path": "x"}}},
     "objectives: eval_score needs the synthetic domain's evaluator"),
    ({"budget": {"trials": 0}}, "budget.trials: 0 is not a positive integer"),
    ({"constraints": [{"metric": "params"}]}, "constraints[0]: needs max or min"),
    ({"proxy": {"epochs": 3}}, "proxy: unknown field; allowed: name, space"),
    ({"quality": {"proxy": {"epochs": 3}}}, "quality.proxy.epochs: unknown field; allowed: width, resolution"),
    ({"space": "nowhere"}, "unknown search space 'nowhere'"),
    ({"colour": 1}, "colour: unknown field"),
])
def test_bad_study_files_name_the_field(tmp_path, change, message):
    with pytest.raises(ConfigError) as info:
        load_study(_study(tmp_path, **change))
    assert message in str(info.value)


@pytest.mark.slow
def test_cli_pareto_and_trials(tmp_path):
    path = _study(tmp_path)
    runner = CliRunner()
    assert runner.invoke(app, ["study", "run", str(path), "--no-progress"]).exit_code == 0
    out = runner.invoke(app, ["study", "pareto", str(path), "--json"])
    assert out.exit_code == 0
    front = json.loads(out.stdout)
    assert front["hypervolume"] > 0 and all("not_distinguishable_from" in r and "heldout_loss_se" in r for r in front["front"])
    assert runner.invoke(app, ["study", "trials", str(path), "--csv", str(tmp_path / "t.csv")]).exit_code == 0
    assert (tmp_path / "t.csv").read_text().count("\n") >= 5
    bad = runner.invoke(app, ["study", "run", str(tmp_path / "missing.yaml")])
    assert bad.exit_code == 2 and bad.stderr.startswith("error:")


@pytest.mark.slow
def test_read_only_commands_never_create_a_study_or_a_file(tmp_path):
    path = _study(tmp_path)
    runner = CliRunner()
    nothing = tmp_path / "nothing-here.db"
    for command in (["study", "pareto"], ["study", "trials", "--csv", str(tmp_path / "x.csv")], ["report"],
                    ["export", "--out", str(tmp_path / "e")]):
        result = runner.invoke(app, [*command[:1], *command[1:2], str(path), *command[2:], "--storage", f"sqlite:///{nothing}"]
                               if command[0] == "study" else [command[0], str(path), *command[1:], "--storage", f"sqlite:///{nothing}"])
        assert result.exit_code == 2, (command, result.output)
        assert result.stderr.count("\n") == 1 and "does not exist" in result.stderr
        assert not nothing.exists()
    assert runner.invoke(app, ["study", "run", str(path), "--no-progress"]).exit_code == 0
    other = _study(tmp_path, name="other")
    result = runner.invoke(app, ["study", "pareto", str(other), "--storage", load_study(path).storage_url])
    assert result.exit_code == 2 and "no study 'other'" in result.stderr and "studies there: tiny" in result.stderr


@pytest.mark.slow
def test_importing_archlab_leaves_optuna_and_warnings_alone():
    """Only the command line quiets Optuna; the library changes no global logging or warning setting."""
    import pathlib
    import re
    import subprocess
    import sys

    code = ("import optuna; before = optuna.logging.get_verbosity(); "
            "import archlab, archlab.search, archlab.results, archlab.quality; assert optuna.logging.get_verbosity() == before")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
    root = pathlib.Path(__file__).parents[1] / "archlab"
    global_changes = re.compile(r"warnings\.(filterwarnings|simplefilter)|set_verbosity|getLogger\([^)]*\)\.setLevel")
    offenders = [str(p.relative_to(root)) for p in root.rglob("*.py") if global_changes.search(p.read_text())]
    # the command line, and the entry point of a worker process the library starts (its own process's settings)
    assert sorted(offenders) == ["cli/common.py", "search/searches.py"], offenders
    worker = (root / "search" / "searches.py").read_text()
    body = worker[worker.index("def worker_process"):worker.index("class EvolveSearch")]
    assert len(global_changes.findall(worker)) == len(global_changes.findall(body)) == 2  # only there


def test_a_study_on_a_folder_of_english_captions(tmp_path, english_folder):
    """Real data in a study: an image folder whose captions the synthetic domain never uses, a disjoint held-out split."""
    path = _study(tmp_path, budget={"trials": 2}, constraints=[],
                  objectives=[{"metric": "params", "direction": "minimize"}, {"metric": "text_gap", "direction": "maximize"}],
                  quality={"data": {"kind": "folder", "path": str(english_folder), "heldout": 8, "cache": str(tmp_path / "cache")},
                           "proxy": {"width": 1.0, "resolution": 16}, "train": {"steps": 2, "batch": 4},
                           "eval": {"heldout": 8, "samples": 4}, "device": "cpu"})
    study = run_study(load_study(path), progress=False)
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(trials) == 2
    for t in trials:
        assert t.user_attrs["proxy"]["metrics"]["text_gap"]["n"] == 8 and "metric.text_gap_se" in t.user_attrs


def test_opening_a_new_database_that_another_process_is_creating_retries_then_says_so(tmp_path, monkeypatch):
    """Two processes creating one SQLite file race on the schema's version row (seen once in
    the kill test, whose poller opened the database while the study created it)."""
    import sqlalchemy.exc

    from archlab.search import runner

    cfg = load_study(_study(tmp_path))
    real, calls = optuna.storages.RDBStorage, []

    def racing(*args, fail=1, **kwargs):
        calls.append(1)
        if len(calls) <= fail:
            raise sqlalchemy.exc.IntegrityError("INSERT INTO alembic_version", {}, Exception("UNIQUE constraint failed"))
        return real(*args, **kwargs)

    monkeypatch.setattr(runner.time, "sleep", lambda s: None)
    monkeypatch.setattr(optuna.storages, "RDBStorage", racing)
    assert isinstance(runner.storage_for(cfg), real) and len(calls) == 2  # lost the race once, then opened it
    calls.clear()
    monkeypatch.setattr(optuna.storages, "RDBStorage", lambda *a, **k: racing(*a, fail=99, **k))
    with pytest.raises(ConfigError, match="storage.*UNIQUE constraint failed"):
        runner.storage_for(cfg)
    assert len(calls) == runner.CREATE_ATTEMPTS


@pytest.mark.slow
def test_four_workers_through_a_grpc_proxy_survive_a_kill_minus_9(tmp_path, postgres_url):
    """One command: a gRPC storage proxy in front of PostgreSQL and four workers; one worker is killed mid-trial.
    Every trial is distinct, the killed trial is queued again and completed, and no architecture is trained twice."""
    pytest.importorskip("grpc")
    path = _study(tmp_path, name=f"grpc-{os.getpid()}", budget={"trials": 10}, constraints=[],
                  quality={"proxy": {"width": 1.0, "resolution": 16}, "device": "cpu", "train": {"steps": 60, "batch": 4, "threads": 1},
                           "eval": {"heldout": 4, "samples": 4, "ddim_steps": 2}})
    cfg = load_study(path)
    cmd = [sys.executable, "-m", "archlab.cli", "study", "run", str(path), "--storage", postgres_url, "--workers", "4",
           "--grpc", "--no-progress"]
    log = open(tmp_path / "run.log", "w+")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    killed = None
    deadline = time.time() + 240
    while killed is None and time.time() < deadline and proc.poll() is None:
        time.sleep(0.3)
        try:
            study = optuna.load_study(study_name=cfg.name, storage=postgres_url)
            running = study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
        except Exception:
            continue
        victim = next((t for t in running if t.user_attrs.get("worker") and "description" in t.user_attrs), None)
        if victim is not None:
            os.kill(victim.user_attrs["worker"], signal.SIGKILL)
            killed = victim.number
    assert killed is not None, "a worker was seen running a trial"
    assert proc.wait(timeout=300) == 0, open(tmp_path / "run.log").read()[-3000:]
    study = optuna.load_study(study_name=cfg.name, storage=postgres_url)
    done = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(done) >= 10
    assert len({tuple(sorted(t.params.items())) for t in done}) == len(done)  # no architecture evaluated twice
    victim = study.trials[killed]
    assert victim.state == optuna.trial.TrialState.FAIL and "died" in victim.user_attrs["error"]
    retry = [t for t in study.trials if t.user_attrs.get("retry_of") == killed]
    assert retry and retry[0].state == optuna.trial.TrialState.COMPLETE and retry[0].params == victim.params


def test_a_trial_whose_worker_died_before_its_first_heartbeat_is_queued_again():
    """Optuna fails a stale trial by its heartbeats; a worker killed before the first one leaves a trial running
    forever. recover_orphans fails it (and queues its choices again) when its worker on this machine is gone."""
    import socket

    from archlab.search.runner import recover_orphans

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    study = optuna.create_study(directions=["minimize", "maximize"])
    for pid in (gone.pid, os.getppid()):
        t = study.ask()
        t.suggest_int("x", 0, 9)
        t.set_user_attr("host", socket.gethostname())
        t.set_user_attr("worker", pid)
    assert recover_orphans(study) == [0]
    states = {t.number: t.state for t in study.get_trials()}
    assert states[0] == optuna.trial.TrialState.FAIL and states[1] == optuna.trial.TrialState.RUNNING
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert len(waiting) == 1 and waiting[0].user_attrs["retry_of"] == 0
