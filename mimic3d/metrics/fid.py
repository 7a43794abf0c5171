"""Fréchet distance between Gaussians fitted to features: FID when the features are Inception's.

FID = |mu_1 - mu_2|^2 + tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2)), with the matrix square root taken by
``scipy.linalg.sqrtm`` (Schur method) and the real part of the trace kept, as in StyleGAN/EG3D's
``frechet_inception_distance.py`` (itself matching Heusel et al.'s TTUR code).
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg

from mimic3d.metrics.stats import FeatureStats


def _check_moments(mu: np.ndarray, sigma: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    mu = np.asarray(mu, dtype=np.float64)
    sigma = np.asarray(sigma, dtype=np.float64)
    if mu.ndim != 1 or sigma.shape != (mu.size, mu.size):
        raise ValueError(f"{name}: expected mean [D] and covariance [D, D], got {list(mu.shape)} and "
                         f"{list(sigma.shape)}")
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise ValueError(f"{name}: mean/covariance contain NaN or inf")
    return mu, sigma


def frechet_distance(mu_1: np.ndarray, sigma_1: np.ndarray, mu_2: np.ndarray, sigma_2: np.ndarray) -> float:
    """Squared 2-Wasserstein distance between N(mu_1, sigma_1) and N(mu_2, sigma_2).

    Args:
        mu_1, mu_2: means [D].
        sigma_1, sigma_2: covariances [D, D] (symmetric positive semi-definite).
    """
    mu_1, sigma_1 = _check_moments(mu_1, sigma_1, "first distribution")
    mu_2, sigma_2 = _check_moments(mu_2, sigma_2, "second distribution")
    if mu_1.size != mu_2.size:
        raise ValueError(f"feature dimensions differ: {mu_1.size} vs {mu_2.size}")
    mean_term = np.square(mu_1 - mu_2).sum()
    with warnings.catch_warnings():  # singular products are normal (D >= N); StyleGAN silences it too
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        root = scipy.linalg.sqrtm(sigma_1 @ sigma_2)
    return float(np.real(mean_term + np.trace(sigma_1 + sigma_2 - 2 * root)))


def fid_from_stats(stats_1: FeatureStats, stats_2: FeatureStats) -> float:
    """Fréchet distance between the mean/covariance of two feature sets."""
    return frechet_distance(*stats_1.mean_cov(), *stats_2.mean_cov())
