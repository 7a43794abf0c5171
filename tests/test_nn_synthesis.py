"""Synthesis blocks/network: skip architecture, fused switch, EG3D backbone size and names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from numerics import assert_close, fan_in_sum

from mimic3d.nn import Discriminator, StyleGAN2Backbone, SynthesisBlock, SynthesisNetwork, upsample2d

MANIFEST = json.loads((Path(__file__).parent / "fixtures" / "nn" / "official_manifest.json").read_text())

# Parameters of the official EG3D backbone (StyleGAN2 Generator, z 512, c 25, w 512, 2 mapping layers,
# 256x256x96, channel_base 32768, channel_max 512), counted by instantiating NVlabs/eg3d's class.
EG3D_BACKBONE_PARAMS = 29_008_301


def shapes(module: torch.nn.Module) -> dict[str, list[int]]:
    return {name: list(t.shape) for name, t in module.state_dict().items()}


def eg3d_backbone(**kwargs) -> StyleGAN2Backbone:
    return StyleGAN2Backbone(
        512,
        25,
        512,
        img_resolution=256,
        img_channels=96,
        mapping_kwargs=dict(num_layers=2),
        channel_base=32768,
        channel_max=512,
        num_fp16_res=0,
        conv_clamp=None,
        **kwargs,
    )


def test_eg3d_backbone_size_and_state_dict_names():
    with torch.device("meta"):  # no memory, no init cost: shapes and names only
        backbone = eg3d_backbone()
    assert sum(p.numel() for p in backbone.parameters()) == EG3D_BACKBONE_PARAMS
    assert MANIFEST["backbone_num_params"] == EG3D_BACKBONE_PARAMS
    assert backbone.num_ws == MANIFEST["backbone_num_ws"] == 14
    assert shapes(backbone) == MANIFEST["backbone"]
    channels = {
        res: getattr(backbone.synthesis, f"b{res}").conv1.weight.shape[0]
        for res in backbone.synthesis.block_resolutions
    }
    assert channels == {4: 512, 8: 512, 16: 512, 32: 512, 64: 512, 128: 256, 256: 128}
    planes = backbone(
        torch.zeros(2, 512, device="meta"), torch.zeros(2, 25, device="meta"), noise_mode="const"
    )
    assert planes.shape == (2, 96, 256, 256)


def test_eg3d_superresolution_blocks_and_dual_discriminator_names():
    with torch.device("meta"):
        no_up = SynthesisBlock(32, 128, w_dim=512, resolution=128, img_channels=3, is_last=False, up=1)
        up = SynthesisBlock(32, 256, w_dim=512, resolution=256, img_channels=3, is_last=False)
        disc = Discriminator(25, 512, 6)
    assert shapes(no_up) == MANIFEST["sr_block_noup"]
    assert shapes(up) == MANIFEST["sr_block_up"]
    official = dict(MANIFEST["dual_discriminator_512"])
    official.pop("resample_filter")  # the dual discriminator's own buffer for resizing image_raw
    assert shapes(disc) == official


def small_network(**kwargs) -> SynthesisNetwork:
    torch.manual_seed(0)
    return SynthesisNetwork(
        w_dim=16, img_resolution=32, img_channels=6, channel_base=256, channel_max=16, **kwargs
    )


def test_synthesis_network_shapes_and_ws_split():
    net = small_network()
    assert net.num_ws == 2 * 4 - 1 + 1  # conv1 at 4x4, conv0+conv1 above, plus the last ToRGB
    ws = torch.randn(3, net.num_ws, 16)
    img = net(ws, noise_mode="const")
    assert img.shape == (3, 6, 32, 32) and img.dtype == torch.float32
    # Block b{r} reads its conv ws plus the next one (its ToRGB shares the next block's first w).
    x = running = None
    for res, start in zip([4, 8, 16, 32], [0, 1, 3, 5]):
        block = getattr(net, f"b{res}")
        x, running = block(
            x, running, ws[:, start : start + block.num_conv + block.num_torgb], noise_mode="const"
        )
    torch.testing.assert_close(img, running, rtol=0, atol=0)  # the same blocks on the same inputs
    with pytest.raises(ValueError, match=r"ws must be \[N, 8, 16\]"):
        net(ws[:, :7])


def test_skip_architecture_adds_torgb_to_upsampled_image():
    torch.manual_seed(1)
    block = SynthesisBlock(8, 4, w_dim=16, resolution=16, img_channels=3, is_last=False)
    x, img, ws = torch.randn(2, 8, 8, 8), torch.randn(2, 3, 8, 8), torch.randn(2, 3, 16)
    img_before = img.clone()
    x_out, img_out = block(x, img, ws, noise_mode="none")
    expected = upsample2d(img_before, block.resample_filter) + block.torgb(x_out, ws[:, 2])
    # The same ToRGB and up-filter (16 taps) as the block, summed in another order.
    assert_close(img_out, expected, terms=16, depth=2)
    no_up = SynthesisBlock(8, 4, w_dim=16, resolution=8, img_channels=3, is_last=False, up=1)
    x_out, img_out = no_up(x, img, ws, noise_mode="none")
    assert_close(img_out, img_before + no_up.torgb(x_out, ws[:, 2]), terms=16, depth=2)
    torch.testing.assert_close(img, img_before)  # the caller's image is never modified


def test_resnet_synthesis_block_and_first_block():
    block = SynthesisBlock(8, 4, w_dim=16, resolution=16, img_channels=3, is_last=True, architecture="resnet")
    x_out, img = block(torch.randn(2, 8, 8, 8), None, torch.randn(2, 3, 16))
    assert x_out.shape == (2, 4, 16, 16) and img.shape == (2, 3, 16, 16)
    first = SynthesisBlock(0, 4, w_dim=16, resolution=4, img_channels=3, is_last=False)
    assert first.num_conv == 1 and first.const.shape == (4, 4, 4)
    x_out, img = first(None, None, torch.randn(5, 2, 16))
    assert x_out.shape == (5, 4, 4, 4) and img.shape == (5, 3, 4, 4)
    with pytest.raises(ValueError, match="x must be"):
        block(torch.randn(2, 8, 16, 16), None, torch.randn(2, 3, 16))


def test_fused_modconv_inference_only_switch():
    net = small_network(fused_modconv_default="inference_only")
    ws = torch.randn(2, net.num_ws, 16)
    fused = net.eval()(ws, noise_mode="const")
    per_sample = net.train()(ws, noise_mode="const")
    assert_close(fused, per_sample, terms=fan_in_sum(net))  # the same sums in another grouping


def test_fp16_blocks_compute_in_float32_on_cpu():
    net = small_network(num_fp16_res=4, conv_clamp=256)
    assert all(getattr(net, f"b{res}").use_fp16 for res in (8, 16, 32)) and not net.b4.use_fp16
    reference = small_network(num_fp16_res=0, conv_clamp=256)
    ws = torch.randn(2, net.num_ws, 16)
    # The same arithmetic, but the fp16 blocks keep their weights channels-last: other conv kernels.
    assert_close(net(ws, noise_mode="const"), reference(ws, noise_mode="const"), terms=fan_in_sum(net))
