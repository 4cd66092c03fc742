"""How well a quality proxy ranks architectures against a reference, with each figure's null.

Definitions (written out in the project's ranking-statistics notes): architectures i = 1..n;
the reference gives each a value per reference seed, the proxy a value per proxy seed; every
value is oriented so that higher is better before it comes here.

- ``separated_pairs``: pairs whose reference means differ by more than ``z`` combined
  standard errors, each architecture's standard error counting its seed noise (the larger of
  its own and the pooled seed variance, over the number of seeds) and its held-out error;
- ``agreement``: of those, how many the proxy orders alike, and ``permutation_p``: the share
  of permutations of the proxy's values over architectures that agree at least as often
  (pairs share architectures, so architectures are permuted, not pairs);
- ``signal_noise``: variance of the seed means over the mean half squared seed difference,
  and its F-test against no architecture effect (F = 2 x ratio on (n - 1, n) degrees of
  freedom; the ratio is 0.5, not 0, when architectures do not matter);
- ``regret``: at a latency budget, the reference value of the proxy's pick below the
  reference's best within the budget, in pooled reference seed standard deviations;
- ``kendall`` with a bootstrap interval over architectures.

>>> import numpy as np
>>> ref = np.array([[1.0, 1.1], [2.0, 2.1], [3.0, 2.9], [4.0, 4.2]])
>>> sep = separated_pairs(ref)
>>> sep.pairs
6
>>> agreement(np.array([0.1, 0.2, 0.3, 0.4]), sep).agree
6
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import f as f_dist
from scipy.stats import kendalltau


@dataclass(frozen=True)
class Separated:
    pairs: int  # how many pairs the reference separates
    of: int  # of how many
    index: tuple[tuple[int, int], ...]  # (i, j) with reference_i > reference_j
    means: np.ndarray
    se: np.ndarray  # each architecture's standard error (seed and held-out noise)
    seed_sd: float  # pooled seed standard deviation of one reference run


@dataclass(frozen=True)
class Agreement:
    agree: int
    pairs: int
    fraction: float | None
    permutation_p: float | None


def seed_variance(values: np.ndarray) -> tuple[np.ndarray, float]:
    """Per architecture, the unbiased variance between its seeds (rows: architectures, columns: seeds), and the pooled one."""
    per = np.var(values, axis=1, ddof=1)
    return per, float(np.mean(per))


def separated_pairs(values: np.ndarray, heldout_se: np.ndarray | None = None, z: float = 2.0) -> Separated:
    """Pairs the reference tells apart; ``values`` has a row per architecture and a column per reference seed."""
    values = np.asarray(values, float)
    n, seeds = values.shape
    per, pooled = seed_variance(values)
    var = np.maximum(per, pooled) / seeds + (np.asarray(heldout_se, float) ** 2 if heldout_se is not None else 0.0)
    means, se = values.mean(axis=1), np.sqrt(var)
    index = []
    for i in range(n):
        for j in range(n):
            if i != j and means[i] - means[j] > z * math.hypot(se[i], se[j]):
                index.append((i, j))
    return Separated(len(index), n * (n - 1) // 2, tuple(index), means, se, math.sqrt(pooled))


def agreement(proxy: np.ndarray, sep: Separated, *, permutations: int = 10_000, seed: int = 0) -> Agreement:
    """How many separated pairs ``proxy`` (higher is better) orders as the reference does, and the permutation p."""
    proxy = np.asarray(proxy, float)
    if not sep.pairs:
        return Agreement(0, 0, None, None)
    i, j = np.array(sep.index).T
    observed = int(np.sum(proxy[i] > proxy[j]))
    rng = np.random.default_rng(seed)
    perms = np.argsort(rng.random((permutations, len(proxy))), axis=1)
    shuffled = proxy[perms]
    counts = np.sum(shuffled[:, i] > shuffled[:, j], axis=1)
    p = (1 + int(np.sum(counts >= observed))) / (permutations + 1)
    return Agreement(observed, sep.pairs, observed / sep.pairs, p)


def signal_noise(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Between-architecture variance of the two seeds' means over the within (half squared difference), and the F-test's p."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    n = len(a)
    between = float(np.var((a + b) / 2, ddof=1))
    within = float(np.mean((a - b) ** 2 / 2))
    ratio = between / within if within > 0 else math.inf
    return ratio, float(f_dist.sf(2 * ratio, n - 1, n)) if math.isfinite(ratio) else 0.0


def kendall(a: np.ndarray, b: np.ndarray) -> float:
    return float(kendalltau(a, b).statistic)


def kendall_interval(a: np.ndarray, b: np.ndarray, *, rounds: int = 2000, seed: int = 0) -> tuple[float, float]:
    """A 95% bootstrap interval for Kendall tau (tau-b, as :func:`kendall`), resampling architectures with
    replacement; the resamples are scored at once (a resample drawing one architecture twice makes tied pairs,
    which tau-b leaves out of its denominator)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(a), (rounds, len(a)))
    i, j = np.triu_indices(len(a), 1)
    sa = np.sign(a[idx[:, i]] - a[idx[:, j]])
    sb = np.sign(b[idx[:, i]] - b[idx[:, j]])
    denom = np.sqrt(np.count_nonzero(sa, axis=1) * np.count_nonzero(sb, axis=1).astype(float))
    ok = denom > 0
    taus = (sa * sb).sum(axis=1)[ok] / denom[ok]
    return float(np.percentile(taus, 2.5)), float(np.percentile(taus, 97.5))


def regret(proxy: np.ndarray, reference: np.ndarray, latency: np.ndarray, budget: float, seed_sd: float) -> float | None:
    """(best reference value within ``budget`` - reference value of the proxy's pick there) / ``seed_sd``."""
    inside = np.flatnonzero(np.asarray(latency, float) <= budget)
    if not len(inside):
        return None
    pick = inside[np.argmax(np.asarray(proxy, float)[inside])]
    return float((np.max(reference[inside]) - reference[pick]) / seed_sd)
