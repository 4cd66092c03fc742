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
  (reported as tied).

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

    def __post_init__(self) -> None:
        require(self.max_seeds >= 1, "max_seeds", f"{self.max_seeds} must be at least 1")
        require(math.isfinite(self.z) and self.z > 0, "z", f"{self.z} must be a positive number")
        require(self.seed_sd is None or self.seed_sd >= 0, "seed_sd", f"{self.seed_sd} must be >= 0")


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
