"""Noise-aware search: the racing rules on points whose truth is known, and racing inside a study."""

import json
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

    def stub(self, desc, seed, trial=None, look=None):
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


def test_first_look_stops_a_run_there_or_leaves_it_unchanged():
    """A first look that says stop leaves the run at its step with that reading alone; one that says go on
    leaves the final figures exactly as a run without it (the look evaluates on its own fixed noise)."""
    from archlab import preset
    from archlab.quality import EvalConfig, FirstLook, QualityConfig, QualityPipeline, TrainConfig

    pipe = QualityPipeline(QualityConfig(train=TrainConfig(steps=6, batch=2), eval=EvalConfig(heldout=8, samples=2, ddim_steps=2),
                                         device="cpu"))
    seen = []
    stop = pipe.judge(preset("tiny"), metrics=("heldout_loss", "text_gap"), progress=False,
                      first_look=FirstLook(3, "text_gap", lambda est: seen.append(est) or False))
    assert stop.stopped and stop.train.steps == 3 and set(stop.metrics) == {"text_gap"}
    assert stop.first_look == seen[0] and stop.metrics["text_gap"] == seen[0]
    plain = pipe.judge(preset("tiny"), metrics=("heldout_loss", "text_gap"), progress=False)
    on = pipe.judge(preset("tiny"), metrics=("heldout_loss", "text_gap"), progress=False,
                    first_look=FirstLook(3, "text_gap", lambda est: True))
    assert not on.stopped and on.train.steps == 6 and on.first_look.value == pytest.approx(seen[0].value)
    assert on.flat() == pytest.approx(plain.flat())


def test_a_first_look_stops_candidates_beaten_by_earlier_first_looks(tmp_path, monkeypatch):
    """A stub proxy whose first look reads 0.8 x its final figure: a candidate stops (pruned, its reading kept)
    only when an earlier candidate at least as small read better at the first look; the rest run on and race."""
    import numpy as np

    from archlab import count
    from archlab.quality import Estimate
    from archlab.search import runner
    from archlab.search.runner import run_study
    from archlab.search.study import load_study

    def stub(self, desc, seed, trial=None, look=None):
        params = count(desc).params
        true = np.random.default_rng(params % 100003).uniform(0, 1)
        rng = np.random.default_rng([params % 100000, seed])
        if look is not None:
            est = Estimate(0.8 * true + rng.normal(0, 0.01), 0.005, 8)
            if not look.go_on(est):
                return {"text_gap": est.value, "text_gap_se": est.se}, {"first_look": est.as_dict(), "stopped": True}
            return {"text_gap": true + rng.normal(0, 0.01), "text_gap_se": 0.005}, {"first_look": est.as_dict(), "stopped": False}
        return {"text_gap": true + rng.normal(0, 0.01), "text_gap_se": 0.005}, {}

    monkeypatch.setattr(runner.TrialEvaluator, "quality", stub)
    cfg = load_study(_study(tmp_path, max_seeds=2, z=2.0, seed_sd=0.01, first_look=2, refine=False))
    study = run_study(cfg, progress=False)
    trials = study.get_trials()
    stopped = [t for t in trials if t.state == optuna.trial.TrialState.PRUNED and t.user_attrs.get("racing", {}).get("stopped")]
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert stopped and len(done) == 10
    looks = {t.number: (t.user_attrs["metric.params"], t.user_attrs["racing"]["first_look"]["value"])
             for t in trials if "first_look" in t.user_attrs.get("racing", {})}
    assert set(looks) >= {t.number for t in stopped + done}
    for t in stopped:
        size, value = looks[t.number]
        assert t.user_attrs["racing"]["seeds"] == 0
        assert any(n < t.number and s <= size and v > value for n, (s, v) in looks.items())  # beaten when it looked
    for t in done:
        size, value = looks[t.number]
        assert not any(n < t.number and s <= size and v > value for n, (s, v) in looks.items())
    from archlab.results.pareto import racing_spend

    spend = racing_spend(study, cfg)  # what the Pareto table and report say it cost
    assert spend["stopped_at_first_look"] == len(stopped) and spend["candidates"] == len(stopped) + len(done)
    assert spend["full_runs"] == pytest.approx(spend["proxy_seeds"] + len(stopped) * 2 / 3, abs=0.01)
    assert spend["proxy_seeds"] == sum(t.user_attrs["racing"]["seeds"] for t in done)


def test_first_look_must_come_before_the_end(tmp_path):
    from archlab import ConfigError
    from archlab.search.study import load_study

    steps = yaml.safe_load(open(os.path.join(STUDIES, "tiny.yaml")))["quality"]["train"]["steps"]
    with pytest.raises(ConfigError, match=f"racing: first_look: {steps} must be below quality.train.steps"):
        load_study(_study(tmp_path, first_look=steps))


def test_racing_refuses_several_seeds_per_judgement(tmp_path):
    from archlab import ConfigError
    from archlab.search.study import load_study

    path = _study(tmp_path, max_seeds=2)
    data = yaml.safe_load(path.read_text())
    data["quality"]["train"]["seeds"] = 2  # racing seed k would train seeds k and k + 1: overlapping proxies
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="racing: adds proxy seeds one at a time up to max_seeds; set quality.train.seeds: 1"):
        load_study(path)


def test_simulation_runs_pool_only_when_they_differ_in_their_worlds_alone():
    from benchmarks.search.noise_aware_pool import pool

    def run(first: int, tpe: list[float], mine: list[float], **over) -> dict:
        return {"calibration": {"slope": 0.07}, "budget": 120, "max_seeds": 1, "z": 2.0, "first_look_z": 0.0,
                "worlds": [first, first + len(tpe) - 1], "per_world": {"tpe": tpe, "first_look": mine}, **over}

    out = pool([run(0, [1.0, 2.0], [2.0, 2.5]), run(2, [3.0], [2.0])])
    assert out["per_world"] == {"tpe": [1.0, 2.0, 3.0], "first_look": [2.0, 2.5, 2.0]}
    assert out["summary"]["first_look_minus_tpe"]["median"] == 0.5
    assert out["summary"]["first_look_minus_tpe"]["worlds_better"] == 2 and out["summary"]["first_look_minus_tpe"]["worlds"] == 3
    with pytest.raises(ValueError, match="worlds overlap"):
        pool([run(0, [1.0, 2.0], [2.0, 2.5]), run(1, [3.0], [2.0])])
    with pytest.raises(ValueError, match="first_look_z differs"):
        pool([run(0, [1.0], [2.0]), run(5, [3.0], [2.0], first_look_z=1.0)])


def test_the_real_confirmation_continues_a_study_from_its_committed_journal(tmp_path):
    from types import SimpleNamespace

    from benchmarks.search.noise_aware_confirm import restore_study, snapshot_study

    cfg = SimpleNamespace(name="confirm-x", storage_url=f"sqlite:///{tmp_path / 'work' / 'x' / 'study.db'}")
    (tmp_path / "work" / "x").mkdir(parents=True)
    study = optuna.create_study(study_name=cfg.name, storage=cfg.storage_url, directions=["minimize", "maximize"])
    for i in range(3):
        trial = study.ask({"w": optuna.distributions.IntDistribution(1, 8)})
        trial.set_user_attr("budget", i)
        study.tell(trial, [10.0 * i, 0.5 - i])
    snapshot = tmp_path / "state" / "x.journal.jsonl"
    snapshot_study(cfg, snapshot)
    assert snapshot.exists() and not snapshot.with_name(snapshot.name + ".tmp").exists()
    assert {"command", "commit", "host", "date"} <= set(json.loads((snapshot.parent / "manifest.json").read_text())["runs"][snapshot.name])
    before = [(t.params, t.values, t.user_attrs, t.state) for t in study.trials]

    restore_study(cfg, snapshot)  # the database is there: nothing is touched
    assert len(optuna.load_study(study_name=cfg.name, storage=cfg.storage_url).trials) == 3
    (tmp_path / "work" / "x" / "study.db").unlink()
    (tmp_path / "work" / "x").rmdir()  # a fresh checkout: no work folder at all
    restore_study(cfg, snapshot)
    again = optuna.load_study(study_name=cfg.name, storage=cfg.storage_url)
    assert [(t.params, t.values, t.user_attrs, t.state) for t in again.trials] == before
    assert again.directions == study.directions

    further = optuna.create_study(study_name=cfg.name, storage=f"sqlite:///{tmp_path / 'gpu.db'}", directions=["minimize", "maximize"])
    for t in again.trials:
        further.add_trial(t)
    further.add_trial(optuna.trial.create_trial(params={"w": 3}, distributions={"w": optuna.distributions.IntDistribution(1, 8)},
                                                values=[1.0, 2.0]))
    snapshot_study(SimpleNamespace(name=cfg.name, storage_url=f"sqlite:///{tmp_path / 'gpu.db'}"), snapshot)
    restore_study(cfg, snapshot)  # the committed snapshot went further (a lent GPU): it replaces the database
    assert len(optuna.load_study(study_name=cfg.name, storage=cfg.storage_url).trials) == 4
    assert (tmp_path / "work" / "x" / "study.db.replaced").exists()


def test_the_real_confirmation_compares_true_hypervolumes_with_the_reference_seed_noise(tmp_path):
    from benchmarks.search.noise_aware_confirm import compare, reference_seed_sd, report

    fronts = {"tpe": [{"name": "a", "predicted_ms": 3.0}], "first_look": [{"name": "b", "predicted_ms": 1.0},
                                                                           {"name": "c", "predicted_ms": 2.0}]}
    ref = (4.0, 0.0)
    scores = {"a": [0.6, 0.6], "b": [0.3, 0.3], "c": [0.5, 0.5]}
    reference = {"measurements": {"r": {"s100": [{"ema": {"eval_score": {"value": 0.7}}}],
                                        "s101": [{"ema": {"eval_score": {"value": 0.5}}}]}}}
    (tmp_path / "ref.json").write_text(json.dumps(reference))
    sd = reference_seed_sd(scores, tmp_path / "ref.json")
    assert sd["members_sd"] == 0 and sd["members_df"] == 3 and sd["pooled_df"] == 4
    assert sd["pooled_sd"] == pytest.approx(math.sqrt(0.02 / 4))  # one pair 0.2 apart, three pairs equal
    out = compare(["tpe", "first_look"], fronts, scores, ref, sd, draws=400)
    # tpe: (4-3) x 0.6 = 0.6; first look: (4-1) x 0.3 + (4-2) x (0.5-0.3) = 1.3
    assert out["true_hv"] == pytest.approx({"tpe": 0.6, "first_look": 1.3})
    d = out["first_look_minus_tpe"]
    assert d["true_hv"] == pytest.approx(0.7) and d["relative"] == pytest.approx(0.7 / 0.6)
    assert d["ci95_own_seeds"] == pytest.approx([0.7, 0.7])  # the members' seeds agree: no reference noise of their own
    lo, hi = d["ci95_pooled_sd"]
    assert lo < 0.7 < hi and hi - lo > 0.2  # the pooled spread (0.07 per seed) widens it
    swapped = compare(["tpe", "first_look"], fronts, {**scores, "a": [1.5, 1.5]}, ref, sd, draws=400)
    assert swapped["first_look_minus_tpe"]["true_hv"] < 0 and swapped["first_look_minus_tpe"]["share_at_or_below_zero_pooled_sd"] > 0.9
    members = [{**x, "kind": k, "proxy_text_gap": 0.2, "reference_eval_score": scores[x["name"]]} for k, f in fronts.items() for x in f]
    table = report({"summary": {"spend": {"tpe": {}, "first_look": {}}, "here": out}, "reference_points": {"here": ref},
                    "members": members})
    assert "| here (4, 0.000) | 0.6 | 1.3 | +0.7 (+116.7%) [+0.7, +0.7; " in table
    assert table.index("| b | first_look | 1 |") < table.index("| a | tpe | 3 |")  # members by latency
