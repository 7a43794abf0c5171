"""StyleGAN2 generator = mapping + synthesis; EG3D uses it as its tri-plane backbone."""

from __future__ import annotations

from torch import Tensor, nn

from mimic3d.nn.mapping import MappingNetwork
from mimic3d.nn.synthesis import SynthesisNetwork


class StyleGAN2Backbone(nn.Module):
    """z [N, z_dim], c [N, c_dim] -> img [N, img_channels, R, R] (EG3D: R=256, 96 channels).

    Same module tree as the official ``Generator`` (``mapping.*``, ``synthesis.*``), so its
    state dicts, and EG3D's ``backbone.*`` entries, load unchanged.
    """

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        mapping_kwargs: dict | None = None,
        **synthesis_kwargs,
    ) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.synthesis = SynthesisNetwork(
            w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels, **synthesis_kwargs
        )
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(
            z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws, **(mapping_kwargs or {})
        )

    def forward(
        self,
        z: Tensor,
        c: Tensor,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        update_emas: bool = False,
        **synthesis_kwargs,
    ) -> Tensor:
        ws = self.mapping(
            z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff, update_emas=update_emas
        )
        return self.synthesis(ws, update_emas=update_emas, **synthesis_kwargs)
