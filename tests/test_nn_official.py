"""Equivalence with the official NVlabs/eg3d modules.

The fixture holds only tensors: state dicts (with zero-initialised entries randomised), inputs and
outputs of the official MappingNetwork / SynthesisNetwork, super-resolution blocks and conditional
Discriminator, run on CPU with fixed seeds (config in the file's metadata). Ours must match within
float32 rounding of the modules' reductions; a deliberately wrong constant must not.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from numerics import assert_close, assert_not_close, fan_in_sum
from safetensors import safe_open
from safetensors.torch import load_file

from mimic3d.nn import Discriminator, StyleGAN2Backbone, SynthesisBlock, layers

FIXTURE = Path(__file__).parent / "fixtures" / "nn" / "official_small.safetensors"


@pytest.fixture(scope="module")
def official():
    with safe_open(str(FIXTURE), "pt") as handle:
        config = json.loads(handle.metadata()["config"])
    return load_file(str(FIXTURE)), config


def section(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {key[len(prefix) :]: value for key, value in tensors.items() if key.startswith(prefix)}


def assert_matches(actual: torch.Tensor, expected: torch.Tensor, *modules: torch.nn.Module) -> None:
    # Each output is a chain of the modules' matrix products and convolutions: every path sums at
    # most fan_in_sum terms, so float32 rounding in any summation order stays below that many eps.
    assert actual.shape == expected.shape
    assert_close(actual, expected, terms=sum(fan_in_sum(m) for m in modules))


def load(module: torch.nn.Module, state: dict[str, torch.Tensor]) -> torch.nn.Module:
    result = module.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    return module.eval()


@torch.no_grad()
def test_mapping_and_synthesis_match_official(official):
    tensors, config = official
    backbone = load(StyleGAN2Backbone(**config["G"]), section(tensors, "G.state."))
    z, c = tensors["G.in.z"], tensors["G.in.c"]
    mapping, synthesis = backbone.mapping, backbone.synthesis
    ws = mapping(z, c)
    assert_matches(ws, tensors["G.out.ws"], mapping)
    assert_matches(mapping(z, c, truncation_psi=0.6, truncation_cutoff=3), tensors["G.out.ws_trunc"], mapping)
    ws = tensors["G.out.ws"]
    assert_matches(
        synthesis(ws, noise_mode="const", fused_modconv=True), tensors["G.out.img_const_fused"], synthesis
    )
    assert_matches(
        synthesis(ws, noise_mode="const", fused_modconv=False), tensors["G.out.img_const_unfused"], synthesis
    )
    assert_matches(synthesis(ws, noise_mode="none"), tensors["G.out.img_none"], synthesis)
    torch.manual_seed(123)  # same seed as the official run: random noise is drawn in the same order
    assert_matches(synthesis(ws, noise_mode="random"), tensors["G.out.img_random"], synthesis)
    mapping(z, c, update_emas=True)
    assert_matches(mapping.w_avg, tensors["G.out.w_avg_updated"], mapping)


@torch.no_grad()
def test_superresolution_blocks_match_official(official):
    tensors, config = official
    block0 = load(SynthesisBlock(**config["SR0"], up=1), section(tensors, "SR0.state."))
    block1 = load(SynthesisBlock(**config["SR1"]), section(tensors, "SR1.state."))
    ws = tensors["SR.in.ws"]
    x0, rgb0 = block0(tensors["SR.in.x"], tensors["SR.in.rgb"], ws, noise_mode="const")
    x1, rgb1 = block1(x0, rgb0, ws, noise_mode="const")
    for name, value in [("x0", x0), ("rgb0", rgb0), ("x1", x1), ("rgb1", rgb1)]:
        assert_matches(value, tensors[f"SR.out.{name}"], block0, block1)
    assert x1.abs().max().item() == pytest.approx(config["SR1"]["conv_clamp"])  # the clamp is active


@torch.no_grad()
def test_conditional_discriminator_matches_official(official):
    tensors, config = official
    disc = load(Discriminator(**config["D"]), section(tensors, "D.state."))
    img, c = tensors["D.in.img"], tensors["D.in.c"]
    x, _ = disc.b16(None, img)
    assert_matches(x, tensors["D.out.b16"], disc.b16)
    assert_matches(disc.mapping(None, c), tensors["D.out.cmap"], disc.mapping)
    assert_matches(disc(img, c), tensors["D.out.score"], disc)


@torch.no_grad()
def test_wrong_constants_fail_the_parity_tolerance(official, monkeypatch):
    """A 1% wrong equalised-LR multiplier of the mapping network, and leaky ReLU with slope 0.21
    instead of 0.2 in the synthesis network and the discriminator: the same comparisons must fail."""
    tensors, config = official
    backbone = load(StyleGAN2Backbone(**config["G"]), section(tensors, "G.state."))
    for name in ("fc0", "fc1"):
        getattr(backbone.mapping, name).weight_gain *= 1.01
    ws = backbone.mapping(tensors["G.in.z"], tensors["G.in.c"])
    assert_not_close(ws, tensors["G.out.ws"], terms=fan_in_sum(backbone.mapping))
    lrelu = layers.ACTIVATIONS["lrelu"]
    monkeypatch.setitem(layers.ACTIVATIONS, "lrelu", dataclasses.replace(lrelu, default_alpha=0.21))
    image = backbone.synthesis(tensors["G.out.ws"], noise_mode="none")
    assert_not_close(image, tensors["G.out.img_none"], terms=fan_in_sum(backbone.synthesis))
    disc = load(Discriminator(**config["D"]), section(tensors, "D.state."))
    score = disc(tensors["D.in.img"], tensors["D.in.c"])
    assert_not_close(score, tensors["D.out.score"], terms=fan_in_sum(disc))
