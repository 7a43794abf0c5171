"""The per-device kernel choices compute the same function: the CPU formulations (clamped softplus,
polyphase transposed convolution, pixel-major tri-plane convolutions) against the official ones that
CUDA devices use, both run here on the CPU by forcing the choice."""

from __future__ import annotations

import pytest
import torch

from mimic3d.camera import PRESETS
from mimic3d.models import TriplaneGenerator, generator_preset
from mimic3d.nn.resample import conv2d_resample, setup_filter
from mimic3d.render.decoder import ClampedSoftplus
from mimic3d.runtime import ACCELERATOR_PATHS, CPU_PATHS, forced_kernel_paths, kernel_paths
from mimic3d.tools.viewpoints import view_labels


def test_cpu_keeps_its_paths_and_cuda_gets_the_official_ones() -> None:
    assert kernel_paths("cpu") is CPU_PATHS and kernel_paths(torch.device("cuda", 1)) is ACCELERATOR_PATHS
    assert CPU_PATHS.clamped_softplus and not ACCELERATOR_PATHS.clamped_softplus
    assert CPU_PATHS.polyphase_transposed_conv and not ACCELERATOR_PATHS.polyphase_transposed_conv
    assert CPU_PATHS.pixel_major_triplanes and not ACCELERATOR_PATHS.pixel_major_triplanes
    with forced_kernel_paths(ACCELERATOR_PATHS):
        assert kernel_paths("cpu") is ACCELERATOR_PATHS
    assert kernel_paths("cpu") is CPU_PATHS


def test_clamped_softplus_differs_from_softplus_only_below_the_floor() -> None:
    x = torch.linspace(-1000, 50, 20001)
    clamped = ClampedSoftplus()(x.clone())
    with forced_kernel_paths(ACCELERATOR_PATHS):
        plain = ClampedSoftplus()(x.clone())
    assert torch.equal(clamped[x >= -20], plain[x >= -20])
    assert (clamped - plain).abs().max() <= 2.1e-9  # softplus(-20) = 2.06e-9


@pytest.mark.parametrize("groups", [1, 3])
def test_transposed_conv_paths_agree(groups: int) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 6, 7, 5, generator=gen)
    w = torch.randn(9, 6 // groups, 3, 3, generator=gen)
    f = setup_filter([1, 3, 3, 1])
    polyphase = conv2d_resample(x, w, f=f, up=2, padding=1, groups=groups, flip_weight=False)
    with forced_kernel_paths(ACCELERATOR_PATHS):
        official = conv2d_resample(x, w, f=f, up=2, padding=1, groups=groups, flip_weight=False)
    # Same sums of 3x3xC products in another order: float32 rounding of O(10) magnitudes.
    torch.testing.assert_close(polyphase, official, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("preset", ["tiny-eg3d", "tiny-mimic3d"])
def test_generator_and_its_gradients_agree_on_both_paths(preset: str) -> None:
    torch.manual_seed(0)
    G = TriplaneGenerator(generator_preset(preset)).eval()
    z = torch.randn(2, G.config.z_dim)
    c = view_labels([0.3, -0.2], -0.1, PRESETS["ffhq"], "cpu")

    def run():
        G.zero_grad(set_to_none=True)
        outputs = {}
        for branch in ("2d", "3d"):
            out = G.synthesis(G.mapping(z, c), c, branch=branch, noise_mode="const", perturb=False)
            outputs.update({f"{branch}/{k}": v for k, v in out.items() if k != "feature_image"})
        sum(v.square().mean() for v in outputs.values()).backward()
        grads = {n: p.grad.clone() for n, p in G.named_parameters() if p.grad is not None}
        return outputs, grads

    cpu_out, cpu_grads = run()
    with forced_kernel_paths(ACCELERATOR_PATHS):
        official_out, official_grads = run()
    for key, value in cpu_out.items():
        # Different summation orders through a deep network: float32 rounding of the O(1) outputs.
        torch.testing.assert_close(official_out[key], value, rtol=1e-4, atol=1e-4, msg=key)
    assert cpu_grads.keys() == official_grads.keys()
    for name, grad in cpu_grads.items():
        scale = grad.abs().max().item() + 1e-12
        assert (official_grads[name] - grad).abs().max().item() <= 1e-3 * scale, name
