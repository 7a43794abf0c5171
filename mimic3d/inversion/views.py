"""What an inversion fits: target views (images with optional cameras) and the renders compared to them.

Everything here talks to the generator through its public API only (``G.synthesis(ws, c, ...)``), so
any generator that renders ws from a camera label can be inverted: EG3D, Mimic3D (either branch) and,
when they exist, EpiGRAF generators and distilled students.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from mimic3d.camera import LABEL_DIM, validate_label


@dataclass
class Targets:
    """V views of one subject: images [V, 3, H, W] in [-1, 1] (the generator's resolution), their
    cameras [V, 25] (EG3D labels) or None when the cameras are to be estimated, and a name per view."""

    images: Tensor
    cameras: Tensor | None = None
    names: Sequence[str] = ()

    def __post_init__(self) -> None:
        images = self.images
        if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[1] != 3:
            shape = list(images.shape) if isinstance(images, Tensor) else type(images).__name__
            raise ValueError(f"images: expected a tensor [V, 3, H, W] in [-1, 1], got {shape}")
        if images.shape[0] == 0:
            raise ValueError("images: no target view given")
        if self.cameras is not None:
            if self.cameras.shape != (images.shape[0], LABEL_DIM):
                raise ValueError(
                    f"cameras: expected [{images.shape[0]}, {LABEL_DIM}] (one EG3D label per image), "
                    f"got {list(self.cameras.shape)}"
                )
            validate_label(self.cameras, "cameras")
        if not self.names:
            self.names = [f"view{i}" for i in range(images.shape[0])]
        if len(self.names) != images.shape[0]:
            raise ValueError(f"names: expected {images.shape[0]} names, got {len(self.names)}")

    @property
    def count(self) -> int:
        return int(self.images.shape[0])

    def to(self, device: torch.device | str) -> Targets:
        cameras = None if self.cameras is None else self.cameras.to(device)
        return Targets(self.images.to(device), cameras, list(self.names))


def synthesis_options(branch: str | None) -> dict:
    """Keyword arguments of ``G.synthesis`` for deterministic renders (const noise, no ray jitter) of
    ``branch`` ("2d" / "3d" for tri-plane models; None: the generator's own default)."""
    options: dict = dict(noise_mode="const", perturb=False)
    if branch is not None:
        options["branch"] = branch
    return options


def render_views(G: nn.Module, ws: Tensor, cameras: Tensor, branch: str | None = None) -> Tensor:
    """Images [V, 3, H, W] of one latent ws [1, num_ws, w_dim] (or one per view, [V, num_ws, w_dim])
    seen from cameras [V, 25]; differentiable in ws, the cameras and G's weights."""
    if ws.shape[0] == 1:
        ws = ws.expand(cameras.shape[0], -1, -1)
    return G.synthesis(ws, cameras, **synthesis_options(branch))["image"]
