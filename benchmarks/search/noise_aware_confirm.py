"""The noise-aware search's real confirmation: real studies at equal proxy spend, their fronts scored at reference grade.

The simulation (``benchmarks/search/noise_aware.py``) judges methods in worlds calibrated on the quality
benchmark; this runs them for real, once. For each method a study of the default space (the default
proxy at the simulation's 150 steps, objectives latency on the shipped torch-cpu table and text_gap) runs until it has spent
``--budget`` full proxy runs (plain TPE: one per complete trial; the noise-aware mode: its own count,
``racing_spend``, where a first-look stop costs ``first_look / steps`` of one). Each study's Pareto
front (its own estimates) is then trained at the quality reference's grade
(``benchmarks/quality/quality_reference.py``: 1000 steps, two seeds, eval_score on 1024 captions), and
the front's *true* hypervolume computed from those scores and the exact latencies, against the simulation's
reference point (1.05x the slowest of 400 draws of the space, their worst quality under the true model fitted on
the quality reference; two other points show what that choice does). Reported: each method's true hypervolume,
the difference with two 95% intervals for the reference's noise (each member's score drawn from its own two seeds;
each member's mean drawn with the seed spread pooled over these members and the quality reference's), what each
spent, and what the simulation at this budget expects of one study (``--simulation``): a single real study per
method is one world, so its direction is itself a draw, which no interval over reference seeds covers.

Resumable at every stage: the studies are Optuna studies in ``--work`` (rerun to continue); the
reference runs checkpoint and store each measurement as the reference does. ``--state`` (committed) keeps
what a fresh checkout needs to continue: each study copied after every trial into an Optuna journal file
(JSON lines) and each reference seed's measurements; a run whose ``--work`` is empty starts from them
(the reference runs cut off mid-way start again, their checkpoints being in ``--work``).

    .venv/bin/python -m benchmarks.search.noise_aware_confirm --budget 24 --out benchmarks/results/noise_aware/confirm_real.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import yaml
from optuna.storages.journal import JournalFileBackend

from archlab import LatencyTable, Predictor, load_space
from archlab.files import write_text
from archlab.results.pareto import pareto, racing_spend
from archlab.search.racing import pooled_seed_sd
from archlab.search.runner import completed, description_of, open_study, run_study
from archlab.search.study import load_study
from benchmarks.common import provenance, record, write_result
from benchmarks.search.noise_aware import features, fit_true_model, hypervolume

TABLE = "x86-2core_torch-cpu"
METHODS = {
    "tpe": {},
    "first_look": {"racing": {"max_seeds": 1, "first_look": 50}},  # the simulation's best on 18 architectures (benchmarks/README.md)
}


CALIBRATED_STEPS = 150
QUICK = {"train": {"steps": 10, "batch": 4}, "eval": {"heldout": 32, "metrics": ["text_gap", "heldout_loss"]}}  # --quick: the code only


def study_file(work: Path, method: str, seed: int, device: str, quick: bool = False) -> Path:
    """The study of ``method``: the default space and proxy, the shipped table's latency, text_gap."""
    spec: dict[str, Any] = {
        "name": f"confirm-{method}", "space": "mobilediffusion",
        "objectives": [{"metric": "latency_ms", "direction": "minimize", "table": TABLE},
                       {"metric": "text_gap", "direction": "maximize"}],
        "sampler": {"kind": "tpe", "seed": seed, "startup_trials": 10},
        "budget": {"trials": 100000},
        # 150 steps: the shipped default, which the simulation is calibrated on (18 architectures)
        "quality": {"device": device, "train": {"steps": CALIBRATED_STEPS}, "eval": {"metrics": ["text_gap", "heldout_loss"]}},
        "out": str((work / method).absolute()), **METHODS[method]}
    if quick:
        spec["quality"].update(QUICK)
        if "racing" in spec:
            spec["racing"] = {**spec["racing"], "first_look": 5}
    path = work / f"{method}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def spent(study: optuna.Study, cfg) -> float:
    """Full proxy runs spent so far."""
    spend = racing_spend(study, cfg)
    return float(completed(study)) if spend is None else float(spend["full_runs"])


def _journal(path: Path) -> optuna.storages.JournalStorage:
    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def _finished(storage, name: str) -> int:
    study = optuna.load_study(study_name=name, storage=storage)
    return sum(t.state.is_finished() for t in study.get_trials(deepcopy=False))


def restore_study(cfg, snapshot: Path) -> None:
    """A fresh checkout continues: the committed snapshot fills the study database where there is none, or
    replaces one that holds fewer finished trials (the snapshot came from further on, e.g. a lent GPU); the
    replaced database is kept beside it as ``study.db.replaced``."""
    db = Path(cfg.storage_url[len("sqlite:///"):])
    if not snapshot.exists():
        return
    if db.exists():
        if _finished(cfg.storage_url, cfg.name) >= _finished(_journal(snapshot), cfg.name):
            return
        db.replace(db.with_name(db.name + ".replaced"))
    db.parent.mkdir(parents=True, exist_ok=True)
    optuna.copy_study(from_study_name=cfg.name, from_storage=_journal(snapshot), to_storage=cfg.storage_url)


def snapshot_study(cfg, snapshot: Path) -> None:
    """The study, whole, to ``snapshot`` (taken between trials, so no trial is left running in it)."""
    tmp = snapshot.with_name(snapshot.name + ".tmp")
    tmp.unlink(missing_ok=True)
    snapshot.parent.mkdir(parents=True, exist_ok=True)
    optuna.copy_study(from_study_name=cfg.name, from_storage=cfg.storage_url, to_storage=_journal(tmp))
    tmp.replace(snapshot)
    record(snapshot)


def run_method(work: Path, state: Path, method: str, budget: float, seed: int, device: str,
               quick: bool) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run (or resume) the study until it has spent ``budget``; its spend and its front's members."""
    cfg = load_study(study_file(work, method, seed, device, quick))
    snapshot = state / f"{method}.journal.jsonl"
    restore_study(cfg, snapshot)
    study = open_study(cfg)
    while spent(study, cfg) + 1.0 <= budget:
        run_study(cfg, n_trials=1, progress=False)
        snapshot_study(cfg, snapshot)
    front, _, _ = pareto(study, cfg)
    members = [{"name": f"conf-{method}-t{t.number}", "kind": method, "predicted_ms": t.values[0], "proxy_text_gap": t.values[1], "description": description_of(t).to_dict()}
               for t in front]
    spend = racing_spend(study, cfg) or {"candidates": completed(study), "full_runs": completed(study)}
    return {"method": method, "spent_full_runs": spent(study, cfg), "spend": spend, "front": len(members)}, members


def reference_scores(work: Path, state: Path, members: list[dict[str, Any]], steps: int, threads: int, device: str,
                     items: int) -> dict[str, list[float]]:
    """Each member's eval_score at reference grade, one per seed (trained by the quality reference's own code)."""
    ref = work / "reference"
    ref.mkdir(parents=True, exist_ok=True)
    archs_path = ref / "archs.json"
    known = json.loads(archs_path.read_text()) if archs_path.exists() else []
    names = {a["name"] for a in known}
    archs = known + [m for m in members if m["name"] not in names]
    write_text(archs_path, json.dumps(archs, indent=1))  # whole or not at all: the reference pins its architectures by it
    state.mkdir(parents=True, exist_ok=True)
    stored = {seed: state / f"reference_s{seed}.json" for seed in (100, 101)}
    procs = [subprocess.Popen([sys.executable, "-m", "benchmarks.quality.quality_reference", "--work", str(ref), "--seeds",
                               str(seed), "--steps", str(steps), "--threads", str(threads), "--device", device, "--items",
                               str(items), "--only", ",".join(m["name"] for m in members), "--out", str(stored[seed]),
                               *(["--seed-from", str(stored[seed])] if stored[seed].exists() else [])])
             for seed in (100, 101)]  # the two seeds at once
    if any(p.wait() for p in procs):
        raise SystemExit("error: a reference run failed (its output is above); rerun to resume")
    out: dict[str, list[float]] = {}
    for m in members:
        for seed in (100, 101):
            entries = json.loads((ref / m["name"] / f"s{seed}.json").read_text())
            out.setdefault(m["name"], []).append(next(e["ema"]["eval_score"]["value"] for e in entries if e["step"] == steps))
    return out


def reference_points(members: list[dict[str, Any]], reference_path: Path) -> dict[str, tuple[float, float]]:
    """Hypervolume reference points (worst latency, worst eval_score). ``space``: the simulation's own rule (1.05x the
    slowest of 400 draws of the space, and their worst quality under the true model fitted on the quality reference),
    so that the real figure reads like the simulated ones. Two more, to show what the choice does:
    ``reference_draws`` (the worst measured eval_score of the reference's random draws of the space) and ``zero``
    (eval_score 0, latency 1.05x the slowest member)."""
    reference = json.loads(reference_path.read_text())
    coef, _ = fit_true_model(reference, "eval_score")
    space = load_space("mobilediffusion")
    predictor = Predictor([LatencyTable.load(TABLE)], check_device=False)
    label = predictor.tables[0].label
    draws = [space.decode(c) for c, _ in space.samples(400, seed=1000)]
    worst_ms = max(max(predictor.score(d).latency_ms[label] for d in draws), max(x["predicted_ms"] for x in members)) * 1.05
    random_draws = [float(np.mean([r[-1]["ema"]["eval_score"]["value"] for r in reference["measurements"][x["name"]].values()]))
                    for x in reference["archs"] if x["kind"] == "random"]
    return {"space": (worst_ms, float(min(features(d) @ coef for d in draws))),
            "reference_draws": (worst_ms, min(random_draws)),
            "zero": (max(x["predicted_ms"] for x in members) * 1.05, 0.0)}


def reference_seed_sd(scores: dict[str, list[float]], reference_path: Path) -> dict[str, float]:
    """eval_score's spread between training seeds at reference grade: over this run's members, and pooled with the
    quality reference's architectures (same grade, seeds and items)."""
    reference = json.loads(reference_path.read_text())
    theirs = [[r[-1]["ema"]["eval_score"]["value"] for r in runs.values()] for runs in reference["measurements"].values()]
    mine = list(scores.values())
    return {"members_sd": pooled_seed_sd(mine), "members_df": sum(len(g) - 1 for g in mine),
            "pooled_sd": pooled_seed_sd(mine + theirs), "pooled_df": sum(len(g) - 1 for g in mine + theirs)}


def compare(methods: list[str], fronts: dict[str, list[dict[str, Any]]], scores: dict[str, list[float]],
            ref: tuple[float, float], sd: dict[str, float], draws: int = 4000) -> dict[str, Any]:
    """Each method's true hypervolume against ``ref``, and each later method minus the first with two 95% intervals
    for the reference's own noise: each member's score drawn from its own seeds (bootstrap), and each member's mean
    drawn around its value with the pooled seed spread (normal); the search's own randomness is not in them."""
    def hv(method: str, pick: dict[str, float]) -> float:
        return hypervolume([(x["predicted_ms"], pick[x["name"]]) for x in fronts[method]], ref)
    means = {k: float(np.mean(v)) for k, v in scores.items()}
    rng = np.random.default_rng(0)
    boot = [{k: v[rng.integers(len(v))] for k, v in scores.items()} for _ in range(draws)]
    normal = [{k: means[k] + rng.normal(0, sd["pooled_sd"] / np.sqrt(len(v))) for k, v in scores.items()} for _ in range(draws)]
    out: dict[str, Any] = {"true_hv": {m: hv(m, means) for m in methods}}
    for m in methods[1:]:
        diff = out["true_hv"][m] - out["true_hv"][methods[0]]
        ci = {}
        for name, picks in (("own_seeds", boot), ("pooled_sd", normal)):
            d = np.array([hv(m, pick) - hv(methods[0], pick) for pick in picks])
            ci[f"ci95_{name}"] = [float(np.percentile(d, 2.5)), float(np.percentile(d, 97.5))]
            ci[f"share_at_or_below_zero_{name}"] = float(np.mean(d <= 0))
        out[f"{m}_minus_{methods[0]}"] = {"true_hv": diff, "relative": diff / out["true_hv"][methods[0]]
                                          if out["true_hv"][methods[0]] else None, **ci}
    return out


def simulated_prior(path: Path, methods: list[str]) -> dict[str, Any]:
    """What the simulation expects of one real study at this budget: how often and by how much each later method's
    front beat the first's over its worlds (each world is one study, as the real confirmation is)."""
    sim = json.loads(path.read_text())
    out: dict[str, Any] = {"file": str(path), "budget": sim["budget"], "worlds": sim["worlds"]}
    base = np.array(sim["per_world"][methods[0]])
    for m in methods[1:]:
        if m in sim["per_world"]:
            rel = np.array(sim["per_world"][m]) / base - 1
            out[f"{m}_minus_{methods[0]}"] = {**sim["summary"][f"{m}_minus_{methods[0]}"], "relative_median": float(np.median(rel)),
                                              "relative_quartiles": [float(np.percentile(rel, 25)), float(np.percentile(rel, 75))]}
    return out


def report(result: dict[str, Any]) -> str:
    """The result as the Markdown tables benchmarks/README.md shows."""
    methods = list(result["summary"]["spend"])
    base, rest = methods[0], methods[1:]
    rows = ["| member | front of | latency (ms, table) | proxy text_gap | reference eval_score (seeds) |", "|---|---|---|---|---|"]
    for x in sorted(result["members"], key=lambda x: x["predicted_ms"]):
        s = x["reference_eval_score"]
        rows.append(f"| {x['name']} | {x['kind']} | {x['predicted_ms']:.0f} | {x['proxy_text_gap']:.4f} | "
                    f"{np.mean(s):.4f} ({', '.join(f'{v:.4f}' for v in s)}) |")
    rows += ["", "| reference point (ms, eval_score) | " + " | ".join(f"{m} true HV" for m in methods)
             + "".join(f" | {m} minus {base} [95%: own seeds; pooled seed sd] |" for m in rest), "|---" * (len(methods) + len(rest) + 1) + "|"]
    for name, ref in result["reference_points"].items():
        row = result["summary"][name]
        cells = [f"{row['true_hv'][m]:.1f}" for m in methods]
        for m in rest:
            d = row[f"{m}_minus_{base}"]
            rel = "" if d["relative"] is None else f" ({100 * d['relative']:+.1f}%)"
            cells.append(f"{d['true_hv']:+.1f}{rel} [{d['ci95_own_seeds'][0]:+.1f}, {d['ci95_own_seeds'][1]:+.1f}; "
                         f"{d['ci95_pooled_sd'][0]:+.1f}, {d['ci95_pooled_sd'][1]:+.1f}]")
        rows.append(f"| {name} ({ref[0]:.0f}, {ref[1]:.3f}) | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _bad_input(message: str) -> None:
    print(message, file=sys.stderr)
    raise SystemExit(2)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--budget", type=float, default=24, help="full proxy runs each method may spend")
    p.add_argument("--methods", default="tpe,first_look")
    p.add_argument("--seed", type=int, default=0, help="the samplers' seed")
    p.add_argument("--steps", type=int, default=1000, help="the reference grade's training steps")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="auto")
    p.add_argument("--quick", action="store_true", help="tiny proxies and reference (10 and 20 steps, 32 items): tries the code, measures nothing")
    p.add_argument("--work", type=Path, default=Path("out/noise_aware_confirm"))
    p.add_argument("--state", type=Path, default=Path("benchmarks/results/noise_aware/confirm_real_state"),
                   help="committed progress a fresh checkout continues from (with --quick: inside --work)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/noise_aware/confirm_real.json"))
    p.add_argument("--reference", type=Path, default=Path("benchmarks/results/quality_reference/quality_reference.json"),
                   help="the quality reference: the true-quality model of the hypervolume's reference point, and seed noise")
    p.add_argument("--simulation", type=Path, default=Path("benchmarks/results/noise_aware/sim_budget24_first_look50_ms1_w120-239.json"),
                   help="the simulation at this budget, for what one real study should show (skipped when absent)")
    p.add_argument("--report", action="store_true", help="print the tables of an existing --out and stop")
    a = p.parse_args()
    if a.report:
        if not a.out.exists():
            _bad_input(f"error: --out {a.out}: no result yet; run without --report first")
        print(report(json.loads(a.out.read_text())))
        return
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    methods = a.methods.split(",")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        _bad_input(f"error: --methods: {', '.join(unknown)} unknown; choose from {', '.join(METHODS)}")
    state = a.work / "state" if a.quick else a.state  # never over committed progress
    runs, fronts = {}, {}
    for m in methods:
        runs[m], fronts[m] = run_method(a.work, state, m, a.budget, a.seed, a.device, a.quick)
        print(json.dumps(runs[m]), flush=True)
    members = [x for m in methods for x in fronts[m]]
    steps, items = (20, 32) if a.quick else (a.steps, 1024)
    scores = reference_scores(a.work, state, members, steps, a.threads, a.device, items)
    if a.quick:
        a.out = a.work / "confirm_quick.json"  # never over a committed result
    points = reference_points(members, a.reference)
    sd = reference_seed_sd(scores, a.reference)
    summary = {name: compare(methods, fronts, scores, ref, sd) for name, ref in points.items()}
    summary["spend"] = runs
    prior = simulated_prior(a.simulation, methods) if a.simulation.exists() else None
    out = {"benchmark": "noise_aware_confirm", "quick": a.quick, "budget": a.budget, "reference_steps": steps,
           "reference_points": {k: list(v) for k, v in points.items()}, "seed_sd": sd, "summary": summary,
           "simulated_at_this_budget": prior,
           "members": [{**x, "reference_eval_score": scores[x["name"]]} for x in members],
           "written_by": provenance()}
    write_result(a.out, out)
    print(report(out))


if __name__ == "__main__":
    main()
