"""Noise-aware search: the racing rules on points whose truth is known, and racing inside a study."""

import math
import os

import optuna
import pytest
import yaml

from archlab.search.racing import Point, front, pooled_seed_sd, standard_error, unresolved, within_reach

STUDIES = os.path.join(os.path.dirname(__file__), "..", "studies")


def test_front_within_reach_and_ties():
    pts = [Point(1, 0.5, 0.01, "a"), Point(2, 0.8, 0.01, "b"), Point(3, 0.7, 0.01, "c"), Point(4, 0.81, 0.01, "d")]
    assert [p.key for p in front(pts)] == ["a", "b", "d"]
    assert not within_reach(Point(3, 0.7, 0.01), front(pts), z=2)  # b is faster and 0.1 better: 7 standard errors
    assert within_reach(Point(3, 0.7, 0.06), front(pts), z=2)  # with more noise it might still be on the front
    assert [p.key for p in unresolved(front(pts), z=2)] == ["b", "d"]  # 0.01 apart: tied


def test_standard_errors_count_seed_noise():
    assert standard_error([0.5], 0.01, None) == pytest.approx(0.01)  # one seed, no prior: held-out only
    assert standard_error([0.5], 0.01, 0.1) == pytest.approx(math.hypot(0.01, 0.1))
    assert standard_error([0.4, 0.6], 0.0, None) == pytest.approx(0.1)  # sd 0.141 over sqrt(2)
    assert pooled_seed_sd([[1.0, 3.0], [2.0]]) == pytest.approx(math.sqrt(2.0))
    assert pooled_seed_sd([[1.0]]) is None


def _study(tmp_path, **racing):
    data = yaml.safe_load(open(os.path.join(STUDIES, "tiny.yaml")))
    data.update(out=str(tmp_path / "out"), budget={"trials": 10}, constraints=[], racing=racing,
                objectives=[{"metric": "params", "direction": "minimize"}, {"metric": "text_gap", "direction": "maximize"}])
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_study_races_seeds_only_within_reach_and_refines_ties(tmp_path, monkeypatch):
    """A stub proxy: each architecture's true quality drawn once (unrelated to its size), each seed adds noise of
    0.02. Candidates far behind the front stop at one seed; near-front ones get more; the front is read from each
    architecture's latest trial."""
    import numpy as np

    from archlab.results.pareto import front_rows, pareto
    from archlab.search import runner
    from archlab.search.runner import run_study
    from archlab.search.study import load_study

    def stub(self, desc, seed, trial=None):
        from archlab import count

        params = count(desc).params
        true = np.random.default_rng(params % 100003).uniform(0, 1)
        rng = np.random.default_rng([params % 100000, seed])
        return {"text_gap": true + rng.normal(0, 0.02), "text_gap_se": 0.005}, {}

    monkeypatch.setattr(runner.TrialEvaluator, "quality", stub)
    cfg = load_study(_study(tmp_path, max_seeds=3, z=2.0, seed_sd=0.02))
    study = run_study(cfg, progress=False)
    done = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    seeds = [t.user_attrs["racing"]["seeds"] for t in done]
    assert min(seeds) == 1 and max(seeds) > 1  # the budget went where it decides something
    for t in done:
        r = t.user_attrs["racing"]
        assert len(r["per_seed"]) == r["seeds"] <= 3
        if r["reach"] and not r["reach"][-1]:
            assert r["seeds"] == len(r["reach"])  # stopped as soon as it was out of reach
    refinements = [t for t in done if "refines" in t.user_attrs]
    members, _, _ = pareto(study, cfg)
    assert not {t.user_attrs.get("refines") for t in refinements} & {t.number for t in members}  # the latest trials only
    rows = front_rows(members, cfg)
    assert all("seeds" in r for r in rows)


def test_racing_needs_a_quality_and_a_cheap_objective(tmp_path):
    from archlab import ConfigError
    from archlab.search.study import load_study

    path = _study(tmp_path, max_seeds=2)
    data = yaml.safe_load(path.read_text())
    data["objectives"] = [{"metric": "text_gap", "direction": "maximize"}]
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="racing: races a quality objective against a minimised cheap one"):
        load_study(path)
