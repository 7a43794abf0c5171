"""The tri-plane decoder MLP shared by EG3D, Mimic3D and the NeRF-GAN teacher.

Parameter names (``net.0.weight``, ``net.0.bias``, ``net.2.weight``, ``net.2.bias``) are those of
EG3D's ``OSGDecoder`` so that official state dicts load unchanged.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mimic3d.nn.layers import FullyConnectedLayer

# MipNeRF's widened sigmoid, so that colours 0 and 1 are reachable with finite logits.
_COLOUR_SCALE = 1 + 2 * 0.001
_COLOUR_SHIFT = 0.001


class TriplaneDecoder(nn.Module):
    """FC(n_features -> hidden) -> softplus -> FC(hidden -> 1 + output_dim); no view direction.

    forward: features [..., n_features] -> (colour [..., output_dim] in [-0.001, 1.001],
    raw sigma [..., 1]). The first 3 colour channels are RGB.
    """

    def __init__(
        self, n_features: int = 32, hidden_dim: int = 64, output_dim: int = 32, lr_multiplier: float = 1.0
    ) -> None:
        super().__init__()
        for name, value in (
            ("n_features", n_features),
            ("hidden_dim", hidden_dim),
            ("output_dim", output_dim),
        ):
            if not (isinstance(value, int) and value > 0):
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        self.n_features = n_features
        self.hidden_dim = hidden_dim
        self.output_dim = output_dim
        self.net = nn.Sequential(
            FullyConnectedLayer(n_features, hidden_dim, lr_multiplier=lr_multiplier),
            nn.Softplus(),
            FullyConnectedLayer(hidden_dim, 1 + output_dim, lr_multiplier=lr_multiplier),
        )

    def _check(self, features: Tensor) -> None:
        if features.shape[-1] != self.n_features:
            raise ValueError(
                f"features: expected last dimension {self.n_features}, got shape {list(features.shape)}"
            )

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        self._check(features)
        # split, not two slices: each slice's backward would allocate and zero a full-size gradient.
        sigma, logits = self.net(features).split([1, self.output_dim], dim=-1)
        return torch.sigmoid(logits) * _COLOUR_SCALE - _COLOUR_SHIFT, sigma

    def density(self, features: Tensor) -> Tensor:
        """Raw sigma only (skips the colour rows of the last layer): [..., n_features] -> [..., 1]."""
        self._check(features)
        hidden = self.net[1](self.net[0](features))
        last = self.net[2]
        weight = last.weight[:1] * last.weight_gain
        bias = last.bias[:1] * last.bias_gain
        return torch.addmm(bias, hidden.reshape(-1, self.hidden_dim), weight.t()).view(
            *features.shape[:-1], 1
        )
