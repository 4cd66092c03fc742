"""Running studies: the objective, workers, resumption, and reading results back.

Every trial stores what is needed to read it back without re-running anything: its
choices (Optuna's params), the description (user attribute ``description``), every metric
(``metric.<name>``), per-block latency on each table (``block_latency.<table>``), the
proxy's metrics and its training figures. A trial that raises (out of memory, a NaN loss, a
conversion failure) is recorded as failed with its reason (``error``) and the study goes on.

Storage: SQLite beside the study's outputs by default; any SQLAlchemy URL (PostgreSQL for
many machines). Heartbeats mark a trial whose worker died (SIGKILL) as failed after the
grace period, and ``RetryHeartbeatStaleTrialCallback`` queues it again, so rerunning the
command resumes the study with nothing lost or repeated.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import warnings
from typing import Any

import optuna
import pandas as pd

from archlab.arch.description import Description, block_summary, description_from_dict
from archlab.cost.counting import count
from archlab.cost.table import LatencyTable
from archlab.errors import ConfigError
from archlab.search.space import SearchSpace, load_space
from archlab.search.study import PROXY_METRICS, WORST, StudyConfig, constraint_values

optuna.logging.set_verbosity(optuna.logging.WARNING)
# heartbeats and stale-trial retries are what make kill -9 safe; their "experimental" label is noise here
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def storage_for(cfg: StudyConfig, url: str | None = None) -> optuna.storages.RDBStorage:
    url = url or cfg.storage_url
    if url.startswith("sqlite:///"):
        os.makedirs(os.path.dirname(url[len("sqlite:///"):]) or ".", exist_ok=True)
    try:
        return optuna.storages.RDBStorage(
            url, heartbeat_interval=cfg.heartbeat_interval, grace_period=cfg.grace_period,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=2),
            engine_kwargs={"pool_pre_ping": True} if not url.startswith("sqlite") else {"connect_args": {"timeout": 60}},
        )
    except Exception as exc:  # SQLAlchemy/driver errors: a bad URL or an unreachable server
        raise ConfigError("storage", f"cannot open {url.split('@')[-1]}: {str(exc).splitlines()[0]}") from None


def make_sampler(cfg: StudyConfig) -> optuna.samplers.BaseSampler:
    kind, seed = cfg.sampler["kind"], cfg.sampler.get("seed")
    if kind == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=int(cfg.sampler.get("startup_trials", 10)))
    if kind == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=int(cfg.sampler.get("population", 20)))
    return optuna.samplers.RandomSampler(seed=seed)


def open_study(cfg: StudyConfig, url: str | None = None) -> optuna.Study:
    return optuna.create_study(study_name=cfg.name, storage=storage_for(cfg, url), sampler=make_sampler(cfg),
                               directions=[o.direction for o in cfg.objectives], load_if_exists=True)


class Evaluator:
    """Scores one candidate: cheap metrics from the counter and tables, quality from a proxy."""

    def __init__(self, cfg: StudyConfig):
        self.cfg = cfg
        self.space: SearchSpace = load_space(cfg.space)
        self.tables = {t: LatencyTable.read(t) for t in cfg.tables()}

    def cheap(self, desc: Description) -> tuple[dict[str, float], dict[str, Any]]:
        c = count(desc)
        values: dict[str, float] = {"params": float(c.params), "gflops": c.gflops}
        attrs: dict[str, Any] = {}
        for path, table in self.tables.items():
            pred = table.predict(desc)
            values[f"latency_ms@{os.path.splitext(os.path.basename(path))[0]}"] = pred.total_ms
            attrs[f"block_latency.{os.path.basename(path)}"] = [[s.name, round(ms, 3)] for s, _, ms in pred.blocks]
        return values, attrs

    def proxy(self, desc: Description, seed: int) -> tuple[dict[str, float], dict[str, Any]]:
        from archlab.quality.data import SyntheticData
        from archlab.quality.metrics import EvalConfig, evaluate_proxy
        from archlab.quality.proxy import ProxyConfig, proxy_description
        from archlab.quality.train import TrainConfig, train_proxy

        p = self.cfg.proxy
        pcfg, base = ProxyConfig(), TrainConfig()
        pcfg = ProxyConfig(width=p.get("width", pcfg.width), resolution=p.get("resolution", pcfg.resolution))
        tcfg = TrainConfig(steps=p.get("steps", base.steps), batch=p.get("batch", base.batch), lr=p.get("lr", base.lr),
                           prediction=p.get("prediction", base.prediction), seed=p.get("seed", seed))
        data = SyntheticData(seed=tcfg.seed, resolution=pcfg.resolution)
        model, result = train_proxy(proxy_description(desc, pcfg), data, tcfg, progress=False)
        metrics = evaluate_proxy(model, data, schedule=tcfg.schedule, prediction=tcfg.prediction,
                                 cfg=EvalConfig(samples=p.get("eval_samples", 32), heldout=p.get("eval_samples", 32),
                                                ddim_steps=p.get("ddim_steps", 20), guidance=p.get("guidance", 3.0)))
        attrs = {"proxy.steps": result.steps, "proxy.seconds": round(result.seconds, 2),
                 "proxy.steps_per_s": round(result.steps_per_s, 3), "proxy.peak_memory_mb": round(result.peak_memory_mb, 1),
                 "proxy.metrics": {k: float(v) for k, v in metrics.items()}}
        return {k: float(metrics[k]) for k in PROXY_METRICS if k in metrics}, attrs

    def __call__(self, trial: optuna.Trial) -> tuple[float, ...]:
        choices, desc = self.space.suggest(trial)
        trial.set_user_attr("description", desc.to_dict())
        values, attrs = self.cheap(desc)
        infeasible = any(v > 0 for v in self._cheap_values(values))
        if self.cfg.needs_proxy:
            if infeasible:
                values.update(WORST)
                attrs["quality_skipped"] = True
            else:
                try:
                    quality, qattrs = self.proxy(desc, seed=trial.number)
                except Exception as exc:
                    trial.set_user_attr("error", f"{type(exc).__name__}: {exc}")
                    raise
                values.update(quality)
                attrs.update(qattrs)
        for k, v in attrs.items():
            trial.set_user_attr(k, v)
        for k, v in values.items():
            trial.set_user_attr(f"metric.{k}", v)
        for name, value in constraint_values(self.cfg, values).items():
            trial.set_constraint(name, value)  # Optuna's constraint support: feasible when <= 0
        trial.set_user_attr("summary", summary(desc))
        out = []
        for o in self.cfg.objectives:
            v = values[o.name]
            if math.isnan(v):
                raise FloatingPointError(f"{o.name} is NaN")
            out.append(v)
        return tuple(out)

    def _cheap_values(self, values: dict[str, float]) -> list[float]:
        """How far each constraint on a cheap metric is broken (> 0) or met (<= 0)."""
        out = []
        for c in self.cfg.constraints:
            if c.metric in PROXY_METRICS:
                continue
            v = values[c.name]
            out.append(max(v - c.max if c.max is not None else -math.inf, c.min - v if c.min is not None else -math.inf))
        return out


def summary(desc: Description) -> str:
    """One line: widths, depth and where attention sits."""
    c = count(desc)
    stages = []
    for s in desc.stages:
        t = [block_summary(b) for b in s.blocks if b.kind == "transformer"]
        if t:
            stages.append(f"{s.name}:{len(t)}T")
    return (f"{'/'.join(map(str, desc.channels))} | {c.conv_blocks} conv, {c.self_attention} SA, {c.cross_attention} CA | "
            f"{c.params / 1e6:.0f}M, {c.gflops:.0f} GFLOPs | {' '.join(stages)}")


def completed(study: optuna.Study) -> int:
    return sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.get_trials(deepcopy=False))


def run_worker(cfg: StudyConfig, *, url: str | None = None, n_trials: int | None = None, progress: bool = True) -> optuna.Study:
    """Run trials in this process until the study holds ``n_trials`` complete ones (or time runs out)."""
    study = open_study(cfg, url)
    target = n_trials or cfg.trials
    evaluator = Evaluator(cfg)
    callbacks = []
    if target is not None:
        callbacks.append(optuna.study.MaxTrialsCallback(target, states=(optuna.trial.TrialState.COMPLETE,)))
    from archlab.cost.measure import progress_bar

    with progress_bar(progress) as bar:
        task = bar.add_task(f"study {cfg.name}", total=target, completed=completed(study), current="")

        def update(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            try:
                front = len(study.best_trials)
            except ValueError:
                front = 0
            bar.update(task, completed=completed(study), current=f"front: {front} designs")

        callbacks.append(update)
        if target is None or completed(study) < target:
            study.optimize(evaluator, n_trials=None if target is None else max(0, target - completed(study)) * 3 + 3,
                           timeout=cfg.timeout_s, catch=(Exception,), callbacks=callbacks, gc_after_trial=True)
    return study


def run_study(cfg: StudyConfig, *, url: str | None = None, n_trials: int | None = None, workers: int = 1,
              progress: bool = True) -> optuna.Study:
    """One worker here, or ``workers`` worker processes on the same storage."""
    if cfg.sampler["kind"] == "evolve":
        return run_evolve(cfg, url=url, progress=progress)
    if workers <= 1:
        return run_worker(cfg, url=url, n_trials=n_trials, progress=progress)
    open_study(cfg, url)  # create it once, before the workers race to
    cmd = [sys.executable, "-m", "archlab.cli", "study", "run", cfg.source, "--workers", "1", "--no-progress"]
    if url:
        cmd += ["--storage", url]
    if n_trials:
        cmd += ["--n-trials", str(n_trials)]
    procs = [subprocess.Popen(cmd) for _ in range(workers)]
    codes = [p.wait() for p in procs]
    if any(codes):
        raise ConfigError("workers", f"worker exit codes {codes}")
    return open_study(cfg, url)


def run_evolve(cfg: StudyConfig, *, url: str | None = None, progress: bool = True) -> optuna.Study:
    """The SnapFusion search as a study: its result is recorded as one completed trial."""
    from archlab.search.evolve import EvolveConfig, Evolution
    from archlab.quality.proxy import ProxyConfig
    from archlab.quality.train import TrainConfig

    s = cfg.sampler
    latency = next((o for o in (*cfg.constraints,) if o.metric == "latency_ms" and o.max is not None), None)
    if latency is None:
        raise ConfigError("constraints", "the evolve sampler needs a latency_ms constraint with max (its latency target)")
    p, pcfg, base = cfg.proxy, ProxyConfig(), TrainConfig()
    ecfg = EvolveConfig(start=s.get("start", "sd15"), table=latency.table, latency_target_ms=float(latency.max),
                        proxy=ProxyConfig(width=p.get("width", pcfg.width), resolution=p.get("resolution", pcfg.resolution)),
                        train=TrainConfig(steps=p.get("steps", base.steps), batch=p.get("batch", base.batch),
                                          block_drop=s.get("block_drop", 0.15)),
                        iterations=int(s.get("iterations", 6)), out=os.path.join(cfg.out, "evolve"))
    evo = Evolution(ecfg, progress=progress, log=lambda m: None)
    desc = evo.run()
    study = open_study(cfg, url)
    evaluator = Evaluator(cfg)
    values, attrs = evaluator.cheap(desc)
    if cfg.needs_proxy:
        q, qattrs = evaluator.proxy(desc, seed=0)
        values.update(q)
        attrs.update(qattrs)
    trial = optuna.trial.create_trial(values=[values[o.name] for o in cfg.objectives], user_attrs={
        **attrs, **{f"metric.{k}": v for k, v in values.items()}, "description": desc.to_dict(), "summary": summary(desc),
        "evolve_log": os.path.join(ecfg.out, "log.json")}, constraints=constraint_values(cfg, values))
    study.add_trial(trial)
    return study


# ---------------------------------------------------------------------- results

def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """Every trial with its objectives, metrics, feasibility and summary (pandas)."""
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


def pareto(study: optuna.Study, cfg: StudyConfig) -> tuple[list[optuna.trial.FrozenTrial], float, list[float]]:
    """The feasible Pareto front, its hypervolume and the reference point used.

    The reference point is the study file's ``reference_point`` or, per objective, the worst
    feasible value seen, 10% further out. Hypervolume is computed on minimised values
    (maximised objectives are negated) with Optuna's WFG implementation.
    """
    import numpy as np
    from optuna._hypervolume import compute_hypervolume

    front = study.best_trials  # Optuna keeps infeasible trials off the front
    feasible = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)) if is_feasible(t)]
    if not front:
        return [], 0.0, []
    sign = np.array([1.0 if o.direction == "minimize" else -1.0 for o in cfg.objectives])
    values = np.array([t.values for t in feasible]) * sign
    ref = values.max(axis=0)
    ref = ref + 0.1 * np.abs(ref) + 1e-12
    if cfg.reference_point:
        for i, o in enumerate(cfg.objectives):
            if o.name in cfg.reference_point:
                ref[i] = cfg.reference_point[o.name] * sign[i]
    pts = np.array([t.values for t in front]) * sign
    pts = pts[(pts < ref).all(axis=1)]
    hv = float(compute_hypervolume(pts, ref)) if len(pts) else 0.0
    return sorted(front, key=lambda t: t.values[0]), hv, [float(r) for r in ref * sign]


def is_feasible(trial: optuna.trial.FrozenTrial) -> bool:
    return all(v <= 0 for v in trial.constraints.values())


def description_of(trial: optuna.trial.FrozenTrial) -> Description:
    return description_from_dict(trial.user_attrs["description"])

