"""Training schedules of EG3D, Mimic3D and EpiGRAF as pure functions of training progress.

Progress is measured in images shown (``nimg``) or thousands of them (``kimg``), as in the
official code. EG3D states several durations "at batch 32" and scales them with the batch size:
``batch_scaled_kimg(200, batch_size)`` gives the blur fade length for another batch size.
"""

from __future__ import annotations

from collections.abc import Sequence


def batch_scaled_kimg(kimg_at_batch32: float, batch_size: int) -> float:
    """EG3D's batch scaling of durations: kimg * batch / 32 (blur fade 200, EMA half-life 10)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return kimg_at_batch32 * batch_size / 32


def blur_sigma(cur_kimg: float, init_sigma: float = 10.0, fade_kimg: float = 200.0) -> float:
    """D-input blur: init_sigma at 0, falling linearly to 0 at ``fade_kimg`` (0 when fade_kimg <= 0)."""
    if fade_kimg <= 0:
        return 0.0
    return max(1 - cur_kimg / fade_kimg, 0.0) * init_sigma


def linear_schedule(cur_kimg: float, start: float, end: float, period_kimg: float) -> float:
    """EpiGRAF's ``linear_schedule``: ``start`` up to kimg 0, ``end`` from ``period_kimg`` on, linear
    in between (patch-scale annealing, density-noise fade)."""
    if cur_kimg >= period_kimg:
        return end
    if cur_kimg <= 0:
        return start
    return start + (end - start) * cur_kimg / period_kimg


def gpc_swap_prob(cur_kimg: float, final_prob: float | None = 0.5, fade_kimg: float = 1000.0) -> float | None:
    """Generator pose conditioning: probability of conditioning on another sample's camera.

    1 at the start, linear to ``final_prob`` (EG3D's gpc_reg_prob) over ``fade_kimg``. None
    (conditioning disabled, G sees zeros) stays None.
    """
    if final_prob is None:
        return None
    if not 0 <= final_prob <= 1:
        raise ValueError(f"gpc final_prob must be in [0, 1] or None, got {final_prob}")
    alpha = min(cur_kimg / fade_kimg, 1.0) if fade_kimg > 0 else 1.0
    return (1 - alpha) * 1 + alpha * final_prob


def neural_rendering_resolution(
    cur_kimg: float, initial: int = 64, final: int | None = None, fade_kimg: float = 1000.0
) -> int:
    """Rendering resolution of the raw image: ``initial``, or linear to ``final`` over ``fade_kimg``.

    Rounds half to even like EG3D's ``np.rint``.
    """
    if final is None:
        return initial
    alpha = min(cur_kimg / fade_kimg, 1.0) if fade_kimg > 0 else 1.0
    return int(round(initial * (1 - alpha) + final * alpha))


def ema_beta(
    cur_nimg: int, batch_size: int, ema_kimg: float | None = None, rampup: float | None = 0.05
) -> float:
    """Per-step decay of the generator EMA: G_ema = lerp(G, G_ema, beta).

    Half-life ``ema_kimg`` (default EG3D's 10 kimg at batch 32, i.e. batch * 10 / 32) is capped
    at ``cur_nimg * rampup`` during the ramp-up, so beta = 0 (plain copy) at the first step.
    ``cur_nimg`` is the number of images shown before this step.
    """
    if ema_kimg is None:
        ema_kimg = batch_scaled_kimg(10.0, batch_size)
    ema_nimg = ema_kimg * 1000
    if rampup is not None:
        ema_nimg = min(ema_nimg, cur_nimg * rampup)
    return 0.5 ** (batch_size / max(ema_nimg, 1e-8))


def lazy_regularization(
    lr: float, betas: Sequence[float], interval: int | None
) -> tuple[float, tuple[float, ...]]:
    """Adam settings for a network regularised every ``interval`` steps (StyleGAN2 lazy reg).

    With c = interval / (interval + 1): lr * c and beta ** c, compensating for the extra
    regulariser step; the regulariser loss itself is multiplied by ``interval``. None = no lazy reg.
    """
    if interval is None:
        return lr, tuple(betas)
    if interval < 1:
        raise ValueError(f"lazy regularisation interval must be >= 1 or None, got {interval}")
    ratio = interval / (interval + 1)
    return lr * ratio, tuple(beta**ratio for beta in betas)
