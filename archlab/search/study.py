"""Search studies on Optuna: a YAML file says what to search, optimise and under which budget.

::

    name: quickstart
    space: mobilediffusion                 # a search space name or file
    objectives:
      - {metric: latency_ms, direction: minimize, table: ../latency_tables/x86-2core_torch-cpu.csv}
      - {metric: eval_score, direction: maximize}
    constraints:
      - {metric: latency_ms, max: 5000}
      - {metric: params, max: 4.0e8}
    sampler: {kind: tpe, seed: 0}          # tpe | nsga2 | random | evolve
    budget: {trials: 12}                   # and/or timeout_s
    proxy: {steps: 250, batch: 32, width: 0.0625, resolution: 16, eval_samples: 32}
    storage: null                          # default: sqlite:///<out>/study.db
    out: ../out/quickstart                 # relative to this file

Metrics: ``params``, ``gflops``, ``latency_ms`` (needs ``table``; several tables may each
give one), and the proxy's ``heldout_loss``, ``eval_score``, ``fd`` (see
:mod:`archlab.quality.metrics`). Constraints go through Optuna's constraint support:
infeasible trials are kept and marked. A candidate that breaks a constraint on a cheap
metric (params, FLOPs, latency) is not proxy-trained; its quality objectives are recorded
at their worst bound (``eval_score`` 0, ``heldout_loss`` and ``fd`` 1e9) and the trial says
so in ``quality_skipped``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archlab.errors import ConfigError
from archlab.yamlio import read_yaml

CHEAP_METRICS = ("params", "gflops", "latency_ms")
PROXY_METRICS = ("heldout_loss", "eval_score", "fd")
WORST = {"eval_score": 0.0, "heldout_loss": 1e9, "fd": 1e9}
SAMPLERS = ("tpe", "nsga2", "random", "evolve")


@dataclass(frozen=True)
class Objective:
    metric: str
    direction: str
    table: str | None = None

    @property
    def name(self) -> str:
        return f"{self.metric}@{Path(self.table).stem}" if self.table else self.metric


@dataclass(frozen=True)
class Constraint:
    metric: str
    max: float | None = None
    min: float | None = None
    table: str | None = None

    @property
    def name(self) -> str:
        return f"{self.metric}@{Path(self.table).stem}" if self.table else self.metric


@dataclass(frozen=True)
class StudyConfig:
    name: str
    space: str
    objectives: tuple[Objective, ...]
    constraints: tuple[Constraint, ...] = ()
    sampler: dict[str, Any] = field(default_factory=lambda: {"kind": "tpe", "seed": 0})
    trials: int | None = 20
    timeout_s: float | None = None
    proxy: dict[str, Any] = field(default_factory=dict)
    storage: str | None = None
    out: str = "out"
    heartbeat_interval: int = 10
    grace_period: int = 30
    reference_point: dict[str, float] | None = None
    source: str = ""

    @property
    def needs_proxy(self) -> bool:
        return any(o.metric in PROXY_METRICS for o in self.objectives) or any(c.metric in PROXY_METRICS for c in self.constraints)

    @property
    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{Path(self.out).resolve() / 'study.db'}"

    def tables(self) -> list[str]:
        return sorted({x.table for x in (*self.objectives, *self.constraints) if x.table})


def _resolve(base: Path, path: str) -> str:
    p = Path(path)
    return str(p if p.is_absolute() else (base / p).resolve())


def _metric(where: str, entry: Any, base: Path) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise ConfigError(where, "must be a mapping like {metric: latency_ms, ...}")
    metric = entry.get("metric")
    if metric not in CHEAP_METRICS + PROXY_METRICS:
        raise ConfigError(f"{where}.metric", f"{metric!r} is not one of {', '.join(CHEAP_METRICS + PROXY_METRICS)}")
    table = entry.get("table")
    if metric == "latency_ms":
        if not table:
            raise ConfigError(f"{where}.table", "latency_ms needs a latency table file")
        table = _resolve(base, table)
        if not Path(table).is_file():
            raise ConfigError(f"{where}.table", f"{table} does not exist")
    elif table:
        raise ConfigError(f"{where}.table", f"only latency_ms takes a table, not {metric}")
    return {**entry, "table": table}


def load_study(path: str | Path) -> StudyConfig:
    """Read and check a study file; every problem names its field."""
    path = Path(path)
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(str(path), "a study is a mapping with name, space, objectives")
    allowed = ("name", "space", "objectives", "constraints", "sampler", "budget", "proxy", "storage", "out", "heartbeat",
               "reference_point")
    for key in data:
        if key not in allowed:
            raise ConfigError(str(key), f"unknown field; allowed: {', '.join(allowed)}")
    for key in ("name", "space", "objectives"):
        if key not in data:
            raise ConfigError(key, "is required")
    base = path.parent
    objectives = data["objectives"]
    if not isinstance(objectives, list) or not objectives:
        raise ConfigError("objectives", "must be a non-empty list")
    objs = []
    for i, entry in enumerate(objectives):
        e = _metric(f"objectives[{i}]", entry, base)
        if e.get("direction") not in ("minimize", "maximize"):
            raise ConfigError(f"objectives[{i}].direction", f"{e.get('direction')!r} is not minimize or maximize")
        extra = set(e) - {"metric", "direction", "table"}
        if extra:
            raise ConfigError(f"objectives[{i}].{sorted(extra)[0]}", "unknown field; allowed: metric, direction, table")
        objs.append(Objective(e["metric"], e["direction"], e["table"]))
    if len({o.name for o in objs}) != len(objs):
        raise ConfigError("objectives", "lists the same metric twice")
    cons = []
    for i, entry in enumerate(data.get("constraints") or []):
        e = _metric(f"constraints[{i}]", entry, base)
        extra = set(e) - {"metric", "max", "min", "table"}
        if extra:
            raise ConfigError(f"constraints[{i}].{sorted(extra)[0]}", "unknown field; allowed: metric, max, min, table")
        if e.get("max") is None and e.get("min") is None:
            raise ConfigError(f"constraints[{i}]", "needs max or min")
        for bound in ("max", "min"):
            if e.get(bound) is not None and not isinstance(e[bound], (int, float)):
                raise ConfigError(f"constraints[{i}].{bound}", f"{e[bound]!r} is not a number")
        cons.append(Constraint(e["metric"], e.get("max"), e.get("min"), e["table"]))
    sampler = data.get("sampler") or {"kind": "tpe"}
    if not isinstance(sampler, dict) or sampler.get("kind") not in SAMPLERS:
        raise ConfigError("sampler.kind", f"{sampler.get('kind') if isinstance(sampler, dict) else sampler!r} is not one of {', '.join(SAMPLERS)}")
    budget = data.get("budget") or {}
    trials, timeout = budget.get("trials", 20), budget.get("timeout_s")
    if trials is not None and (not isinstance(trials, int) or trials < 1):
        raise ConfigError("budget.trials", f"{trials!r} is not a positive integer")
    if timeout is not None and (not isinstance(timeout, (int, float)) or timeout <= 0):
        raise ConfigError("budget.timeout_s", f"{timeout!r} is not a positive number")
    if set(budget) - {"trials", "timeout_s"}:
        raise ConfigError(f"budget.{sorted(set(budget) - {'trials', 'timeout_s'})[0]}", "unknown field; allowed: trials, timeout_s")
    proxy = data.get("proxy") or {}
    allowed_proxy = {"steps", "batch", "width", "resolution", "eval_samples", "ddim_steps", "guidance", "lr", "prediction", "seed"}
    for key in proxy:
        if key not in allowed_proxy:
            raise ConfigError(f"proxy.{key}", f"unknown field; allowed: {', '.join(sorted(allowed_proxy))}")
    heartbeat = data.get("heartbeat") or {}
    space = data["space"]
    if Path(str(space)).suffix in (".yaml", ".yml"):
        space = _resolve(base, space)
    from archlab.search.space import load_space

    load_space(space)  # refuse a bad space now, not in the first trial
    ref = data.get("reference_point")
    if ref is not None and (not isinstance(ref, dict) or set(ref) - {o.name for o in objs}):
        raise ConfigError("reference_point", f"must map objective names ({', '.join(o.name for o in objs)}) to numbers")
    return StudyConfig(
        name=str(data["name"]), space=space, objectives=tuple(objs), constraints=tuple(cons), sampler=dict(sampler),
        trials=trials, timeout_s=timeout, proxy=dict(proxy), storage=data.get("storage"),
        out=_resolve(base, data.get("out") or f"../out/{data['name']}"),
        heartbeat_interval=int(heartbeat.get("interval", 10)), grace_period=int(heartbeat.get("grace", 30)),
        reference_point=ref, source=str(path),
    )


def constraint_values(cfg: StudyConfig, values: dict[str, float]) -> dict[str, float]:
    """Optuna's convention: one number per bound, feasible when <= 0 (``params<=4e8``: params - 4e8)."""
    out = {}
    for c in cfg.constraints:
        v = values.get(c.name, math.nan)
        if c.max is not None:
            out[f"{c.name}<={c.max:g}"] = v - c.max
        if c.min is not None:
            out[f"{c.name}>={c.min:g}"] = c.min - v
    return out
