"""Equivalence with the official NVlabs/eg3d modules.

The fixture holds only tensors: state dicts (with zero-initialised entries randomised), inputs and
outputs of the official MappingNetwork / SynthesisNetwork, super-resolution blocks and conditional
Discriminator, run on CPU with fixed seeds (config in the file's metadata).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from mimic3d.nn import Discriminator, StyleGAN2Backbone, SynthesisBlock

FIXTURE = Path(__file__).parent / "fixtures" / "nn" / "official_small.safetensors"
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def official():
    with safe_open(str(FIXTURE), "pt") as handle:
        config = json.loads(handle.metadata()["config"])
    return load_file(str(FIXTURE)), config


def section(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {key[len(prefix) :]: value for key, value in tensors.items() if key.startswith(prefix)}


def assert_matches(actual: torch.Tensor, expected: torch.Tensor) -> None:
    assert actual.shape == expected.shape
    assert (actual - expected).abs().max().item() < TOLERANCE


def load(module: torch.nn.Module, state: dict[str, torch.Tensor]) -> torch.nn.Module:
    result = module.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    return module.eval()


@torch.no_grad()
def test_mapping_and_synthesis_match_official(official):
    tensors, config = official
    backbone = load(StyleGAN2Backbone(**config["G"]), section(tensors, "G.state."))
    z, c = tensors["G.in.z"], tensors["G.in.c"]
    ws = backbone.mapping(z, c)
    assert_matches(ws, tensors["G.out.ws"])
    assert_matches(backbone.mapping(z, c, truncation_psi=0.6, truncation_cutoff=3), tensors["G.out.ws_trunc"])
    ws = tensors["G.out.ws"]
    assert_matches(
        backbone.synthesis(ws, noise_mode="const", fused_modconv=True), tensors["G.out.img_const_fused"]
    )
    assert_matches(
        backbone.synthesis(ws, noise_mode="const", fused_modconv=False), tensors["G.out.img_const_unfused"]
    )
    assert_matches(backbone.synthesis(ws, noise_mode="none"), tensors["G.out.img_none"])
    torch.manual_seed(123)  # same seed as the official run: random noise is drawn in the same order
    assert_matches(backbone.synthesis(ws, noise_mode="random"), tensors["G.out.img_random"])
    backbone.mapping(z, c, update_emas=True)
    assert_matches(backbone.mapping.w_avg, tensors["G.out.w_avg_updated"])


@torch.no_grad()
def test_superresolution_blocks_match_official(official):
    tensors, config = official
    block0 = load(SynthesisBlock(**config["SR0"], up=1), section(tensors, "SR0.state."))
    block1 = load(SynthesisBlock(**config["SR1"]), section(tensors, "SR1.state."))
    ws = tensors["SR.in.ws"]
    x0, rgb0 = block0(tensors["SR.in.x"], tensors["SR.in.rgb"], ws, noise_mode="const")
    x1, rgb1 = block1(x0, rgb0, ws, noise_mode="const")
    for name, value in [("x0", x0), ("rgb0", rgb0), ("x1", x1), ("rgb1", rgb1)]:
        assert_matches(value, tensors[f"SR.out.{name}"])
    assert x1.abs().max().item() == pytest.approx(config["SR1"]["conv_clamp"])  # the clamp is active


@torch.no_grad()
def test_conditional_discriminator_matches_official(official):
    tensors, config = official
    disc = load(Discriminator(**config["D"]), section(tensors, "D.state."))
    img, c = tensors["D.in.img"], tensors["D.in.c"]
    x, _ = disc.b16(None, img)
    assert_matches(x, tensors["D.out.b16"])
    assert_matches(disc.mapping(None, c), tensors["D.out.cmap"])
    assert_matches(disc(img, c), tensors["D.out.score"])
