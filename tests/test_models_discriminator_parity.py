"""Discriminator scores against the official implementations (EG3D, Mimic3D, EpiGRAF).

The fixture holds inputs and official scores (CPU, float32, eval mode) for small configurations
whose every parameter was drawn by ``fill_parameters`` below, applied by name to the official
module; applying it to ours must give the same scores, within float32 rounding of the network's
reductions (``numerics.fan_in_sum``), and a deliberately wrong variant (a wrong constant in a
formula) must not.
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from pathlib import Path

import pytest
import torch
from numerics import assert_close, assert_not_close, fan_in_sum
from safetensors.torch import load_file

from mimic3d.models.discriminator import DualDiscriminator, dual_discriminator_preset
from mimic3d.models.patch_discriminator import (
    HyperModulatedPatchDiscriminator,
    PatchDiscriminator,
    hyper_patch_discriminator_preset,
    patch_discriminator_preset,
)
from mimic3d.nn import layers

FIXTURE = Path(__file__).parent / "fixtures" / "discriminator" / "official_scores.safetensors"


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


def _dual_score(reference) -> tuple[torch.Tensor, torch.nn.Module]:
    D = DualDiscriminator(
        dual_discriminator_preset("tiny", channel_base=128, channel_max=16, num_fp16_res=4, conv_clamp=256.0)
    ).eval()
    fill_parameters(D)
    with torch.no_grad():
        images = {"image": reference["dual.image"], "image_raw": reference["dual.image_raw"]}
        return D(images, reference["dual.c"]), D


def _patch_score(reference) -> tuple[torch.Tensor, torch.nn.Module]:
    D = PatchDiscriminator(
        patch_discriminator_preset("tiny", channel_base=128, channel_max=16, num_fp16_res=4, conv_clamp=256.0)
    ).eval()
    fill_parameters(D)
    with torch.no_grad():
        return D(reference["patch.patch"], None), D


def _hyper_score(reference, camera_cond: bool) -> tuple[torch.Tensor, torch.nn.Module]:
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
    return score.squeeze(1), D


# Scores are O(1) outputs of a chain of convolutions and FCs: every path through the network sums
# at most fan_in_sum(D) terms, so float32 rounding (in any summation order) stays below that many eps.
def test_dual_discriminator_matches_official_eg3d(reference):
    score, D = _dual_score(reference)
    assert_close(score, reference["dual.score"], terms=fan_in_sum(D))


def test_patch_discriminator_matches_official_mimic3d(reference):
    score, D = _patch_score(reference)
    assert_close(score, reference["patch.score"], terms=fan_in_sum(D))


@pytest.mark.parametrize("camera_cond", [False, True])
def test_hyper_modulated_discriminator_matches_official_epigraf(reference, camera_cond):
    score, D = _hyper_score(reference, camera_cond)
    assert_close(score, reference[f"hyper_cam{int(camera_cond)}.score"], terms=fan_in_sum(D))


@pytest.mark.parametrize("which", ["dual", "patch", "hyper_cam0", "hyper_cam1"])
def test_a_wrong_activation_slope_fails_the_parity_tolerance(reference, monkeypatch, which):
    """Leaky ReLU with slope 0.21 instead of EG3D's 0.2: the same comparison must fail."""
    lrelu = layers.ACTIVATIONS["lrelu"]
    monkeypatch.setitem(layers.ACTIVATIONS, "lrelu", dataclasses.replace(lrelu, default_alpha=0.21))
    if which == "dual":
        score, D = _dual_score(reference)
    elif which == "patch":
        score, D = _patch_score(reference)
    else:
        score, D = _hyper_score(reference, which.endswith("1"))
    assert_not_close(score, reference[f"{which}.score"], terms=fan_in_sum(D))


def test_a_wrong_patch_scale_encoding_fails_the_parity_tolerance(reference):
    """EpiGRAF's Fourier frequencies of the patch scale/offset 0.1% too high must fail."""
    score, D = _hyper_score(reference, False)
    inputs = [reference[f"hyper_cam0.{name}"] for name in ("patch", "scale", "offset")]
    with torch.no_grad():
        D.scalar_enc.fourier_encoder.fourier_coefs.mul_(1.001)
        wrong = D(*inputs)
    expected = reference["hyper_cam0.score"]
    assert_close(score, expected, terms=fan_in_sum(D))
    assert_not_close(wrong.squeeze(1), expected, terms=fan_in_sum(D))
