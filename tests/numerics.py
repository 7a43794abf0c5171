"""Tolerances for comparing floating-point results, derived from rounding error (one rule for the suite).

Two correct float32 computations of the same value differ in their last bits whenever their
operations run in another order: the SIMD width (AVX-512 adds 16 lanes at a time, AVX2 8, SSE 4),
oneDNN and MKL blocking and the thread count all reorder reductions, and vectorised elementwise
functions (exp, log, sin) differ by an ulp or two between instruction sets. A tolerance measured on
one machine (``rtol=0, atol=1e-6``) therefore fails on another; this one is derived instead.

The rule, for a value produced by ``depth`` chained reductions (matrix products, convolutions,
sums), each over at most ``terms`` terms, compared on values of typical magnitude ``scale``::

    rtol = eps * (ULPS + SIGMAS * sqrt(terms * depth))        atol = rtol * scale

- A sum of K terms rounds each partial sum; the errors are ~independent, so the result carries
  ~sqrt(K) * eps relative error, in whatever order it is summed, and two orders differ by about
  as much (Higham, "Accuracy and Stability of Numerical Algorithms", 2nd ed., sections 2.8 and
  4.2). ``SIGMAS = 8`` standard deviations of that model bounds the largest entry of a tensor;
  it is also above the worst case, K * eps (same-sign terms, adversarial order), for every K up
  to 64.
- ``depth``: each layer passes its input's error on with a gain of about 1 (networks at init
  scale, unit-variance activations) and adds its own, so the K terms of all layers add up. For a
  network, ``fan_in_sum`` (the inputs of every weight, summed) bounds the terms of any path.
- ``ULPS`` covers the handful of roundings of any elementwise expression (1-2 ulp per libm/SLEEF
  function).
- ``atol = rtol * scale``: an entry that is small by cancellation carries the error of the terms
  it came from, whose size is ``scale`` (default: the largest ``|expected|``), not its own.

``eps`` is the machine epsilon of the compared dtype: 2**-23 = 1.19e-7 for float32, 2.2e-16 for
float64. A float32 result compared with a float64 reference takes the float32 epsilon.

For the tiny networks of the tests the bound stays around 1e-5..1e-4 relative, while a formula
error (a wrong constant, a missing term, a swapped axis) moves results by 1e-3 or more: the parity
tests keep deliberately wrong variants that must fail under the same tolerance
(``assert_not_close``), so a loose bound cannot hide.
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch

EPS = torch.finfo(torch.float32).eps
ULPS = 8
SIGMAS = 8
THREADS_ENV = "MIMIC3D_TEST_THREADS"
# Camera poses and labels: trig of the angles, 3-term rotation products, radius * direction + pivot.
POSE = {"terms": 3, "depth": 3}


def suite_threads() -> int:
    """Intra-op threads the tests compute with: ``$MIMIC3D_TEST_THREADS``, default 1 (conftest)."""
    value = os.environ.get(THREADS_ENV, "1")
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{THREADS_ENV}: expected a positive integer, got {value!r}")
    return int(value)


def _eps(dtype: torch.dtype | np.dtype | type) -> float:
    if isinstance(dtype, torch.dtype):
        return torch.finfo(dtype).eps
    return float(np.finfo(dtype).eps)


def tolerance(
    terms: int = 1, depth: int = 1, scale: float = 1.0, dtype: torch.dtype | np.dtype | type = torch.float32
) -> dict[str, float]:
    """``rtol``/``atol`` keyword arguments (for ``torch.testing.assert_close``, ``torch.allclose``,
    ``np.testing.assert_allclose``) following the module's rule."""
    rtol = _eps(dtype) * (ULPS + SIGMAS * math.sqrt(terms * depth))
    return {"rtol": rtol, "atol": rtol * float(scale)}


def fan_in_sum(module: torch.nn.Module) -> int:
    """Sum of the fan-in (inputs per output) of every weight of ``module`` with 2+ dimensions: an
    upper bound on the total reduction length along any path through the network, i.e. ``terms``
    with ``depth=1`` for an output of the whole network."""
    return sum(p[0].numel() for p in module.parameters() if p.ndim >= 2)


def _scale(expected: torch.Tensor) -> float:
    return float(expected.detach().abs().max()) if expected.numel() else 0.0


def assert_close(
    actual: torch.Tensor,
    expected: torch.Tensor,
    terms: int = 1,
    depth: int = 1,
    scale: float | None = None,
    dtype: torch.dtype | None = None,
    msg: str | None = None,
) -> None:
    """``torch.testing.assert_close`` under ``tolerance`` (``scale``: max ``|expected|`` by default;
    ``dtype``: the less precise of the two by default)."""
    actual, expected = torch.as_tensor(actual), torch.as_tensor(expected)
    if dtype is None:
        dtype = min((actual.dtype, expected.dtype), key=lambda d: torch.finfo(d).bits)
    tol = tolerance(terms, depth, _scale(expected) if scale is None else scale, dtype)
    torch.testing.assert_close(actual, expected, check_dtype=False, msg=msg, **tol)


def assert_not_close(
    actual: torch.Tensor,
    expected: torch.Tensor,
    terms: int = 1,
    depth: int = 1,
    scale: float | None = None,
    dtype: torch.dtype | None = None,
) -> float:
    """The comparison ``assert_close`` makes with the same arguments must fail: a deliberately wrong
    variant of a formula is caught by the tolerance. Returns the largest difference in units of
    the absolute tolerance (how far outside the bound the wrong variant lands)."""
    try:
        assert_close(actual, expected, terms, depth, scale, dtype)
    except AssertionError:
        actual, expected = torch.as_tensor(actual), torch.as_tensor(expected)
        if dtype is None:
            dtype = min((actual.dtype, expected.dtype), key=lambda d: torch.finfo(d).bits)
        atol = tolerance(terms, depth, _scale(expected) if scale is None else scale, dtype)["atol"]
        return float((actual.double() - expected.double()).abs().max()) / atol
    raise AssertionError(
        "the deliberately wrong variant passed the tolerance: the comparison cannot catch it"
    )
