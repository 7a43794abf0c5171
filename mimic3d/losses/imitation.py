"""Mimic3D's 3D-to-2D imitation loss: the 3D branch's patch imitates the 2D branch's."""

from __future__ import annotations

from torch import Tensor

from mimic3d.losses.lpips import LPIPS


def imitation_loss(lpips: LPIPS, patch_3d: Tensor, patch_2d: Tensor) -> Tensor:
    """LPIPS(I3D_patch, stop_grad(I2D_patch)) per sample [N]; patches [N, 3, 64, 64] in [-1, 1].

    The 2D branch is the teacher: no gradient reaches it through this loss.
    """
    if patch_3d.shape != patch_2d.shape:
        raise ValueError(
            f"imitation_loss needs equal patch shapes, got 3D {list(patch_3d.shape)} "
            f"and 2D {list(patch_2d.shape)}"
        )
    return lpips(patch_3d, patch_2d.detach())
