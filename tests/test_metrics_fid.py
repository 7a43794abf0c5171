"""Fréchet distance, feature statistics and KID against closed forms and slow references."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import torch
from numerics import assert_close

from mimic3d.metrics.fid import fid_from_stats, frechet_distance
from mimic3d.metrics.kid import kernel_distance, polynomial_kernel, unbiased_mmd2
from mimic3d.metrics.stats import FeatureStats


def random_rotation(dim: int, seed: int) -> np.ndarray:
    return scipy.stats.special_ortho_group.rvs(dim, random_state=seed)


def stats_of(x: np.ndarray, batch: int = 1000) -> FeatureStats:
    stats = FeatureStats()
    for start in range(0, x.shape[0], batch):
        stats.append(x[start:start + batch])
    return stats


def test_commuting_covariances_match_closed_form():
    # S1 = Q diag(a) Q^T, S2 = Q diag(b) Q^T commute: FID = |mu1 - mu2|^2 + sum (sqrt(a) - sqrt(b))^2.
    q = random_rotation(5, seed=0)
    a, b = np.array([1.0, 2.0, 0.5, 3.0, 0.1]), np.array([2.0, 0.5, 0.5, 1.0, 0.4])
    mu1, mu2 = np.arange(5.0), np.arange(5.0)[::-1] * 0.5
    exact = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    value = frechet_distance(mu1, q @ np.diag(a) @ q.T, mu2, q @ np.diag(b) @ q.T)
    assert value == pytest.approx(exact, rel=1e-9)


def test_general_covariances_match_the_wasserstein_formula():
    # Non-commuting case through another route: tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2) via eigh.
    rng = np.random.default_rng(1)
    m1, m2 = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    s1, s2 = m1 @ m1.T, m2 @ m2.T + 0.1 * np.eye(6)
    w, v = np.linalg.eigh(s1)
    root1 = v @ np.diag(np.sqrt(w)) @ v.T
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root1 @ s2 @ root1), 0, None)).sum()
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    exact = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * cross
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(exact, rel=1e-8)


def test_estimate_from_samples_converges_to_closed_form():
    rng = np.random.default_rng(2)
    a, b = np.array([1.0, 4.0, 0.25, 2.0]), np.array([1.0, 1.0, 1.0, 1.0])
    mu1, mu2 = np.array([0.0, 1.0, 0.0, -1.0]), np.array([0.5, 0.0, 0.0, 0.0])
    n = 200_000
    x = mu1 + rng.normal(size=(n, 4)) * np.sqrt(a)
    y = mu2 + rng.normal(size=(n, 4)) * np.sqrt(b)
    exact = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)  # 3.25
    estimate = fid_from_stats(stats_of(x, batch=7_000), stats_of(y))
    assert estimate == pytest.approx(exact, abs=0.03)  # sampling error ~ 0.01 at n = 200k


def test_set_against_itself_is_zero_and_distance_is_symmetric_and_invariant():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(3000, 16)) @ rng.normal(size=(16, 16))
    y = rng.normal(size=(3000, 16)) * 1.5 + 0.3
    assert abs(fid_from_stats(stats_of(x), stats_of(x))) < 1e-6
    forward, backward = fid_from_stats(stats_of(x), stats_of(y)), fid_from_stats(stats_of(y), stats_of(x))
    assert forward > 1 and forward == pytest.approx(backward, rel=1e-6)
    q, shift = random_rotation(16, seed=4), rng.normal(size=16) * 10
    moved = fid_from_stats(stats_of(x @ q.T + shift), stats_of(y @ q.T + shift))
    assert moved == pytest.approx(forward, rel=1e-6)  # rotation + common translation preserve FID


def test_bad_moments_are_named():
    with pytest.raises(ValueError, match="first distribution"):
        frechet_distance(np.zeros(3), np.eye(4), np.zeros(3), np.eye(3))
    with pytest.raises(ValueError, match="dimensions differ"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(np.full(2, np.nan), np.eye(2), np.zeros(2), np.eye(2))


def test_running_statistics_match_numpy_and_round_trip(tmp_path):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(1000, 8)).astype(np.float32) * 3 + 7
    stats = FeatureStats(capture_all=True, max_items=900)
    for start in range(0, 1000, 128):  # batches straddle the 900 cap
        stats.append(x[start:start + 128])
    assert stats.num_items == 900 and stats.is_full()
    mean, cov = stats.mean_cov()
    np.testing.assert_allclose(mean, x[:900].astype(np.float64).mean(0), rtol=1e-12)
    np.testing.assert_allclose(cov, np.cov(x[:900].astype(np.float64), rowvar=False, bias=True), atol=1e-10)
    np.testing.assert_array_equal(stats.features(), x[:900])

    stats.save(tmp_path / "stats.npz")
    loaded = FeatureStats.load(tmp_path / "stats.npz")
    assert loaded.num_items == 900 and loaded.max_items == 900
    np.testing.assert_array_equal(loaded.mean_cov()[1], cov)
    np.testing.assert_array_equal(loaded.features(), x[:900])

    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a feature statistics file"):
        FeatureStats.load(tmp_path / "junk.npz")
    widths = FeatureStats()
    widths.append(np.zeros((2, 8)))
    with pytest.raises(ValueError, match="expected 8 columns"):
        widths.append(np.zeros((2, 3)))


def slow_kid(x: np.ndarray, y: np.ndarray) -> float:
    """Textbook unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3, by explicit double sums."""
    m, d = x.shape
    k = lambda a, b: (a @ b / d + 1) ** 3  # noqa: E731
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / m**2
    return xx + yy - 2 * xy


def test_kid_equals_slow_reference_on_subsets():
    rng = np.random.default_rng(6)
    real, gen = rng.normal(size=(9, 3)), rng.normal(size=(7, 3)) + 0.5
    assert unbiased_mmd2(gen, real[:7]) == pytest.approx(slow_kid(gen, real[:7]), rel=1e-12)
    # With subsets of 5 the protocol averages the unbiased estimate over random subsets (same draws).
    value = kernel_distance(real, gen, num_subsets=3, max_subset_size=5, seed=11)  # float32 inside
    draws = np.random.default_rng(11)
    subsets = [(draws.choice(7, 5, replace=False), draws.choice(9, 5, replace=False)) for _ in range(3)]
    expected = np.mean([slow_kid(gen[g], real[r]) for g, r in subsets])
    # float32 sums of 5 x 5 cubic-kernel values (x.y / 3 + 1)^3, which cancel in the estimate: the
    # rounding is relative to the kernel's size, not to the result's.
    kernel_scale = float(((np.abs(gen @ real.T) / 3 + 1) ** 3).max())
    expected = torch.tensor(expected)
    assert_close(torch.tensor(value), expected, terms=25, depth=3, scale=kernel_scale, dtype=torch.float32)


def test_kid_is_unbiased_where_the_v_statistic_is_not():
    rng = np.random.default_rng(7)
    m, trials = 20, 400
    unbiased, biased = [], []
    for _ in range(trials):
        x, y = rng.normal(size=(m, 4)), rng.normal(size=(m, 4))  # same distribution
        unbiased.append(unbiased_mmd2(x, y))
        within = polynomial_kernel(x, x) + polynomial_kernel(y, y)
        biased.append(within.sum() / m**2 - 2 * polynomial_kernel(x, y).sum() / m**2)
    unbiased, biased = np.array(unbiased), np.array(biased)
    error = unbiased.std() / np.sqrt(trials)
    assert abs(unbiased.mean()) < 3 * error  # expectation 0
    assert biased.mean() > 10 * biased.std() / np.sqrt(trials)  # the V-statistic is biased upwards
    shifted = kernel_distance(rng.normal(size=(200, 4)), rng.normal(size=(200, 4)) + 1, num_subsets=10)
    assert shifted > 20 * error


def test_kid_input_errors():
    with pytest.raises(ValueError, match="same D"):
        kernel_distance(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="at least 2 rows"):
        kernel_distance(np.zeros((1, 3)), np.zeros((5, 3)))
