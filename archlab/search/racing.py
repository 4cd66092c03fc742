"""Noise-aware search: spend the quality budget where the Pareto front is decided.

A candidate's latency is exact before any training; its quality is a noisy proxy figure. So
every candidate gets one proxy seed first, and only those that the current front does not
beat beyond noise get more, one seed at a time up to ``max_seeds`` (racing on quality alone):

- *within reach*: no front member is at least as fast and better by more than ``z``
  combined standard errors; a candidate out of reach stops at one seed;
- a candidate's standard error counts its held-out items and its seeds' spread; with one
  seed, the seeds' spread is the study's own pooled seed standard deviation (from its
  promoted candidates) or, before there is one, ``seed_sd`` from the study file;
- at the end, front members whose quality another member's ties within ``z`` combined
  standard errors are re-evaluated with more seeds until separated or at ``max_seeds``
  (reported as tied);
- with ``first_look`` (a step count below ``quality.train.steps``), a candidate's first seed
  is measured part way through its training, on the ranking metric alone; it trains on only
  when that reading is within reach (``first_look_z``) of the front *of the first looks*
  (every candidate's reading at that step); otherwise it stops there, pruned, having cost
  about ``first_look / steps`` of a full proxy run. The first looks rank only against each
  other, so their bias at that step (lower quality than at the end) cancels.

Everything is plain functions of (latency, quality, standard error) points, so the studies
and the simulation in ``benchmarks/search/noise_aware.py`` run the same rules.

>>> front = [Point(1.0, 0.8, 0.01), Point(2.0, 0.9, 0.01)]
>>> within_reach(Point(1.5, 0.5, 0.01), front, z=2.0), within_reach(Point(1.5, 0.79, 0.02), front, z=2.0)
(False, True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from archlab.config import require


@dataclass(frozen=True)
class RacingConfig:
    """``racing:`` in a study file (see the module docstring)."""

    max_seeds: int = 4  # a candidate's most proxy seeds (each a full proxy training)
    z: float = 2.0  # within reach: not beaten by a front member by more than z combined standard errors
    seed_sd: float | None = None  # the ranking metric's seed standard deviation before the study has measured its own
    refine: bool = True  # at the end, more seeds for front members not yet separated from their neighbours
    first_look: int | None = None  # steps: read the first seed here and train on only if within reach (None: off)
    first_look_z: float = 0.0  # within reach at the first look (0: not beaten on the point estimates alone)

    def __post_init__(self) -> None:
        require(self.max_seeds >= 1, "max_seeds", f"{self.max_seeds} must be at least 1")
        require(math.isfinite(self.z) and self.z > 0, "z", f"{self.z} must be a positive number")
        require(self.seed_sd is None or self.seed_sd >= 0, "seed_sd", f"{self.seed_sd} must be >= 0")
        require(self.first_look is None or self.first_look >= 1, "first_look", f"{self.first_look} must be a step count >= 1")
        require(math.isfinite(self.first_look_z) and self.first_look_z >= 0, "first_look_z", f"{self.first_look_z} must be >= 0")


@dataclass(frozen=True)
class Point:
    """A candidate: exact latency (lower is better), quality oriented so that higher is better, its standard error."""

    latency: float
    quality: float
    se: float
    key: object = field(default=None, compare=False)


def front(points: Iterable[Point]) -> list[Point]:
    """The Pareto front of (latency lower, quality higher) point estimates."""
    pts = sorted(points, key=lambda p: (p.latency, -p.quality))
    out: list[Point] = []
    best = -math.inf
    for p in pts:
        if p.quality > best:
            out.append(p)
            best = p.quality
    return out


def within_reach(candidate: Point, members: Sequence[Point], *, z: float) -> bool:
    """Whether no member at least as fast beats ``candidate`` by more than ``z`` combined standard errors."""
    return not any(m.latency <= candidate.latency and m.quality - candidate.quality > z * math.hypot(m.se, candidate.se)
                   for m in members if m.key is None or m.key != candidate.key)


def standard_error(values: Sequence[float], item_se: float, seed_sd: float | None) -> float:
    """The standard error of the mean of ``values`` (one per seed): held-out and seed noise together; with one
    seed, the seed noise is ``seed_sd`` (unknown: 0, and the figure says so by being held-out only)."""
    n = len(values)
    if n >= 2:
        mean = sum(values) / n
        sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
        if seed_sd is not None:  # a two-seed spread is a poor estimate: never below the pooled one
            sd = max(sd, seed_sd)
    else:
        sd = seed_sd or 0.0
    return math.hypot(item_se, sd / math.sqrt(n))


def pooled_seed_sd(groups: Iterable[Sequence[float]]) -> float | None:
    """The pooled seed standard deviation over candidates with two or more seeds (None without any)."""
    num = den = 0.0
    for values in groups:
        n = len(values)
        if n >= 2:
            mean = sum(values) / n
            num += sum((v - mean) ** 2 for v in values)
            den += n - 1
    return math.sqrt(num / den) if den else None


def unresolved(members: Sequence[Point], *, z: float) -> list[Point]:
    """Front members tied within ``z`` combined standard errors with a neighbour on the front (by latency)."""
    pts = sorted(members, key=lambda p: p.latency)
    tied: set[int] = set()
    for i in range(len(pts) - 1):
        a, b = pts[i], pts[i + 1]
        if abs(b.quality - a.quality) <= z * math.hypot(a.se, b.se):
            tied.update((i, i + 1))
    return [pts[i] for i in sorted(tied)]


# ---------------------------------------------------------------------- in a study

class Racer:
    """Racing inside a study's trials (``racing:`` in the study file): one proxy seed per candidate, more while it
    is within reach of the study's current front, and refinement trials for front members still tied at the end.

    Per trial, the user attribute ``racing`` holds each seed's metrics (``per_seed``) and whether it was within
    reach after each (``reach``); a refinement trial (``refines``: the trial it extends) carries the earlier seeds
    on and adds one, and the Pareto front reads the latest trial of each architecture."""

    def __init__(self, cfg, evaluator) -> None:
        from archlab.quality import registry

        self.cfg, self.evaluator, self.rc = cfg, evaluator, cfg.racing
        self.fast = next(o for o in cfg.objectives if not registry.is_metric(o.metric))
        self.quality = next(o for o in cfg.objectives if registry.is_metric(o.metric))
        self.sign = 1.0 if self.quality.direction == "maximize" else -1.0

    # ------------------------------------------------------------------ reading the study

    def latest(self, trials) -> list:
        """Complete trials not extended by a later refinement trial."""
        refined = {t.user_attrs.get("refines") for t in trials}
        return [t for t in trials if t.number not in refined and t.state.name == "COMPLETE"]

    def seed_sd(self, trials) -> float | None:
        name = self.quality.name
        groups = [[s[name] for s in t.user_attrs.get("racing", {}).get("per_seed", [])] for t in trials]
        pooled = pooled_seed_sd(g for g in groups if len(g) >= 2)
        return pooled if pooled is not None else self.rc.seed_sd

    def point(self, trial_values: dict, per_seed: list[dict], prior: float | None, key: object = None) -> Point:
        name = self.quality.name
        values = [self.sign * s[name] for s in per_seed]
        item_se = sum(s.get(f"{name}_se", 0.0) for s in per_seed) / len(per_seed)
        return Point(trial_values[self.fast.name], sum(values) / len(values), standard_error(values, item_se, prior), key)

    def study_points(self, trials, prior: float | None) -> list[Point]:
        """The study's raced candidates (their latest trials) as points."""
        out = []
        for t in self.latest(trials):
            per_seed = t.user_attrs.get("racing", {}).get("per_seed")
            if per_seed:
                out.append(self.point({self.fast.name: t.user_attrs[f"metric.{self.fast.name}"]}, per_seed, prior, t.number))
        return out

    def first_look_points(self, trials) -> list[Point]:
        """Every candidate's first-look reading (complete trials and those it stopped) as points."""
        out = []
        for t in trials:
            look = t.user_attrs.get("racing", {}).get("first_look")
            if look and f"metric.{self.fast.name}" in t.user_attrs:
                out.append(Point(t.user_attrs[f"metric.{self.fast.name}"], self.sign * look["value"], look["se"], t.number))
        return out

    def look(self, trial, cheap: dict):
        """The first look of ``first_look``: go on only within reach of the front of the study's first looks."""
        from archlab.quality import FirstLook

        def go_on(est) -> bool:
            others = self.first_look_points(trial.study.get_trials(deepcopy=False))
            me = Point(cheap[self.fast.name], self.sign * est.value, est.se)
            return within_reach(me, front(others), z=self.rc.first_look_z)

        return FirstLook(self.rc.first_look, self.quality.metric, go_on)

    # ------------------------------------------------------------------ one trial

    def race(self, trial, desc, cheap: dict, earlier: list[dict] | None = None) -> tuple[dict, dict]:
        """The candidate's quality metrics over its seeds (mean; standard errors with seed noise) and attributes."""
        base = self.cfg.quality.train.seed
        per_seed = list(earlier or [])
        reach: list[bool] = []
        attrs: dict = {}
        trials = trial.study.get_trials(deepcopy=False)
        prior = self.seed_sd(trials)
        others = [p for p in self.study_points(trials, prior) if p.key != trial.user_attrs.get("refines")]
        first_look = None
        while True:
            seed = base + len(per_seed)
            look = self.look(trial, cheap) if self.rc.first_look and earlier is None and not per_seed else None
            values, extra = self.evaluator.quality(desc, seed=seed, trial=trial if not per_seed else None, look=look)
            if look is not None:
                first_look = {"step": look.step, **extra.pop("first_look")}
                if extra.pop("stopped"):  # out of reach at the first look: no more training, no seeds
                    attrs.update(extra)
                    attrs["racing"] = {"seeds": 0, "per_seed": [], "reach": [False], "first_look": first_look, "stopped": True}
                    return {}, attrs
            attrs.update(extra if not per_seed else {})
            per_seed.append(values)
            if earlier is not None or len(per_seed) >= self.rc.max_seeds:
                break  # a refinement trial adds one seed
            me = self.point(cheap, per_seed, prior)
            reach.append(within_reach(me, front(others), z=self.rc.z))
            if not reach[-1]:
                break
        combined = {}
        for name in per_seed[0]:
            if name.endswith("_se"):
                continue
            vals = [s[name] for s in per_seed]
            combined[name] = sum(vals) / len(vals)
            item_se = sum(s.get(f"{name}_se", 0.0) for s in per_seed) / len(per_seed)
            combined[f"{name}_se"] = standard_error(vals, item_se, prior if name == self.quality.name else None)
        attrs["racing"] = {"seeds": len(per_seed), "per_seed": per_seed, "reach": reach,
                           **({"first_look": first_look} if first_look is not None else {})}
        return combined, attrs

    # ------------------------------------------------------------------ the end

    def refinements(self, study) -> list[dict]:
        """Enqueue one more seed for each front member still tied with a neighbour (below ``max_seeds``)."""
        trials = study.get_trials(deepcopy=False)
        prior = self.seed_sd(trials)
        pending = {t.user_attrs.get("refines") for t in trials if t.state.name in ("WAITING", "RUNNING")}
        queued = []
        by_number = {t.number: t for t in trials}
        for p in unresolved(front(self.study_points(trials, prior)), z=self.rc.z):
            t = by_number[p.key]
            if t.user_attrs["racing"]["seeds"] < self.rc.max_seeds and t.number not in pending:
                study.enqueue_trial(t.params, user_attrs={"refines": t.number})
                queued.append(t.number)
        return queued
