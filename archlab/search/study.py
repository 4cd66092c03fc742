"""Search studies on Optuna: a YAML file says what to search, optimise and under which budget.

::

    name: quickstart
    space: mobilediffusion                 # a shipped search space's name, or a file
    objectives:
      - {metric: latency_ms, direction: minimize, table: x86-2core_torch-cpu}
      - {metric: text_gap, direction: maximize}
    constraints:
      - {metric: latency_ms, max: 5000, table: x86-2core_torch-cpu}
      - {metric: params, max: 4.0e8}
    sampler: {kind: tpe, seed: 0}          # tpe | nsga2 | random | evolve (with an evolve: section)
    budget: {trials: 12}                   # and/or timeout_s
    quality: {train: {steps: 150}, eval: {heldout: 256}}   # see archlab.quality.config
    storage: null                          # default: sqlite:///<out>/study.db
    out: ../out/quickstart                 # relative to this file

Metrics: ``params``, ``gflops``, ``latency_ms`` (needs ``table``: a shipped table's name or
a file; several tables may each give one, named ``latency_ms@<table>``), and the proxy's
quality metrics (``text_gap``, ``eval_score``...: every one in :mod:`archlab.quality.registry`),
each stored with its standard error. Constraints go
through Optuna's constraint support: infeasible trials are kept and marked. A candidate
that breaks a constraint on a cheap metric (params, FLOPs, latency) is not proxy-trained;
its quality objectives are recorded at their registered worst value (``Metric.worst``) and the trial
says so in ``quality_skipped``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from archlab.config import INTERNAL, FilePath, NameOrPath, load, require
from archlab.cost.predict import LATENCY, latency_metric
from archlab.errors import ConfigError
from archlab.quality import registry
from archlab.quality.config import QualityConfig, check_metrics
from archlab.search.evolve import EvolveConfig
from archlab.search.racing import RacingConfig

CHEAP_METRICS = ("params", "gflops", LATENCY)


def table_label(table: str) -> str:
    """A table reference (a shipped table's name or a file) as it appears in metric names."""
    return Path(table).stem


def _metric_rules(metric: str, table: str | None) -> None:
    known = CHEAP_METRICS + registry.names()
    require(metric in known, "metric", f"{metric!r} is not one of {', '.join(known)}")
    if metric == LATENCY:
        require(table is not None, "table", "latency_ms needs a latency table (a shipped table's name or a file)")
    else:
        require(table is None, "table", f"only latency_ms takes a table, not {metric}")


@dataclass(frozen=True)
class Objective:
    metric: str
    direction: Literal["minimize", "maximize"]
    table: NameOrPath | None = None

    def __post_init__(self) -> None:
        _metric_rules(self.metric, self.table)

    @property
    def name(self) -> str:
        return latency_metric(table_label(self.table)) if self.table else self.metric


@dataclass(frozen=True)
class Constraint:
    metric: str
    max: float | None = None
    min: float | None = None
    table: NameOrPath | None = None

    def __post_init__(self) -> None:
        _metric_rules(self.metric, self.table)
        require(self.max is not None or self.min is not None, "", "needs max or min")

    @property
    def name(self) -> str:
        return latency_metric(table_label(self.table)) if self.table else self.metric


@dataclass(frozen=True)
class SamplerConfig:
    kind: str = "tpe"  # a registered search (archlab.search.searches): tpe, nsga2, random, evolve
    seed: int = 0
    startup_trials: int = 10  # TPE: random trials before it models the objectives
    population: int = 20  # NSGA-II's population

    def __post_init__(self) -> None:
        from archlab.search.searches import searches

        require(self.kind in searches(), "kind", f"{self.kind!r} is not one of {', '.join(searches())}")
        require(self.startup_trials >= 1, "startup_trials", f"{self.startup_trials} is not a positive integer")
        require(self.population >= 2, "population", f"{self.population} must be at least 2")


@dataclass(frozen=True)
class Budget:
    trials: int | None = 20  # complete trials to reach
    timeout_s: float | None = None

    def __post_init__(self) -> None:
        require(self.trials is None or self.trials >= 1, "trials", f"{self.trials} is not a positive integer")
        require(self.timeout_s is None or self.timeout_s > 0, "timeout_s", f"{self.timeout_s} is not a positive number")


@dataclass(frozen=True)
class Heartbeat:
    interval: int = 10  # seconds between a running trial's heartbeats
    grace: int = 30  # a trial silent this long is failed and queued again (its worker died)

    def __post_init__(self) -> None:
        require(self.interval >= 1 and self.grace > self.interval, "grace", "needs interval >= 1 and grace > interval")


@dataclass(frozen=True)
class StudyConfig:
    name: str
    space: NameOrPath
    objectives: tuple[Objective, ...]
    constraints: tuple[Constraint, ...] = ()
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    budget: Budget = field(default_factory=Budget)
    quality: QualityConfig = field(default_factory=QualityConfig)
    evolve: EvolveConfig | None = None  # the search settings of sampler: evolve
    storage: str | None = None  # an SQLAlchemy URL; default: SQLite beside the outputs
    out: FilePath | None = None  # default: ../out/<name> beside the study file
    heartbeat: Heartbeat = field(default_factory=Heartbeat)
    reference_point: dict[str, float] | None = None  # objective name -> hypervolume reference
    racing: RacingConfig | None = None  # noise-aware search: more proxy seeds only where the front is decided
    source: str = field(default="", metadata=INTERNAL)  # the file this came from
    base_dir: str = field(default=".", metadata=INTERNAL)

    def __post_init__(self) -> None:
        require(len(self.objectives) > 0, "objectives", "must be a non-empty list")
        names = [o.name for o in self.objectives]
        require(len(set(names)) == len(names), "objectives", "lists the same metric twice")
        if self.reference_point is not None:
            extra = set(self.reference_point) - set(names)
            require(not extra, "reference_point", f"must map objective names ({', '.join(names)}) to numbers")
        check_metrics(self.quality, self.quality_metrics, "objectives")
        if self.racing is not None:
            fast = [o for o in self.objectives if not registry.is_metric(o.metric)]
            require(bool(fast) and fast[0].direction == "minimize" and len(fast) < len(self.objectives), "racing",
                    "races a quality objective against a minimised cheap one (latency_ms, params or gflops): give both")
            require(self.sampler.kind != "evolve", "racing", "applies to sampled studies, not the evolving search")
            t = self.quality.train
            # each racing seed is one judge() call with seed base + k: train.seeds > 1 would train overlapping seeds
            require(t.seeds == 1, "racing", f"adds proxy seeds one at a time up to max_seeds; set quality.train.seeds: 1 "
                                            f"(it is {t.seeds})")
            look = self.racing.first_look
            if look is not None:
                require(look < t.steps, "racing: first_look", f"{look} must be below quality.train.steps ({t.steps})")
                require(self.quality.eval.curve <= 1, "racing: first_look",
                        "reads one seed part way; it needs quality.eval.curve <= 1")
        from archlab.search.searches import search_for

        search_for(self.sampler.kind).check(self)

    @property
    def quality_metrics(self) -> tuple[str, ...]:
        """The quality metrics the objectives and constraints ask for, then those ``quality.eval.metrics`` adds
        (measured and stored with every trial, not optimised)."""
        asked = [x.metric for x in (*self.objectives, *self.constraints) if registry.is_metric(x.metric)]
        return tuple(dict.fromkeys(asked + list(self.quality.eval.metrics)))

    @property
    def needs_proxy(self) -> bool:
        return bool(self.quality_metrics)

    @property
    def out_dir(self) -> str:
        return self.out or str((Path(self.base_dir) / ".." / "out" / self.name).resolve())

    @property
    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{Path(self.out_dir).resolve() / 'study.db'}"

    def tables(self) -> list[str]:
        return sorted({x.table for x in (*self.objectives, *self.constraints) if x.table})

    def latency_target(self) -> Constraint | None:
        return next((c for c in self.constraints if c.metric == LATENCY and c.max is not None), None)


def load_study(path: str | Path) -> StudyConfig:
    """Read and check a study file, its space included (refused now, not in the first trial); every problem names
    its field."""
    from archlab.search.space import load_space

    path = Path(path)
    cfg = load(StudyConfig, path, source=str(path), base_dir=str(path.resolve().parent))
    try:
        load_space(cfg.space)
    except ConfigError as exc:
        raise ConfigError(f"space: {exc.field}" if exc.field != "space" else "space", exc.message) from None
    return cfg


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
