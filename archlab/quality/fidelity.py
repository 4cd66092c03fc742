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
- ``kendall`` with a bootstrap interval over architectures;
- ``attenuation``: which limit binds a proxy's tau against the reference. Each tau becomes a
  correlation by Greiner's relation (rho = sin(pi tau / 2), exact for normal scores); the
  reliability of a two-seed reference mean follows from its seeds' agreement by the
  Spearman-Brown formula; ``validity`` is the proxy's correlation with the reference corrected
  for both noises (Spearman's disattenuation: what its tau would become with endless seeds of
  both), and ``ceiling_*`` the taus a proxy of validity 1 would reach.

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
    taus = _tau_rows(a, b, np.random.default_rng(seed).integers(0, len(a), (rounds, len(a))))
    taus = taus[np.isfinite(taus)]
    return float(np.percentile(taus, 2.5)), float(np.percentile(taus, 97.5))


def _tau_rows(x: np.ndarray, y: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Kendall tau-b of ``x`` against ``y`` on each row of resampled indices ``idx`` (nan where undefined)."""
    i, j = np.triu_indices(idx.shape[1], 1)
    sx = np.sign(x[idx[:, i]] - x[idx[:, j]])
    sy = np.sign(y[idx[:, i]] - y[idx[:, j]])
    denom = np.sqrt(np.count_nonzero(sx, axis=1) * np.count_nonzero(sy, axis=1).astype(float))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (sx * sy).sum(axis=1) / denom, np.nan)


def _rho(tau: np.ndarray) -> np.ndarray:
    return np.sin(np.pi * np.asarray(tau, float) / 2)


def _tau(rho: np.ndarray) -> np.ndarray:
    return 2 / np.pi * np.arcsin(np.clip(rho, -1.0, 1.0))


def attenuation(a: np.ndarray, b: np.ndarray, reference: np.ndarray, *, rounds: int = 2000,
                seed: int = 0) -> dict[str, tuple[float, float, float]]:
    """How far a proxy's noise, the reference's noise and the proxy's validity each hold its tau down.

    ``a`` and ``b``: two independent replicates of the proxy; ``reference``: a row per architecture,
    two reference seeds as columns (every value oriented, higher is better). Each figure is
    (estimate, 2.5th, 97.5th percentile of a bootstrap over architectures):

    - ``ceiling_reference``: the tau a perfect proxy would reach against the two-seed reference mean;
    - ``ceiling_noise``: the tau a proxy of validity 1 with this proxy's seed noise would reach;
    - ``validity``: the proxy's correlation with the reference, both noises removed;
    - ``tau_endless_seeds``: the tau this proxy would reach averaged over endless seeds of its own.

    A validity well below 1 means the proxy ranks something else than the reference does (more seeds
    cannot help); a tau near ``ceiling_noise`` means its seed noise binds (more seeds or a quieter proxy);
    a low ``ceiling_reference`` means the reference binds.
    """
    a, b, reference = np.asarray(a, float), np.asarray(b, float), np.asarray(reference, float)
    n = len(a)
    mean = reference.mean(axis=1)
    idx = np.vstack([np.arange(n), np.random.default_rng(seed).integers(0, n, (rounds, n))])
    tau_p = (_tau_rows(a, mean, idx) + _tau_rows(b, mean, idx)) / 2
    r_proxy = np.clip(_rho(_tau_rows(a, b, idx)), 1e-9, 1.0)  # one replicate's reliability
    r1 = np.clip(_rho(_tau_rows(reference[:, 0], reference[:, 1], idx)), 1e-9, 1.0)
    r_ref = 2 * r1 / (1 + r1)  # Spearman-Brown: the mean of two seeds
    validity = _rho(tau_p) / np.sqrt(r_proxy * r_ref)
    figures = {"ceiling_reference": _tau(np.sqrt(r_ref)), "ceiling_noise": _tau(np.sqrt(r_proxy * r_ref)),
               "validity": validity, "tau_endless_seeds": _tau(np.minimum(validity, 1.0) * np.sqrt(r_ref))}
    out = {}
    for name, values in figures.items():
        boot = values[1:][np.isfinite(values[1:])]
        out[name] = (float(values[0]), float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5)))
    return out


def regret(proxy: np.ndarray, reference: np.ndarray, latency: np.ndarray, budget: float, seed_sd: float) -> float | None:
    """(best reference value within ``budget`` - reference value of the proxy's pick there) / ``seed_sd``."""
    inside = np.flatnonzero(np.asarray(latency, float) <= budget)
    if not len(inside):
        return None
    pick = inside[np.argmax(np.asarray(proxy, float)[inside])]
    return float((np.max(reference[inside]) - reference[pick]) / seed_sd)
