"""Ranking statistics: each figure against its null, on data whose truth is known."""

import numpy as np
import pytest

from archlab.quality.fidelity import agreement, kendall, kendall_interval, regret, separated_pairs, signal_noise


def test_separated_pairs_count_seed_noise():
    quiet = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]])
    assert separated_pairs(quiet, heldout_se=np.full(3, 0.1)).pairs == 3
    noisy = np.array([[0.0, 2.0], [1.0, 1.0], [5.0, 5.0]])  # one architecture's seeds 2 apart: pooled seed sd ~0.8
    sep = separated_pairs(noisy)
    assert sep.pairs == 2 and sep.seed_sd == pytest.approx(np.sqrt(np.mean([2.0, 0.0, 0.0])))
    i, j = sep.index[0]
    assert sep.means[i] > sep.means[j]


def test_permutation_p_is_small_for_a_true_order_and_large_for_a_reversed_one():
    ref = np.column_stack([np.arange(12.0), np.arange(12.0) + 0.01])
    sep = separated_pairs(ref)
    good = agreement(np.arange(12.0), sep, permutations=2000)
    assert good.agree == sep.pairs and good.permutation_p < 0.001
    bad = agreement(-np.arange(12.0), sep, permutations=2000)
    assert bad.agree == 0 and bad.permutation_p > 0.99


def test_permutation_p_holds_its_level_when_the_proxy_is_noise():
    rng = np.random.default_rng(1)
    ref = np.column_stack([np.arange(10.0), np.arange(10.0)])
    sep = separated_pairs(ref + 0.001 * rng.standard_normal(ref.shape))
    ps = [agreement(rng.standard_normal(10), sep, permutations=200, seed=k).permutation_p for k in range(300)]
    assert 0.02 < np.mean(np.array(ps) < 0.05) < 0.09  # about 5% of null proxies look significant at 5%


def test_signal_noise_is_one_half_and_its_test_holds_its_level_without_an_architecture_effect():
    rng = np.random.default_rng(0)
    ratios, ps = [], []
    for _ in range(3000):
        a, b = rng.standard_normal(12), rng.standard_normal(12)
        r, p = signal_noise(a, b)
        ratios.append(r)
        ps.append(p)
    assert np.median(ratios) == pytest.approx(0.5, abs=0.1)
    assert 0.035 < np.mean(np.array(ps) < 0.05) < 0.065
    effect = np.arange(12.0)
    r, p = signal_noise(effect + 0.1 * rng.standard_normal(12), effect + 0.1 * rng.standard_normal(12))
    assert r > 100 and p < 1e-6


def test_regret_is_zero_for_the_reference_itself_and_counts_seed_deviations():
    ref = np.array([1.0, 3.0, 2.0, 5.0])
    latency = np.array([10.0, 20.0, 30.0, 40.0])
    assert regret(ref, ref, latency, 30.0, seed_sd=0.5) == 0.0
    assert regret(np.array([4.0, 1.0, 2.0, 0.0]), ref, latency, 30.0, seed_sd=0.5) == pytest.approx((3.0 - 1.0) / 0.5)
    assert regret(ref, ref, latency, 5.0, seed_sd=0.5) is None


def test_kendall_interval_brackets_the_point_value():
    rng = np.random.default_rng(2)
    a = np.arange(16.0)
    b = a + 4 * rng.standard_normal(16)
    lo, hi = kendall_interval(a, b, rounds=500)
    assert lo < kendall(a, b) < hi


def test_kendall_interval_equals_scipys_tau_b_on_each_resample_ties_included():
    import math

    from scipy.stats import kendalltau

    rng = np.random.default_rng(3)
    a = rng.normal(size=9)
    b = a + rng.normal(size=9)
    b[0] = b[1]  # a tie in the data, besides those resampling makes
    draws = np.random.default_rng(0).integers(0, 9, (300, 9))
    taus = [t for t in (kendalltau(a[i], b[i]).statistic for i in draws) if not math.isnan(t)]
    assert kendall_interval(a, b, rounds=300) == pytest.approx((np.percentile(taus, 2.5), np.percentile(taus, 97.5)))


def _noisy_world(rng, n, proxy_noise, ref_noise, validity):
    """Normal true qualities; a proxy that correlates ``validity`` with them; noisy seeds of both."""
    truth = rng.normal(size=n)
    own = validity * truth + np.sqrt(1 - validity**2) * rng.normal(size=n)  # what the proxy measures
    a, b = (own + proxy_noise * rng.normal(size=n) for _ in range(2))
    reference = truth[:, None] + ref_noise * rng.normal(size=(n, 2))
    return a, b, reference


def test_attenuation_recovers_a_proxys_validity_whatever_its_noise():
    from archlab.quality.fidelity import attenuation

    rng = np.random.default_rng(0)
    for validity in (1.0, 0.6):
        for proxy_noise in (0.2, 1.0):
            got = attenuation(*_noisy_world(rng, 300, proxy_noise, 0.3, validity), rounds=100)
            est, lo, hi = got["validity"]
            assert lo < validity < hi and abs(est - validity) < 0.12, (validity, proxy_noise, got["validity"])
            assert got["ceiling_noise"][0] < got["ceiling_reference"][0]


def test_attenuation_ceilings_fall_with_noise():
    from archlab.quality.fidelity import attenuation

    rng = np.random.default_rng(1)
    quiet = attenuation(*_noisy_world(rng, 300, 0.1, 0.1, 1.0), rounds=100)
    loud = attenuation(*_noisy_world(rng, 300, 1.0, 1.0, 1.0), rounds=100)
    assert quiet["ceiling_reference"][0] > 0.9 and loud["ceiling_reference"][0] < 0.7
    assert quiet["ceiling_noise"][0] > loud["ceiling_noise"][0] + 0.2
