"""Kernel distance (KID when the features are Inception's): unbiased MMD^2 with a cubic kernel.

Protocol of Binkowski et al. as used by StyleGAN/EG3D (``kernel_inception_distance.py``):
k(x, y) = (x.y / D + 1)^3; ``num_subsets`` times draw m = min(N_real, N_gen, max_subset_size)
rows of each set without replacement and take the unbiased estimate
[sum_{i!=j} k(x_i, x_j) + sum_{i!=j} k(y_i, y_j)] / (m (m - 1)) - 2 sum_{i,j} k(x_i, y_j) / m^2;
report the mean over subsets. Features are used in float32, as StyleGAN does (the kernel sums
then carry relative errors around 1e-7, far below KID's sampling noise).
"""

from __future__ import annotations

import numpy as np


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """k(x_i, y_j) = (x_i . y_j / D + 1)^3 for rows x [N, D], y [M, D] -> [N, M]."""
    return (x @ y.T / x.shape[1] + 1) ** 3


def unbiased_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased estimate of MMD^2 with the cubic kernel between equal-sized samples x, y [m, D]."""
    m = x.shape[0]
    within = polynomial_kernel(x, x) + polynomial_kernel(y, y)
    across = polynomial_kernel(x, y)
    return float((within.sum() - np.trace(within)) / (m * (m - 1)) - 2 * across.sum() / m**2)


def kernel_distance(real: np.ndarray, generated: np.ndarray, num_subsets: int = 100,
                    max_subset_size: int = 1000, seed: int = 0) -> float:
    """KID between feature sets real [N_r, D] and generated [N_g, D] (mean unbiased MMD^2 over subsets)."""
    real = np.asarray(real, dtype=np.float32)
    generated = np.asarray(generated, dtype=np.float32)
    if real.ndim != 2 or generated.ndim != 2 or real.shape[1] != generated.shape[1]:
        raise ValueError(f"features: expected [N, D] arrays with the same D, got {list(real.shape)} and "
                         f"{list(generated.shape)}")
    m = min(real.shape[0], generated.shape[0], max_subset_size)
    if m < 2:
        raise ValueError(f"features: KID needs at least 2 rows in each set, got {real.shape[0]} real and "
                         f"{generated.shape[0]} generated")
    if num_subsets < 1:
        raise ValueError(f"num_subsets: expected a positive count, got {num_subsets}")
    rng = np.random.default_rng(seed)
    total = 0.0
    for _ in range(num_subsets):
        x = generated[rng.choice(generated.shape[0], m, replace=False)]
        y = real[rng.choice(real.shape[0], m, replace=False)]
        total += unbiased_mmd2(x, y)
    return total / num_subsets
