"""Generator pose conditioning (GPC, EG3D): sometimes condition G on another sample's camera."""

from __future__ import annotations

import torch
from torch import Tensor


def swap_conditioning(
    c: Tensor, swap_prob: float | None, generator: torch.Generator | None = None, per_sample: bool = True
) -> Tensor:
    """Conditioning labels for the mapping network from camera labels c [N, 25].

    Each row is replaced, with probability ``swap_prob``, by the previous row (a roll by one in the
    batch), decoupling the conditioning pose from the rendering pose. ``per_sample=False`` draws
    one decision for the whole batch (EG3D's density-regulariser pass). ``swap_prob=None`` means
    no pose conditioning: zeros.
    """
    if swap_prob is None:
        return torch.zeros_like(c)
    if c.ndim != 2:
        raise ValueError(f"swap_conditioning expects labels [N, D], got {list(c.shape)}")
    shape = [c.shape[0], 1] if per_sample else []
    swap = torch.rand(shape, device=c.device, generator=generator) < swap_prob
    return torch.where(swap, torch.roll(c, 1, dims=0), c)
