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


def test_a_loss_metrics_cost_leaves_out_the_eval_score_sampled_beside_it():
    from benchmarks.quality.quality_analysis import settings

    def entry(step: int, train: float, ev: float, sampled: bool) -> dict:
        metrics = {"text_gap": {"value": 0.1}, **({"eval_score": {"value": 0.5}} if sampled else {})}
        return {"step": step, "device": "cpu", "train_cpu_s": train, "eval_cpu_s": ev, "metrics": metrics}

    run = [entry(60, 50.0, 4.0, False), entry(100, 90.0, 6.0, False), entry(125, 110.0, 40.0, True)]
    cost = settings({"default": {"a": {"s0": run, "s1": run}}})["default@125"]["a"]["cpu_s"]
    assert cost["eval_score"] == 150.0  # the sampling is eval_score's cost
    assert cost["text_gap"] == 115.0  # text_gap: training plus the run's median loss-only evaluation


def test_the_default_is_chosen_by_the_goals_both_replicates_meet_then_agreement_regret_and_cost():
    from benchmarks.quality.quality_analysis import choose

    def row(name, *, agree=39, agree_b=None, p=0.001, p_b=None, tau=0.7, tau_b=None, low=0.4, seed_tau=0.9, regret=0.0,
            cost=2.0, archs=17):
        return {"setting": name, "metric": "text_gap", "archs": archs, "separated_pairs": 39, "agree": agree,
                "agree_b": agree if agree_b is None else agree_b, "agree_fraction": agree / 39, "permutation_p": p,
                "permutation_p_b": p if p_b is None else p_b, "tau": tau, "tau_b": tau if tau_b is None else tau_b,
                "tau_ci": [low, 0.9], "tau_ci_b": [low, 0.9], "seed_tau": seed_tau, "regret": {"median": regret}, "cpu_minutes": cost,
                "independent_replicates": True}

    assert choose([row("high-tau", tau=0.9, seed_tau=0.79), row("all-goals", tau=0.61)])["setting"] == "all-goals"
    assert choose([row("slow", cost=3.0), row("cheap", cost=1.0)])["setting"] == "cheap"
    assert choose([row("regret", regret=0.5), row("none")])["setting"] == "none"
    assert choose([row("agrees-less", agree=36, cost=0.5), row("agrees")])["setting"] == "agrees"
    assert choose([row("over-budget", cost=6.0)]) is None
    assert choose([row("fewer-archs", archs=9, cost=0.5), row("all-archs", seed_tau=0.5)])["setting"] == "all-archs"
    # one lucky replicate: B misses agreement, p and tau, so A's figures alone do not carry it
    lucky = row("lucky", seed_tau=0.5, agree_b=31, p_b=0.05, tau_b=0.45, cost=0.3)
    assert choose([lucky, row("steady", seed_tau=0.5, low=0.2)])["setting"] == "steady"


def test_the_ladders_quality_change_counts_seed_noise_and_names_its_verdict():
    from benchmarks.quality.ladder_quality import quality_changes

    def runs(*gaps: float) -> dict:
        return {str(i): {"text_gap": {"value": g, "se": 0.001}, "heldout_loss": {"value": 0.1 - g, "se": 0.001}}
                for i, g in enumerate(gaps)}

    order = ["start", "no high-res self-attention", "separable convs"]
    out = quality_changes({"start": runs(0.10, 0.11), order[1]: runs(0.20, 0.21), order[2]: runs(0.205, 0.195)}, order)
    first, second = out["steps"]
    assert out["seed_df"]["text_gap"] == 3 and first["fid_snapgen"].startswith("better")
    assert first["text_gap"]["change"] == 0.1 and first["text_gap"]["verdict"] == "better"
    assert first["heldout_loss"]["verdict"] == "better"  # lower loss is better
    assert second["text_gap"]["verdict"] == "within noise"
    lo, hi = second["text_gap"]["ci95"]
    assert lo < 0 < hi and second["text_gap"]["se"] > 0.001 * 2 ** 0.5  # seed spread and both items' se


def test_the_ladders_quality_runs_resume_without_training_twice(tmp_path):
    from benchmarks.latency.snapgen_ladder import ladder
    from benchmarks.quality.ladder_quality import QUICK_STEPS, run_quality

    steps = ladder()[:2]
    first = run_quality(steps[:1], seeds=1, work=tmp_path, quick=True)
    stored = first[steps[0][0]]["0"]
    both = run_quality(steps, seeds=1, work=tmp_path, quick=True)
    assert both[steps[0][0]]["0"] == stored and set(both) == {n for n, _ in steps}
    assert (tmp_path / "ladder_quality_quick.json").exists() and stored["provenance"]["commit"]
    assert stored["steps"] == QUICK_STEPS  # each run says which proxy length made it


def test_a_finished_reference_run_keeps_its_measurements_and_drops_its_checkpoint(tmp_path):
    from archlab.arch import preset
    from archlab.arch.description import description_to_dict
    from archlab.quality import QualityPipeline
    from benchmarks.quality.quality_reference import measure, reference_config

    pipe = QualityPipeline(reference_config(steps=3, threads=1, device="cpu", items=8))
    arch = {"name": "tiny", "description": description_to_dict(preset("tiny"))}
    stored = measure(arch, 0, 3, tmp_path, pipe)
    assert [r["step"] for r in stored] == [3] and "eval_score" in stored[-1]["ema"]
    assert not (tmp_path / "tiny" / "s0").exists()  # a checkpoint of each finished run filled the disk
    assert measure(arch, 0, 3, tmp_path, pipe) == stored  # finished: nothing trained again


def test_averaged_short_seeds_are_judged_half_against_half_at_the_cost_of_their_runs():
    from benchmarks.quality.quality_analysis import settings

    def run(seed):
        return [{"step": 25, "train_cpu_s": 10.0, "eval_cpu_s": 2.0, "metrics": {"text_gap": {"value": float(seed)}}}]

    table = settings({"seeds25": {"x": {f"s{s}": run(s) for s in range(10, 18)}}})
    assert table["seeds1@25"]["x"]["a"] == {"text_gap": 10.0} and table["seeds1@25"]["x"]["b"] == {"text_gap": 14.0}
    assert table["seeds4@25"]["x"]["a"] == {"text_gap": 11.5} and table["seeds4@25"]["x"]["b"] == {"text_gap": 15.5}
    assert table["seeds4@25"]["x"]["cpu_s"] == {"text_gap": 48.0}  # four runs' training and evaluation
    assert "seeds2@25" in table and "seeds25@25" not in table


def test_the_shipped_default_is_the_best_measured_design_on_the_committed_results():
    """The issue's rule: whatever goals are met, the best measured design is the default."""
    from pathlib import Path

    from archlab.quality import QualityConfig
    from benchmarks.quality.quality_analysis import SHIPPED, analyse, markdown

    results = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
    out = analyse(json.loads((results / "quality_reference" / "quality_reference.json").read_text()),
                  json.loads((results / "proxy_designs" / "proxy_designs.json").read_text()))
    assert out["best_measured"] == SHIPPED
    design, steps = SHIPPED["setting"].split("@")
    cfg = QualityConfig()
    assert design == "default" and int(steps) == cfg.train.steps and cfg.train.seeds == 1
    assert f"| {SHIPPED['setting']} (best measured) |" in markdown(out)


def test_a_setting_whose_replicates_are_one_draw_reports_no_seed_agreement_and_is_not_chosen():
    import numpy as np

    from benchmarks.quality.quality_analysis import choose, judge

    rng = np.random.default_rng(0)
    truth = np.linspace(0, 1, 10)
    ref = {f"x{i}": ([t + 0.01 * rng.normal(), t + 0.01 * rng.normal()], 0.001) for i, t in enumerate(truth)}
    shared = {f"x{i}": {"a": {"text_gap": t}, "b": {"text_gap": t}, "cpu_s": {"text_gap": 6.0}} for i, t in enumerate(truth)}
    seeded = {f"x{i}": {"a": {"text_gap": t + 0.1 * rng.normal()}, "b": {"text_gap": t + 0.1 * rng.normal()},
                        "cpu_s": {"text_gap": 60.0}} for i, t in enumerate(truth)}
    rows = []
    for name, table in (("shared@0", shared), ("seeded@1", seeded)):
        row = judge(table, "text_gap", ref, {})
        rows.append({"setting": name, "metric": "text_gap", **row})
    assert rows[0]["seed_tau"] is None and rows[0]["attenuation"] is None and not rows[0]["independent_replicates"]
    assert rows[1]["seed_tau"] is not None and rows[1]["independent_replicates"]
    assert choose(rows)["setting"] == "seeded@1"  # the one-draw setting agrees perfectly, yet is not chosen
