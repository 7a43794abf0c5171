"""EpiGRAF's encodings of scalar conditions: patch scale/offset and camera yaw/pitch.

Scalars in [0, 1] are multiplied by a constant M and encoded by sin/cos at log-spaced
frequencies (the lowest spans half a period over [0, 2^ceil(log2 M)]) and, optionally, by a
learned embedding of the rounded value (ceil(M) + 1 rows). The patch encoder (M = 1000, 256-d
embedding) gives 3 * (20 + 256) = 828 dims for (s, ox, oy); the camera encoder (M = 64, no
embedding) 2 * 12 = 24 dims for (yaw, pitch). Buffer and parameter names follow EpiGRAF's
``ScalarEncoder1d`` (``fourier_encoder.fourier_coefs``, ``const_embed.weight``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mimic3d.nn import MappingNetwork


class FourierEncoder(nn.Module):
    """sin and cos of x at ``num_freqs`` log-spaced frequencies pi * 2^k / 2^num_freqs, k < num_freqs.

    The lowest frequency spans half a period over [0, 2^num_freqs]. x [N, D] -> [N, D, 2 * num_freqs]
    (all sines, then all cosines).
    """

    def __init__(self, max_value: float) -> None:
        super().__init__()
        period = 2 ** math.ceil(math.log2(max_value))
        num_freqs = int(math.log2(period))
        self.register_buffer("fourier_coefs", (2.0 ** torch.arange(num_freqs)) * math.pi / period)

    @property
    def dim(self) -> int:
        return 2 * self.fourier_coefs.shape[0]

    def forward(self, x: Tensor) -> Tensor:
        angles = x.float().unsqueeze(2) * self.fourier_coefs  # [N, D, F]
        return torch.cat([angles.sin(), angles.cos()], dim=2)


class ScalarEncoder(nn.Module):
    """Encode scalars in [0, 1]: scaled by ``multiplier``, Fourier features and, optionally, a learned
    embedding of the rounded scaled value (``embed_dim`` wide, ceil(multiplier) + 1 rows).

    x [N, D] -> [N, D * (fourier dim + embed_dim)], grouped per scalar.
    """

    def __init__(self, num_scalars: int, multiplier: float, embed_dim: int) -> None:
        super().__init__()
        self.num_scalars = num_scalars
        self.multiplier = multiplier
        self.fourier_encoder = FourierEncoder(multiplier)
        self.const_embed = nn.Embedding(math.ceil(multiplier) + 1, embed_dim) if embed_dim > 0 else None

    @property
    def dim(self) -> int:
        embed_dim = 0 if self.const_embed is None else self.const_embed.embedding_dim
        return self.num_scalars * (self.fourier_encoder.dim + embed_dim)

    def forward(self, x: Tensor) -> Tensor:
        scaled = x.float() * self.multiplier  # [N, D]
        parts = [self.fourier_encoder(scaled)]
        if self.const_embed is not None:
            parts.append(self.const_embed(scaled.round().long()))
        return torch.cat(parts, dim=2).flatten(1)


class CameraConditionedMapping(MappingNetwork):
    """Conditioning mapping whose label is extended by Fourier features of the camera's yaw and pitch.

    Angles (radians, EpiGRAF's convention) become sign(a) * (|a| mod 2 pi) / (2 pi), are encoded at
    6 frequencies (multiplier 64: 2 * 12 = 24 dims) and dropped element-wise with probability
    ``drop_p`` in training mode (inverted dropout), so D cannot lean on pose biases of the data.
    ``noise_std`` adds training-time Gaussian noise in units of the batch's per-angle std.
    """

    def __init__(self, c_dim: int, w_dim: int, num_layers: int, drop_p: float, noise_std: float) -> None:
        encoder = ScalarEncoder(num_scalars=2, multiplier=64.0, embed_dim=0)
        super().__init__(
            z_dim=0,
            c_dim=c_dim + encoder.dim,
            w_dim=w_dim,
            num_ws=None,
            num_layers=num_layers,
            w_avg_beta=None,
        )
        self.camera_scalar_enc = encoder
        self.drop_p = drop_p
        self.noise_std = noise_std

    def encode_camera(self, camera_angles: Tensor) -> Tensor:
        """[N, 2 or 3] (yaw, pitch[, roll]; roll is ignored) -> [N, 24] features, dropped in training."""
        angles = camera_angles[:, :2].float()
        if self.training and self.noise_std > 0:
            angles = angles + self.noise_std * torch.randn_like(angles) * angles.std(dim=0, keepdim=True)
        angles = angles.sign() * ((angles.abs() % (2 * math.pi)) / (2 * math.pi))
        return F.dropout(self.camera_scalar_enc(angles), p=self.drop_p, training=self.training)

    def forward(self, c: Tensor, camera_angles: Tensor) -> Tensor:
        """c [N, c_dim], camera_angles [N, 2 or 3] -> [N, w_dim]."""
        return super().forward(None, torch.cat([c, self.encode_camera(camera_angles)], dim=1))
