"""Discriminator pieces: minibatch-std, resnet block, conditional projection, full network."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from numerics import assert_close

from mimic3d.nn import Discriminator, DiscriminatorBlock, DiscriminatorEpilogue, MinibatchStdLayer


@pytest.mark.parametrize("num_channels", [1, 2])
def test_minibatch_std_matches_hand_computation(num_channels):
    torch.manual_seed(0)
    x = torch.randn(8, 6, 3, 3)
    out = MinibatchStdLayer(group_size=4, num_channels=num_channels)(x)
    assert out.shape == (8, 6 + num_channels, 3, 3)
    torch.testing.assert_close(out[:, :6], x)
    data = x.double().numpy()
    per_group = 6 // num_channels
    for i in range(8):
        members = [j for j in range(8) if j % 2 == i % 2]  # groups are {0,2,4,6} and {1,3,5,7}
        for f in range(num_channels):
            chunk = data[members, f * per_group : (f + 1) * per_group]  # [4, c, H, W]
            std = np.sqrt(chunk.var(axis=0) + 1e-8)  # population variance over the group
            expected = np.full((3, 3), std.mean())
            # Variance over the group of 4, then the mean over the channel's c x 3 x 3 entries.
            assert_close(out[i, 6 + f], expected, terms=4 + per_group * 9, depth=2, dtype=torch.float32)


def test_minibatch_std_small_batch_and_bad_batch():
    x = torch.randn(2, 4, 2, 2)
    out = MinibatchStdLayer(group_size=4)(x)  # group shrinks to the batch
    expected = (x.var(dim=0, unbiased=False) + 1e-8).sqrt().mean()
    torch.testing.assert_close(out[:, 4], expected.expand(2, 2, 2))
    with pytest.raises(ValueError, match="divisible"):
        MinibatchStdLayer(group_size=4)(torch.randn(6, 4, 2, 2))


def test_epilogue_projection_score():
    torch.manual_seed(1)
    epilogue = DiscriminatorEpilogue(16, cmap_dim=8, resolution=4, img_channels=3)
    x, cmap = torch.randn(4, 16, 4, 4), torch.randn(4, 8)
    captured = {}
    epilogue.out.register_forward_hook(lambda module, args, output: captured.setdefault("out", output))
    score = epilogue(x, None, cmap)
    assert score.shape == (4, 1)
    torch.testing.assert_close(score, (captured["out"] * cmap).sum(dim=1, keepdim=True) / math.sqrt(8))
    unconditional = DiscriminatorEpilogue(16, cmap_dim=0, resolution=4, img_channels=3)
    assert unconditional(x, None, None).shape == (4, 1)
    with pytest.raises(ValueError, match="cmap"):
        epilogue(x, None, torch.randn(4, 5))


def test_resnet_block_is_scaled_sum_of_skip_and_main_path():
    torch.manual_seed(2)
    block = DiscriminatorBlock(0, 8, 16, resolution=16, img_channels=3, first_layer_idx=0)
    img = torch.randn(2, 3, 16, 16)
    x, img_out = block(None, img)
    assert x.shape == (2, 16, 8, 8) and img_out is None
    features = block.fromrgb(img)
    expected = block.skip(features, gain=math.sqrt(0.5)) + block.conv1(
        block.conv0(features), gain=math.sqrt(0.5)
    )
    torch.testing.assert_close(x, expected)
    assert block.skip.bias is None and block.skip.weight.shape == (16, 8, 1, 1)
    assert block.num_layers == 4


def test_skip_block_downsamples_image_and_freezing():
    block = DiscriminatorBlock(
        8, 8, 16, resolution=16, img_channels=3, first_layer_idx=2, architecture="skip", freeze_layers=4
    )
    x, img = block(torch.randn(2, 8, 16, 16), torch.randn(2, 3, 16, 16))
    assert x.shape == (2, 16, 8, 8) and img.shape == (2, 3, 8, 8)
    # Layers 2 and 3 of the discriminator (fromrgb, conv0) are frozen, layer 4 (conv1) is not.
    assert [name for name, _ in block.named_parameters()] == ["conv1.weight", "conv1.bias"]
    with pytest.raises(ValueError, match="in_channels"):
        DiscriminatorBlock(4, 8, 16, resolution=16, img_channels=3, first_layer_idx=0)


def test_conditional_discriminator_structure_and_forward():
    torch.manual_seed(3)
    disc = Discriminator(c_dim=25, img_resolution=32, img_channels=6, channel_base=256, channel_max=32)
    assert disc.block_resolutions == [32, 16, 8]
    assert disc.mapping.num_layers == 8 and disc.mapping.num_ws is None
    state = disc.state_dict()
    assert state["b32.fromrgb.weight"].shape == (8, 6, 1, 1)
    assert state["b16.conv1.weight"].shape == (32, 16, 3, 3)
    assert state["b4.out.weight"].shape == (32, 32)  # cmap_dim defaults to the 4x4 channel count
    assert state["mapping.embed.weight"].shape == (32, 25)
    assert "mapping.fc7.weight" in state and "mapping.w_avg" not in state
    img, c = torch.randn(4, 6, 32, 32), torch.randn(4, 25)
    score = disc(img, c)
    assert score.shape == (4, 1) and score.dtype == torch.float32
    assert not torch.allclose(disc(img, -c), score)
    with pytest.raises(ValueError, match=r"img must be \[N, 6, 32, 32\]"):
        disc(torch.randn(4, 3, 32, 32), c)
    assert Discriminator(c_dim=0, img_resolution=16, img_channels=3)(
        torch.randn(2, 3, 16, 16), None
    ).shape == (2, 1)
