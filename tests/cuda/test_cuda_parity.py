"""Every official-parity check of the CPU suite, rerun on the GPU with EG3D's backend settings.

The references are the official outputs recorded on the CPU in float32 (tests/fixtures), so the
networks run in float32 here too (fp16 blocks are compared with float32 in test_cuda_fp16.py).
Tolerances: the CPU suite's, widened where GPU float32 kernels (cuDNN algorithms, fused
multiply-adds, other exp/log implementations) round differently; generator outputs within 1e-4.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import test_models_discriminator_parity as discriminator_parity
import test_models_generator_parity as generator_parity
import test_nn_official as nn_official
import test_render_official as render_official
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from mimic3d.models import TriplaneGenerator
from mimic3d.models.discriminator import DualDiscriminator, dual_discriminator_preset
from mimic3d.models.patch_discriminator import PatchDiscriminator, patch_discriminator_preset
from mimic3d.nn import Discriminator, StyleGAN2Backbone, SynthesisBlock
from mimic3d.render import RenderConfig, TriplaneRenderer, generate_rays

GENERATOR_TOLERANCE = 1e-4
NN_TOLERANCE = 1e-4  # the CPU suite's 1e-5, times ten for GPU float32 rounding over ~20 layers
RENDER_TOLERANCE = 1e-5  # CPU: 2e-6
SCORE_TOLERANCE = 1e-5  # CPU: 1e-6


def _on(tensors: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in tensors.items()}


def _close(ours: torch.Tensor, theirs: torch.Tensor, tolerance: float) -> None:
    assert ours.shape == theirs.shape
    error = (ours.float() - theirs.to(ours.device).float()).abs().max().item()
    assert error <= tolerance, f"max |difference| {error:.2e} > {tolerance:.0e}"


def _generator(name: str, device: torch.device) -> tuple[TriplaneGenerator, dict[str, torch.Tensor]]:
    """The CPU suite's fixture generator in float32 (its fp16 super-resolution blocks off)."""
    meta = json.loads((generator_parity.FIXTURES / f"{name}.json").read_text())
    config = replace(generator_parity._config(meta), sr_num_fp16_res=0)
    G = TriplaneGenerator(config).eval()
    weights = load_file(generator_parity.FIXTURES / meta["weights_file"])
    G.load_state_dict({k: v.float() for k, v in weights.items()}, strict=True)
    return G.to(device), _on(load_file(generator_parity.FIXTURES / meta["io_file"]), device)


@torch.no_grad()
def test_eg3d_generator_matches_official(device) -> None:
    G, io = _generator("eg3d_small", device)
    _close(G.mapping(io["z"], io["c"]), io["ws"], GENERATOR_TOLERANCE)
    _close(G.mapping(io["z"], io["c"], truncation_psi=0.7), io["ws_psi07"], GENERATOR_TOLERANCE)
    out = G(io["z"], io["c"])
    for key in ("image", "image_raw", "image_depth"):
        _close(out[key], io[key], GENERATOR_TOLERANCE)
    truncated = G.synthesis(io["ws_psi07"], io["c"])
    _close(truncated["image_raw"], io["psi07_image_raw"], GENERATOR_TOLERANCE)
    _close(truncated["image_depth"], io["psi07_image_depth"], GENERATOR_TOLERANCE)
    _close(G.synthesis(io["ws_cond"], io["c"])["image_raw"], io["gpc_image_raw"], GENERATOR_TOLERANCE)
    _close(G.sample_density(io["points"], io["ws"]), io["density"], GENERATOR_TOLERANCE)
    srin = G.synthesis(
        io["ws"][:1], io["c"][:1], neural_rendering_resolution=G.superresolution.input_resolution
    )
    _close(srin["image"], io["srin_image"], GENERATOR_TOLERANCE)


@torch.no_grad()
def test_mimic3d_generator_matches_official(device) -> None:
    G, io = _generator("mimic3d_small", device)
    _close(G.mapping(io["z"], io["c"]), io["ws"], GENERATOR_TOLERANCE)
    out2d = G(io["z"], io["c"], branch="2d")
    for key in ("image", "image_raw", "image_depth"):
        _close(out2d[key], io[f"2d_{key}"], GENERATOR_TOLERANCE)
    resolution = io["3d_image"].shape[-1]
    out3d = G.synthesis(io["ws"], io["c"], branch="3d", neural_rendering_resolution=resolution)
    _close(out3d["image"], io["3d_image"], GENERATOR_TOLERANCE)
    _close(out3d["image_depth"], io["3d_image_depth"], GENERATOR_TOLERANCE)
    _close(G.sample_density(io["points"], io["ws"]), io["density"], GENERATOR_TOLERANCE)


@pytest.mark.parametrize("case", sorted(render_official.CASES))
@pytest.mark.parametrize("chunk_rays", [None, 7])
@torch.no_grad()
def test_renderer_matches_official(device, case: str, chunk_rays: int | None) -> None:
    recorded = _on(load_file(render_official.FIXTURE), device)
    origins, directions = generate_rays(recorded["cam2world"], recorded["intrinsics"], 8)
    _close(origins, recorded[f"{case}.origins"], RENDER_TOLERANCE)
    _close(directions, recorded[f"{case}.directions"], RENDER_TOLERANCE)
    convention = "xyz" if case == "mimic3d" else "eg3d"
    planes = [recorded["planes16"], recorded["planes32"]] if case == "mimic3d" else recorded["planes16"]
    config = RenderConfig.from_eg3d_kwargs(
        render_official.CASES[case], perturb=False, convention=convention, chunk_rays=chunk_rays
    )
    result = TriplaneRenderer(config)(
        planes,
        render_official._decoder(recorded).to(device),
        recorded[f"{case}.origins"],
        recorded[f"{case}.directions"],
    )
    _close(result.features, recorded[f"{case}.features"], RENDER_TOLERANCE)
    _close(result.depth, recorded[f"{case}.depth"], RENDER_TOLERANCE)
    _close(result.alpha, recorded[f"{case}.alpha"], RENDER_TOLERANCE)


@torch.no_grad()
def test_backbone_blocks_and_discriminator_match_official(device) -> None:
    with safe_open(str(nn_official.FIXTURE), "pt") as handle:
        config = json.loads(handle.metadata()["config"])
    tensors = _on(load_file(str(nn_official.FIXTURE)), device)
    section = nn_official.section
    backbone = nn_official.load(StyleGAN2Backbone(**config["G"]), section(tensors, "G.state.")).to(device)
    z, c = tensors["G.in.z"], tensors["G.in.c"]
    _close(backbone.mapping(z, c), tensors["G.out.ws"], NN_TOLERANCE)
    ws = tensors["G.out.ws"]
    for fused, key in ((True, "img_const_fused"), (False, "img_const_unfused")):
        _close(
            backbone.synthesis(ws, noise_mode="const", fused_modconv=fused),
            tensors[f"G.out.{key}"],
            NN_TOLERANCE,
        )
    _close(backbone.synthesis(ws, noise_mode="none"), tensors["G.out.img_none"], NN_TOLERANCE)
    block0 = nn_official.load(SynthesisBlock(**config["SR0"], up=1), section(tensors, "SR0.state.")).to(
        device
    )
    block1 = nn_official.load(SynthesisBlock(**config["SR1"]), section(tensors, "SR1.state.")).to(device)
    sr_ws = tensors["SR.in.ws"]
    x0, rgb0 = block0(tensors["SR.in.x"], tensors["SR.in.rgb"], sr_ws, noise_mode="const", force_fp32=True)
    x1, rgb1 = block1(x0, rgb0, sr_ws, noise_mode="const", force_fp32=True)
    for name, value in [("x0", x0), ("rgb0", rgb0), ("x1", x1), ("rgb1", rgb1)]:
        _close(value, tensors[f"SR.out.{name}"], NN_TOLERANCE)
    disc = nn_official.load(Discriminator(**config["D"]), section(tensors, "D.state.")).to(device)
    _close(
        disc(tensors["D.in.img"], tensors["D.in.c"], force_fp32=True), tensors["D.out.score"], NN_TOLERANCE
    )


@torch.no_grad()
def test_discriminators_match_official(device) -> None:
    reference = _on(load_file(str(discriminator_parity.FIXTURE)), device)
    D = DualDiscriminator(
        dual_discriminator_preset("tiny", channel_base=128, channel_max=16, num_fp16_res=4, conv_clamp=256.0)
    ).eval()
    discriminator_parity.fill_parameters(D)
    score = D.to(device)(
        {"image": reference["dual.image"], "image_raw": reference["dual.image_raw"]},
        reference["dual.c"],
        force_fp32=True,
    )
    _close(score, reference["dual.score"], SCORE_TOLERANCE)
    P = PatchDiscriminator(
        patch_discriminator_preset("tiny", channel_base=128, channel_max=16, num_fp16_res=4, conv_clamp=256.0)
    ).eval()
    discriminator_parity.fill_parameters(P)
    _close(
        P.to(device)(reference["patch.patch"], None, force_fp32=True),
        reference["patch.score"],
        SCORE_TOLERANCE,
    )
