"""The study commands as Optuna users expect them: named objectives, --n-trials that adds, --until, --timeout,
--enqueue, list and delete, --version."""

import json
import os

import optuna
import pytest
from helpers import tiny_study
from typer.testing import CliRunner

from archlab.cli import app
from archlab.search.runner import load_existing
from archlab.search.study import load_study

runner = CliRunner()
STUDIES = os.path.join(os.path.dirname(__file__), "..", "studies")


_study = tiny_study


def _complete(path):
    return sum(t.state == optuna.trial.TrialState.COMPLETE for t in load_existing(load_study(path)).trials)


def test_objectives_are_named_and_n_trials_adds_as_optuna_means_it(tmp_path):
    path = _study(tmp_path, constraints=[])
    assert runner.invoke(app, ["study", "run", str(path), "--n-trials", "2", "--no-progress"]).exit_code == 0
    assert _complete(path) == 2
    assert runner.invoke(app, ["study", "run", str(path), "--n-trials", "1", "--no-progress"]).exit_code == 0
    assert _complete(path) == 3  # one more, not "until one"
    assert runner.invoke(app, ["study", "run", str(path), "--until", "3", "--no-progress"]).exit_code == 0
    assert _complete(path) == 3  # already there
    assert load_existing(load_study(path)).metric_names == ["params", "heldout_loss"]
    listed = json.loads(runner.invoke(app, ["study", "list", str(path), "--json"]).stdout)
    # (trials counts every state: a candidate proposed twice is pruned, not trained again)
    assert listed[0]["study"] == "tiny" and listed[0]["objectives"] == ["params", "heldout_loss"] and listed[0]["trials"] >= 3


def test_timeout_stops_starting_trials(tmp_path):
    path = _study(tmp_path, constraints=[], budget={"trials": 1000})
    result = runner.invoke(app, ["study", "run", str(path), "--timeout", "1", "--no-progress"])
    assert result.exit_code == 0 and 1 <= _complete(path) < 1000


def test_enqueue_evaluates_a_known_design_first(tmp_path):
    from archlab import load_space

    space = load_space("tiny")
    member = space.decode(space.samples(1, seed=5)[0][0], name="mine")
    design = tmp_path / "mine.yaml"
    design.write_text(member.to_yaml())
    path = _study(tmp_path, constraints=[])
    assert runner.invoke(app, ["study", "run", str(path), "--n-trials", "1", "--enqueue", str(design), "--no-progress"]).exit_code == 0
    first = load_existing(load_study(path)).trials[0]
    assert first.params == space.encode(member) and first.user_attrs["description"] == member.replace(name=first.user_attrs["description"]["name"]).to_dict()
    bad = runner.invoke(app, ["study", "run", str(path), "--enqueue", "sd15"])
    assert bad.exit_code == 2 and "sd15 is not a member of the space tiny" in bad.stderr


def test_delete_asks_unless_yes(tmp_path):
    path = _study(tmp_path, constraints=[])
    assert runner.invoke(app, ["study", "run", str(path), "--n-trials", "1", "--no-progress"]).exit_code == 0
    assert runner.invoke(app, ["study", "delete", str(path)], input="n\n").exit_code == 1
    assert _complete(path) == 1
    assert runner.invoke(app, ["study", "delete", str(path), "--yes"]).exit_code == 0
    gone = runner.invoke(app, ["study", "pareto", str(path)])
    assert gone.exit_code == 2 and "no study 'tiny'" in gone.stderr


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.startswith("archlab ")


@pytest.mark.parametrize("space", ["tiny", "mobilediffusion", "snapgen"])
def test_every_sampled_member_encodes_to_choices_that_decode_to_it(space):
    from archlab import load_space

    s = load_space(space)
    for _, desc in s.samples(25, seed=3):
        assert s.decode(s.encode(desc), name=desc.name) == desc
