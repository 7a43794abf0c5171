"""Discriminator scores against the official implementations (EG3D, Mimic3D, EpiGRAF).

The fixture holds inputs and official scores (CPU, float32, eval mode) for small configurations
whose every parameter was drawn by ``fill_parameters`` below, applied by name to the official
module; applying it to ours must give the same scores.
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mimic3d.models.discriminator import DualDiscriminator, dual_discriminator_preset
from mimic3d.models.patch_discriminator import (
    HyperModulatedPatchDiscriminator,
    PatchDiscriminator,
    hyper_patch_discriminator_preset,
    patch_discriminator_preset,
)

FIXTURE = Path(__file__).parent / "fixtures" / "discriminator" / "official_scores.safetensors"


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    # Tiny networks: intra-op threads only add synchronisation (10-100x slower on a busy 2-core box).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def fill_parameters(module: torch.nn.Module) -> None:
    """Name-seeded normal weights at fresh-init scale (FC weights undo their lr multiplier)."""
    with torch.no_grad():
        for module_name, m in module.named_modules():
            for name, p in m.named_parameters(recurse=False):
                full = f"{module_name}.{name}" if module_name else name
                g = torch.Generator().manual_seed(zlib.crc32(full.encode()))
                if name == "weight" and p.ndim == 2 and hasattr(m, "weight_gain"):
                    scale = 1 / (m.weight_gain * math.sqrt(p.shape[1]))
                elif name == "bias":
                    scale = 0.1 / getattr(m, "bias_gain", 1.0)
                else:
                    scale = 1.0
                p.copy_(torch.randn(p.shape, generator=g) * scale)


@pytest.fixture(scope="module")
def reference() -> dict[str, torch.Tensor]:
    return load_file(str(FIXTURE))


def test_dual_discriminator_matches_official_eg3d(reference):
    D = DualDiscriminator(
        dual_discriminator_preset("tiny", channel_base=128, channel_max=16, num_fp16_res=4, conv_clamp=256.0)
    ).eval()
    fill_parameters(D)
    with torch.no_grad():
        score = D(
            {"image": reference["dual.image"], "image_raw": reference["dual.image_raw"]}, reference["dual.c"]
        )
    torch.testing.assert_close(score, reference["dual.score"], rtol=0, atol=1e-6)


def test_patch_discriminator_matches_official_mimic3d(reference):
    D = PatchDiscriminator(
        patch_discriminator_preset("tiny", channel_base=128, channel_max=16, num_fp16_res=4, conv_clamp=256.0)
    ).eval()
    fill_parameters(D)
    with torch.no_grad():
        score = D(reference["patch.patch"], None)
    torch.testing.assert_close(score, reference["patch.score"], rtol=0, atol=1e-6)


@pytest.mark.parametrize("camera_cond", [False, True])
def test_hyper_modulated_discriminator_matches_official_epigraf(reference, camera_cond):
    key = f"hyper_cam{int(camera_cond)}"
    D = HyperModulatedPatchDiscriminator(
        hyper_patch_discriminator_preset(
            "tiny", hyper_mod_dim=512, patch_embed_dim=256, conv_clamp=256.0, camera_cond=camera_cond
        )
    ).eval()
    fill_parameters(D)
    with torch.no_grad():
        score = D(
            reference[f"{key}.patch"],
            reference[f"{key}.scale"],
            reference[f"{key}.offset"],
            camera_angles=reference[f"{key}.camera_angles"] if camera_cond else None,
        )
    torch.testing.assert_close(score.squeeze(1), reference[f"{key}.score"], rtol=0, atol=1e-6)
