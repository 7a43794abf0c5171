"""The tri-plane features of a batch, computed once by ``TriplaneGenerator.planes`` and rendered
from as many cameras as needed (tools, viewer, patch training)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class Triplanes:
    """The tri-planes of a batch: coarse P^c [N, 3, C, R, R] and, for stage-2 models, residual P^r
    [N, 3, C, 2R, 2R] whose features add to P^c's at every point; for models with a background,
    its ws [N, background num_ws, w_dim]. Compute once with ``TriplaneGenerator.planes`` to render
    many views of the same ws."""

    coarse: Tensor
    residual: Tensor | None = None
    background_ws: Tensor | None = None

    @property
    def batch_size(self) -> int:
        return self.coarse.shape[0]

    def field_planes(self) -> Tensor | list[Tensor]:
        """What the renderer samples: P^c alone or [P^c, P^r] (features summed)."""
        return self.coarse if self.residual is None else [self.coarse, self.residual]
