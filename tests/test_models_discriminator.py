"""EG3D's dual discriminator, Mimic3D's patch discriminator and EpiGRAF's hyper-modulated one."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from numerics import EPS, assert_close, fan_in_sum

from mimic3d.models.discriminator import (
    DualDiscriminator,
    DualDiscriminatorConfig,
    dual_discriminator_preset,
    resize_raw_image,
)
from mimic3d.models.patch_discriminator import (
    HyperModulatedPatchDiscriminator,
    PatchDiscriminator,
    hyper_patch_discriminator_preset,
    patch_discriminator_preset,
)
from mimic3d.models.patch_encoding import ScalarEncoder
from mimic3d.nn import Discriminator


def _images(n: int = 4, resolution: int = 32, raw: int = 16, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "image": torch.randn(n, 3, resolution, resolution, generator=g),
        "image_raw": torch.randn(n, 3, raw, raw, generator=g),
    }


def _labels(n: int = 4, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 25, generator=torch.Generator().manual_seed(seed))


def _patch_inputs(n: int = 4, resolution: int = 16, seed: int = 2):
    g = torch.Generator().manual_seed(seed)
    patch = torch.randn(n, 3, resolution, resolution, generator=g)
    scale = torch.tensor([0.5, 0.5, 0.75, 1.0])[:n]
    offset = torch.rand(n, 2, generator=g) * (1 - scale[:, None])
    return patch, scale, offset


# ----------------------------------------------------------------------------- dual discriminator


def test_dual_discriminator_ffhq512_has_official_parameter_count():
    torch.manual_seed(0)
    D = DualDiscriminator(dual_discriminator_preset("eg3d-ffhq512"))
    assert sum(p.numel() for p in D.parameters()) == 31_359_744
    assert D.b512.fromrgb.weight.shape == (64, 6, 1, 1)  # 6 channels: image and resized image_raw
    assert D.mapping.num_layers == 8 and D.b4.cmap_dim == 512


def test_dual_discriminator_equals_plain_discriminator_on_stacked_input(tiny_discriminator_kwargs):
    torch.manual_seed(0)
    D = DualDiscriminator(dual_discriminator_preset("tiny")).eval()
    plain = Discriminator(**tiny_discriminator_kwargs, img_channels=6, num_fp16_res=0, conv_clamp=None).eval()
    plain.load_state_dict({k: v for k, v in D.state_dict().items() if k != "resample_filter"})
    images, c = _images(), _labels()
    upsampled = F.interpolate(
        images["image_raw"], size=(32, 32), mode="bilinear", align_corners=False, antialias=True
    )
    expected = plain(torch.cat([images["image"], upsampled], dim=1), c)
    out = D(images, c)
    assert out.shape == (4, 1)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)  # the same ops on the same inputs


def test_dual_discriminator_raw_image_at_full_resolution_is_used_as_is():
    x = torch.randn(2, 3, 8, 8)
    assert resize_raw_image(x, 8) is x
    torch.testing.assert_close(
        resize_raw_image(x, 16),
        F.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False, antialias=True),
    )


def test_dual_discriminator_depends_on_camera_and_raw_image():
    torch.manual_seed(0)
    D = DualDiscriminator(dual_discriminator_preset("tiny")).eval()
    images, c = _images(), _labels()
    base = D(images, c)
    assert not torch.allclose(D(images, _labels(seed=5)), base)
    assert not torch.allclose(D({**images, "image_raw": images["image_raw"].flip(-1)}, c), base)
    torch.testing.assert_close(D({**images, "image_depth": torch.zeros(4, 1, 16, 16)}, c), base)


def test_dual_discriminator_camera_noise_only_in_training():
    torch.manual_seed(0)
    D = DualDiscriminator(dual_discriminator_preset("tiny", disc_c_noise=0.5))
    images, c = _images(), _labels()
    c_before = c.clone()
    torch.manual_seed(123)
    noisy = D.train()(images, c)
    torch.manual_seed(123)
    expected_c = c + torch.randn_like(c) * c.std(0) * 0.5
    torch.testing.assert_close(noisy, D.eval()(images, expected_c))
    torch.testing.assert_close(c, c_before, rtol=0, atol=0)  # the caller's labels are not modified
    torch.testing.assert_close(D.eval()(images, c), D.eval()(images, c), rtol=0, atol=0)
    assert not torch.allclose(D.eval()(images, c), noisy)


def test_dual_discriminator_rejects_bad_inputs():
    D = DualDiscriminator(dual_discriminator_preset("tiny"))
    images, c = _images(), _labels()
    with pytest.raises(ValueError, match="image_raw"):
        D({"image": images["image"]}, c)
    with pytest.raises(ValueError, match="image must be"):
        D({"image": torch.randn(4, 3, 16, 16), "image_raw": images["image_raw"]}, c)
    with pytest.raises(ValueError, match="c must be"):
        D(images, c[:, :16])
    with pytest.raises(ValueError, match="img_resolution"):
        DualDiscriminatorConfig(img_resolution=48)
    with pytest.raises(ValueError, match="disc_c_noise"):
        DualDiscriminatorConfig(disc_c_noise=-1.0)
    with pytest.raises(ValueError, match="unknown name"):
        dual_discriminator_preset("ffhq")


# ----------------------------------------------------------------------------- plain patch discriminator


def test_patch_discriminator_is_unconditional_stylegan2_d_on_patches():
    torch.manual_seed(0)
    config = patch_discriminator_preset("mimic3d")
    assert (config.patch_resolution, config.c_dim) == (64, 0)
    D = PatchDiscriminator(patch_discriminator_preset("tiny")).eval()
    assert not hasattr(D, "mapping") and D.b4.out.weight.shape[0] == 1
    patch, _, _ = _patch_inputs()
    out = D(patch, None)
    assert out.shape == (4, 1)
    assert not torch.allclose(D(patch.flip(-1), None), out)
    with pytest.raises(ValueError, match="img must be"):
        D(torch.randn(4, 3, 32, 32), None)


# ----------------------------------------------------------------------------- hyper-modulated discriminator


def test_patch_encoding_fourier_values_and_embedding_rows():
    encoder = ScalarEncoder(num_scalars=3, multiplier=1000.0, embed_dim=256)
    assert encoder.dim == 828
    freqs = encoder.fourier_encoder.fourier_coefs
    torch.testing.assert_close(freqs, torch.tensor([math.pi * 2.0**k / 1024 for k in range(10)]))
    values = torch.tensor([[0.0, 0.2504, 1.0]])
    code = encoder(values).reshape(3, 276)
    for i, v in enumerate(values[0].tolist()):
        expected = [math.sin(1000 * v * math.pi * 2.0**k / 1024) for k in range(10)]
        expected += [math.cos(1000 * v * math.pi * 2.0**k / 1024) for k in range(10)]
        # Angles up to 1000 pi / 2 are rounded to float32 (and so is pi / 1024): sin/cos differ from
        # float64's by about two roundings of the angle.
        largest = 1000 * v * math.pi / 2
        torch.testing.assert_close(code[i, :20], torch.tensor(expected), rtol=0, atol=2 * EPS * largest + EPS)
        torch.testing.assert_close(code[i, 20:], encoder.const_embed.weight[round(1000 * v)], rtol=0, atol=0)
    assert round(1000 * 0.2504) == 250  # rounded to the nearest of the 1001 rows


def test_hyper_modulation_with_zero_affines_equals_unmodulated_discriminator():
    torch.manual_seed(0)
    modulated = HyperModulatedPatchDiscriminator(hyper_patch_discriminator_preset("tiny")).eval()
    plain = HyperModulatedPatchDiscriminator(hyper_patch_discriminator_preset("tiny", hyper_mod=False)).eval()
    plain.load_state_dict({k: v for k, v in modulated.state_dict().items() if k in plain.state_dict()})
    patch, scale, offset = _patch_inputs()
    assert not torch.allclose(modulated(patch, scale, offset), plain(patch, scale, offset))
    with torch.no_grad():
        for res in modulated.block_resolutions:
            getattr(modulated, f"b{res}").conv1.affine.weight.zero_()
            getattr(modulated, f"b{res}").conv1.affine.bias.zero_()
    # Weights times (1 + 0) are the same weights, but the modulated convolution may run another kernel.
    assert_close(modulated(patch, scale, offset), plain(patch, scale, offset), terms=fan_in_sum(plain))


def test_hyper_modulated_discriminator_layout_and_patch_conditioning():
    torch.manual_seed(0)
    config = hyper_patch_discriminator_preset("epigraf-512")
    assert config.num_additional_start_blocks == 3
    D = HyperModulatedPatchDiscriminator(hyper_patch_discriminator_preset("tiny")).eval()
    assert [getattr(D, f"b{r}").conv1.down for r in D.block_resolutions] == [1, 2, 2]
    patch, scale, offset = _patch_inputs()
    out = D(patch, scale, offset)
    assert out.shape == (4, 1)
    assert not torch.allclose(D(patch, scale, offset.flip(0)), out)  # the patch location matters
    assert not torch.allclose(D(patch, torch.full_like(scale, 0.3), offset * 0.5), out)


def test_camera_conditioning_dropout_only_in_training():
    torch.manual_seed(0)
    D = HyperModulatedPatchDiscriminator(hyper_patch_discriminator_preset("tiny", camera_cond=True))
    angles = torch.tensor([[0.3, 1.4, 0.0], [-0.2, 1.7, 0.0], [0.0, math.pi / 2, 0.0], [0.1, 1.5, 0.0]])
    mapping = D.head_mapping
    clean = mapping.eval().encode_camera(angles)
    assert clean.shape == (4, 24)
    normalized = angles[:, :2].sign() * (angles[:, :2].abs() % (2 * math.pi)) / (2 * math.pi)
    torch.testing.assert_close(clean, mapping.camera_scalar_enc(normalized))
    torch.manual_seed(1)
    dropped = mapping.train().encode_camera(angles.repeat(50, 1))
    kept = dropped != 0
    assert 0.35 < kept.float().mean() < 0.65
    torch.testing.assert_close(dropped[kept], 2 * clean.repeat(50, 1)[kept])  # inverted dropout, p = 0.5
    patch, scale, offset = _patch_inputs()
    D.eval()
    torch.testing.assert_close(
        D(patch, scale, offset, camera_angles=angles),
        D(patch, scale, offset, camera_angles=angles),
        rtol=0,
        atol=0,
    )
    assert not torch.allclose(
        D(patch, scale, offset, camera_angles=angles), D(patch, scale, offset, camera_angles=angles.flip(0))
    )


def test_hyper_modulated_discriminator_rejects_bad_inputs():
    D = HyperModulatedPatchDiscriminator(hyper_patch_discriminator_preset("tiny", camera_cond=True))
    patch, scale, offset = _patch_inputs()
    with pytest.raises(ValueError, match="camera_angles"):
        D(patch, scale, offset)
    with pytest.raises(ValueError, match="scale must lie"):
        D(patch, scale * 2, offset, camera_angles=torch.zeros(4, 3))
    with pytest.raises(ValueError, match="patch must be"):
        D(patch[:, :, :8, :8], scale, offset, camera_angles=torch.zeros(4, 3))
    with pytest.raises(ValueError, match="img_resolution"):
        hyper_patch_discriminator_preset("tiny", img_resolution=8)
    with pytest.raises(ValueError, match="camera_cond_drop_p"):
        hyper_patch_discriminator_preset("tiny", camera_cond_drop_p=1.0)
