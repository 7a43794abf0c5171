"""StyleGAN2 mapping network: (z, c) -> w, with the moving average of w used for truncation."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mimic3d.nn.layers import FullyConnectedLayer


def normalize_2nd_moment(x: Tensor, dim: int = 1, eps: float = 1e-8) -> Tensor:
    """Scale x so that the mean of its squares along ``dim`` is 1."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


class MappingNetwork(nn.Module):
    """MLP from latent z [N, z_dim] and label c [N, c_dim] to w [N, num_ws, w_dim].

    z is normalised by its second moment (unless ``normalize_z`` is False: a distilled student's
    input is a standardised teacher w, whose norm carries the truncation); c is embedded by an FC
    layer to ``embed_features`` and normalised the same way; both are concatenated and run through
    ``num_layers`` lrelu FC layers with learning-rate multiplier ``lr_multiplier``. ``num_ws=None``
    returns [N, w_dim] without broadcasting (the discriminator's conditioning mapping). ``w_avg``
    tracks the mean w with decay ``w_avg_beta`` when ``update_emas`` is set; truncation pulls ws
    toward it.
    """

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        num_ws: int | None,
        num_layers: int = 8,
        embed_features: int | None = None,
        layer_features: int | None = None,
        activation: str = "lrelu",
        lr_multiplier: float = 0.01,
        w_avg_beta: float | None = 0.998,
        normalize_z: bool = True,
    ) -> None:
        super().__init__()
        if z_dim == 0 and c_dim == 0:
            raise ValueError("MappingNetwork needs z_dim > 0 or c_dim > 0")
        if num_layers < 1:
            raise ValueError(f"MappingNetwork: num_layers must be >= 1, got {num_layers}")
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.num_ws = num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta
        self.normalize_z = normalize_z

        if embed_features is None:
            embed_features = w_dim
        if c_dim == 0:
            embed_features = 0
        if layer_features is None:
            layer_features = w_dim
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]

        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for idx in range(num_layers):
            layer = FullyConnectedLayer(
                features[idx], features[idx + 1], activation=activation, lr_multiplier=lr_multiplier
            )
            setattr(self, f"fc{idx}", layer)
        self.tracks_w_avg = num_ws is not None and w_avg_beta is not None
        if self.tracks_w_avg:
            self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(
        self,
        z: Tensor | None,
        c: Tensor | None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        update_emas: bool = False,
    ) -> Tensor:
        """z [N, z_dim], c [N, c_dim] -> ws [N, num_ws, w_dim] (or [N, w_dim] if num_ws is None).

        Truncation ``w_avg + psi * (w - w_avg)`` applies to the first ``truncation_cutoff`` ws
        (all of them when None).
        """
        x = None
        if self.z_dim > 0:
            if z is None or z.ndim != 2 or z.shape[1] != self.z_dim:
                raise ValueError(
                    f"MappingNetwork: z must be [N, {self.z_dim}], got {None if z is None else list(z.shape)}"
                )
            x = z.to(torch.get_default_dtype())
            x = normalize_2nd_moment(x) if self.normalize_z else x
        if self.c_dim > 0:
            if c is None or c.ndim != 2 or c.shape[1] != self.c_dim:
                raise ValueError(
                    f"MappingNetwork: c must be [N, {self.c_dim}], got {None if c is None else list(c.shape)}"
                )
            y = normalize_2nd_moment(self.embed(c.to(torch.get_default_dtype())))
            x = torch.cat([x, y], dim=1) if x is not None else y

        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)

        if update_emas and self.tracks_w_avg:
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))

        if self.num_ws is not None:
            x = x.unsqueeze(1).repeat([1, self.num_ws, 1])

        if truncation_psi != 1:
            if not self.tracks_w_avg:
                raise ValueError("MappingNetwork: truncation needs w_avg (num_ws and w_avg_beta not None)")
            if self.num_ws is None or truncation_cutoff is None:
                x = self.w_avg.lerp(x, truncation_psi)
            else:
                head = self.w_avg.lerp(x[:, :truncation_cutoff], truncation_psi)
                x = torch.cat([head, x[:, truncation_cutoff:]], dim=1)
        return x

    def extra_repr(self) -> str:
        return f"z_dim={self.z_dim}, c_dim={self.c_dim}, w_dim={self.w_dim}, num_ws={self.num_ws}"
