"""fp16 super-resolution and discriminator blocks (``sr_num_fp16_res``, ``num_fp16_res``) against the
same blocks forced to float32, on the GPU where the official code runs them in fp16.

fp16's unit roundoff is u = 2^-11 ~ 4.9e-4. The blocks' activations are clamped at conv_clamp = 256,
and each of the ~4-8 fp16 layers rounds to u relative: the mean error stays within a few u of the
output scale and the worst element within 32 u.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from test_cuda_parity import _generator

from mimic3d.models.discriminator import DualDiscriminator, dual_discriminator_preset

U = 2.0**-11


def _check(reduced: torch.Tensor, full: torch.Tensor, device: torch.device) -> None:
    assert reduced.dtype == torch.float32 and torch.isfinite(reduced).all()
    error = (reduced - full).abs()
    scale = full.abs().max()
    assert error.mean() <= 4 * U * scale, (error.mean(), scale)
    assert error.max() <= 32 * U * scale, (error.max(), scale)
    if device.type == "cuda":  # off the GPU the blocks compute in float32 (as the official code)
        assert error.max() > 0, "the fp16 blocks did not run in fp16"


@torch.no_grad()
def test_fp16_super_resolution_matches_float32(device) -> None:
    G32, io = _generator("eg3d_small", device)
    G16 = type(G32)(replace(G32.config, sr_num_fp16_res=4)).eval().to(device)
    G16.load_state_dict(G32.state_dict())
    ws, c = io["ws"], io["c"]
    _check(G16.synthesis(ws, c)["image"], G32.synthesis(ws, c)["image"], device)


@torch.no_grad()
def test_fp16_discriminator_matches_float32(device) -> None:
    torch.manual_seed(0)
    D = (
        DualDiscriminator(dual_discriminator_preset("tiny", num_fp16_res=4, conv_clamp=256.0))
        .eval()
        .to(device)
    )
    images = {
        "image": torch.randn(4, 3, 32, 32, device=device),
        "image_raw": torch.randn(4, 3, 16, 16, device=device),
    }
    c = torch.randn(4, 25, device=device)
    _check(D(images, c), D(images, c, force_fp32=True), device)
