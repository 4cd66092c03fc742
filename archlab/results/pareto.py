"""A study's results: trials as a table, the feasible Pareto front, its hypervolume, and
which front members the noise of their quality figures cannot tell apart.

Hypervolume comes from ``moocore`` (a maintained multi-objective library), on minimised
values (maximised objectives negated).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import optuna
import pandas as pd

from archlab.search.study import StudyConfig

NOISE_SE = 2.0  # two figures closer than this many combined standard errors are not told apart


def is_feasible(trial: optuna.trial.FrozenTrial) -> bool:
    """A complete trial that meets every constraint (a failed or running trial is never feasible)."""
    return trial.state == optuna.trial.TrialState.COMPLETE and all(v <= 0 for v in trial.constraints.values())


def noise_note(cfg: StudyConfig) -> str:
    """What the quality standard errors of a study count, in one sentence."""
    if cfg.racing is not None:
        look = (f"each first read at {cfg.racing.first_look} of its {cfg.quality.train.steps} steps, and stopped there "
                "unless within reach of the first readings' front; " if cfg.racing.first_look else "")
        return (f"Noise-aware search: one proxy seed per candidate ({look}up to {cfg.racing.max_seeds} where the front is "
                "decided: the proxy seeds column); quality standard errors count held-out and seed noise (with one seed, the "
                "study's pooled seed spread, or racing.seed_sd until it has one; with neither, held-out noise alone); members "
                "within two combined standard errors are marked not distinguishable.")
    if cfg.quality.train.seeds > 1:
        return (f"Quality standard errors count held-out and seed noise ({cfg.quality.train.seeds} training seeds per "
                "candidate); members within two combined standard errors are marked not distinguishable.")
    return ("Quality standard errors count held-out noise only (quality.train.seeds: 1); a second training seed moves "
            "short proxies' figures by several of them (docs/quality.md), so \"not distinguishable\" marks too few pairs: "
            "set train.seeds: 2 to count it.")


def racing_spend(study: optuna.Study, cfg: StudyConfig) -> dict[str, float] | None:
    """What a noise-aware study spent: candidates raced, stopped at the first look, proxy seeds trained to the end,
    and the whole in full proxy runs (a first-look stop costs ``first_look / steps`` of one). None without racing."""
    if cfg.racing is None:
        return None
    trials = [t for t in study.get_trials(deepcopy=False) if "racing" in t.user_attrs]
    refinements = sum(1 for t in trials if "refines" in t.user_attrs)  # each adds one seed to an earlier trial's
    stopped = sum(1 for t in trials if t.user_attrs["racing"].get("stopped"))
    look = (cfg.racing.first_look or 0) / cfg.quality.train.steps
    seeds = sum(t.user_attrs["racing"]["seeds"] for t in trials if "refines" not in t.user_attrs) + refinements
    return {"candidates": len(trials) - refinements, "stopped_at_first_look": stopped, "proxy_seeds": seeds,
            "full_runs": round(seeds + stopped * look, 2)}


def spend_line(spend: dict[str, float]) -> str:
    """:func:`racing_spend` in one sentence."""
    return (f"Spent {spend['full_runs']:g} full proxy runs on {spend['candidates']} candidates: {spend['proxy_seeds']} seeds "
            f"trained to the end, {spend['stopped_at_first_look']} candidates stopped at the first look.")


def failures(study: optuna.Study) -> tuple[int, list[tuple[str, int]]]:
    """How many trials failed, and each distinct error's first line with how many trials it stopped."""
    failed = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,))
    counts: dict[str, int] = {}
    for t in failed:
        line = (t.user_attrs.get("error") or "no error recorded (the worker was killed?)").splitlines()[0]
        counts[line] = counts.get(line, 0) + 1
    return len(failed), sorted(counts.items(), key=lambda kv: -kv[1])


def complete(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """Every trial with its objectives, metrics (and standard errors), feasibility and summary."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        row = {"trial": t.number, "state": t.state.name, "feasible": is_feasible(t),
               "summary": t.user_attrs.get("summary", ""), "error": t.user_attrs.get("error", "")}
        for i, v in enumerate(t.values or []):
            row[f"objective_{i}"] = v
        row.update({k[len("metric."):]: v for k, v in t.user_attrs.items() if k.startswith("metric.")})
        row.update({f"param.{k}": v for k, v in t.params.items()})
        rows.append(row)
    return pd.DataFrame(rows)


def hypervolume(points: np.ndarray, reference: np.ndarray) -> float:
    """The hypervolume of minimised ``points`` against ``reference`` (moocore)."""
    import moocore

    inside = points[(points < reference).all(axis=1)]
    return float(moocore.hypervolume(inside, ref=reference)) if len(inside) else 0.0


def pareto(study: optuna.Study, cfg: StudyConfig) -> tuple[list[optuna.trial.FrozenTrial], float, list[float]]:
    """The feasible Pareto front (sorted by the first objective), its hypervolume and the reference point.

    The reference point is the study file's ``reference_point`` or, per objective, the worst
    feasible value seen, 10% further out.
    """
    feasible = latest([t for t in complete(study) if is_feasible(t)], study)
    front = nondominated(feasible, cfg)
    if not front:
        return [], 0.0, []
    sign = np.array([1.0 if o.direction == "minimize" else -1.0 for o in cfg.objectives])
    values = np.array([t.values for t in feasible]) * sign
    ref = values.max(axis=0)
    ref = ref + 0.1 * np.abs(ref) + 1e-12
    for i, o in enumerate(cfg.objectives):
        if cfg.reference_point and o.name in cfg.reference_point:
            ref[i] = cfg.reference_point[o.name] * sign[i]
    hv = hypervolume(np.array([t.values for t in front]) * sign, ref)
    return sorted(front, key=lambda t: t.values[0]), hv, [float(r) for r in ref * sign]


def latest(trials: list[optuna.trial.FrozenTrial], study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The trials not extended by a later one (a racing refinement adds seeds to an architecture in a new trial)."""
    refined = {t.user_attrs.get("refines") for t in study.get_trials(deepcopy=False)}
    return [t for t in trials if t.number not in refined]


def nondominated(trials: list[optuna.trial.FrozenTrial], cfg: StudyConfig) -> list[optuna.trial.FrozenTrial]:
    """The trials no other one dominates on the objectives (as good on all, better on one)."""
    sign = np.array([1.0 if o.direction == "minimize" else -1.0 for o in cfg.objectives])
    values = [np.array(t.values) * sign for t in trials]
    return [t for i, t in enumerate(trials)
            if not any(np.all(v <= values[i]) and np.any(v < values[i]) for j, v in enumerate(values) if j != i)]


def standard_error(trial: optuna.trial.FrozenTrial, name: str) -> float:
    """An objective's standard error as the trial stored it (0 for exact figures: params, FLOPs, latency)."""
    se = trial.user_attrs.get(f"metric.{name}_se")
    return float(se) if se is not None and not math.isnan(float(se)) else 0.0


def indistinguishable(front: list[optuna.trial.FrozenTrial], cfg: StudyConfig, k: float = NOISE_SE) -> dict[int, list[int]]:
    """For each front member, the members that are as good on every objective within noise.

    B is listed under A when, on every objective, B is better than A or the two differ by no
    more than ``k`` combined standard errors: the data cannot show that A beats B anywhere,
    so A's place on the front is not established against B.
    """
    out: dict[int, list[int]] = {}
    for a in front:
        peers = []
        for b in front:
            if a is b:
                continue
            ok = True
            for i, o in enumerate(cfg.objectives):
                sign = 1.0 if o.direction == "minimize" else -1.0
                gap = (b.values[i] - a.values[i]) * sign  # > 0: b is worse than a on this objective
                noise = k * math.hypot(standard_error(a, o.name), standard_error(b, o.name))
                if gap > noise:
                    ok = False
                    break
            if ok:
                peers.append(b.number)
        out[a.number] = peers
    return out


def front_rows(front: list[optuna.trial.FrozenTrial], cfg: StudyConfig) -> list[dict[str, Any]]:
    """The front as plain rows: objectives with standard errors, the summary, the noise peers."""
    peers = indistinguishable(front, cfg)
    rows = []
    for t in front:
        row: dict[str, Any] = {"trial": t.number}
        for o, v in zip(cfg.objectives, t.values):
            row[o.name] = v
            se = standard_error(t, o.name)
            if se:
                row[f"{o.name}_se"] = se
        row["not_distinguishable_from"] = peers[t.number]
        row["summary"] = t.user_attrs.get("summary", "")
        racing = t.user_attrs.get("racing")
        if racing:  # how many proxy seeds the noise-aware search gave it
            row["seeds"] = racing["seeds"]
        rows.append(row)
    return rows
