"""The tri-plane decoder MLP shared by EG3D, Mimic3D, EpiGRAF and the NeRF-GAN teacher.

Parameter names (``net.0.weight``, ``net.0.bias``, ``net.2.weight``, ``net.2.bias``) are those of
EG3D's ``OSGDecoder`` so that official state dicts load unchanged (EpiGRAF's ``TriPlaneMLP``
``model.0`` / ``model.1`` are renamed on import).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mimic3d.nn.layers import FullyConnectedLayer, bias_act
from mimic3d.runtime import kernel_paths

# MipNeRF's widened sigmoid, so that colours 0 and 1 are reachable with finite logits.
_COLOUR_SCALE = 1 + 2 * 0.001
_COLOUR_SHIFT = 0.001
# Untrained decoders see pre-activations of +-1000, and torch's CPU softplus is 3-5x slower far out on
# the negative side (exp/log1p of tiny numbers) than within [-20, 20]. Below -20 softplus(x) < 2.1e-9,
# so clamping there changes outputs by at most that, mirroring torch's own cut-off at +20.
SOFTPLUS_FLOOR = -20.0


class ClampedSoftplus(nn.Module):
    """``softplus(max(x, SOFTPLUS_FLOOR))``: torch's softplus kept where its CPU kernel is fast; any shape.

    Without autograd the clamp is done in place: in the decoder its input is the fresh output of the
    first layer. Off the CPU (``kernel_paths``) plain ``F.softplus`` runs, as in the official code.
    """

    def forward(self, x: Tensor) -> Tensor:
        if not kernel_paths(x.device).clamped_softplus:
            return F.softplus(x)
        if torch.is_grad_enabled() and x.requires_grad:
            return F.softplus(x.clamp(min=SOFTPLUS_FLOOR))
        return F.softplus(x.clamp_(min=SOFTPLUS_FLOOR))


class ScaledLeakyReLU(nn.Module):
    """StyleGAN's ``lrelu``: leaky_relu(x, 0.2) * sqrt(2) (EpiGRAF's decoder activation); any shape."""

    def forward(self, x: Tensor) -> Tensor:
        return bias_act(x, act="lrelu")


DECODER_KINDS = ("eg3d", "epigraf")


class TriplaneDecoder(nn.Module):
    """FC(n_features -> hidden) -> activation -> FC(hidden -> 1 + output_dim); no view direction.

    forward: features [..., n_features] -> (colour [..., output_dim], raw sigma [..., 1]); the first
    3 colour channels are RGB. ``kind``:

    - "eg3d" (EG3D's ``OSGDecoder``): softplus; output rows [sigma, colour]; colour through MipNeRF's
      widened sigmoid, in [-0.001, 1.001].
    - "epigraf" (EpiGRAF's ``TriPlaneMLP``): lrelu (gain sqrt 2); output rows [colour, sigma]; raw
      colour (an image in [-1, 1] once rendered) and raw sigma.
    """

    def __init__(
        self,
        n_features: int = 32,
        hidden_dim: int = 64,
        output_dim: int = 32,
        lr_multiplier: float = 1.0,
        kind: str = "eg3d",
    ) -> None:
        super().__init__()
        for name, value in (
            ("n_features", n_features),
            ("hidden_dim", hidden_dim),
            ("output_dim", output_dim),
        ):
            if not (isinstance(value, int) and value > 0):
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        if kind not in DECODER_KINDS:
            raise ValueError(f"decoder: expected one of {DECODER_KINDS}, got {kind!r}")
        self.n_features = n_features
        self.hidden_dim = hidden_dim
        self.output_dim = output_dim
        self.kind = kind
        self.net = nn.Sequential(
            FullyConnectedLayer(n_features, hidden_dim, lr_multiplier=lr_multiplier),
            ClampedSoftplus() if kind == "eg3d" else ScaledLeakyReLU(),
            FullyConnectedLayer(hidden_dim, 1 + output_dim, lr_multiplier=lr_multiplier),
        )

    def _check(self, features: Tensor) -> None:
        if features.shape[-1] != self.n_features:
            raise ValueError(
                f"features: expected last dimension {self.n_features}, got shape {list(features.shape)}"
            )

    def forward(self, features: Tensor, colour_channels: int | None = None) -> tuple[Tensor, Tensor]:
        """``colour_channels`` < output_dim decodes only the first ones (e.g. 3 for RGB renders):
        the last layer then runs on those rows only."""
        self._check(features)
        if self.kind == "epigraf":
            colour, sigma = self.net(features).split([self.output_dim, 1], dim=-1)
            if colour_channels is not None:
                if not 0 < colour_channels <= self.output_dim:
                    raise ValueError(f"colour_channels: expected 1..{self.output_dim}, got {colour_channels}")
                colour = colour[..., :colour_channels]
            return colour, sigma
        if colour_channels is None or colour_channels == self.output_dim:
            # split, not two slices: each slice's backward would allocate and zero a full-size gradient.
            sigma, logits = self.net(features).split([1, self.output_dim], dim=-1)
        else:
            if not 0 < colour_channels <= self.output_dim:
                raise ValueError(f"colour_channels: expected 1..{self.output_dim}, got {colour_channels}")
            sigma, logits = self._last_rows(features, 1 + colour_channels).split([1, colour_channels], -1)
        return torch.sigmoid(logits) * _COLOUR_SCALE - _COLOUR_SHIFT, sigma

    def density(self, features: Tensor) -> Tensor:
        """Raw sigma only (skips the colour rows of the last layer): [..., n_features] -> [..., 1]."""
        self._check(features)
        if self.kind == "epigraf":
            return self._last_rows(features, slice(self.output_dim, self.output_dim + 1))
        return self._last_rows(features, 1)

    def _last_rows(self, features: Tensor, rows: int | slice) -> Tensor:
        """The first ``rows`` outputs of the MLP (or a slice of them): [..., n_features] -> [..., rows]."""
        rows = rows if isinstance(rows, slice) else slice(0, rows)
        hidden = self.net[1](self.net[0](features))
        last = self.net[2]
        weight = last.weight[rows] * last.weight_gain
        bias = last.bias[rows] * last.bias_gain
        return torch.addmm(bias, hidden.reshape(-1, self.hidden_dim), weight.t()).view(
            *features.shape[:-1], weight.shape[0]
        )
