"""FIR resampling (upfirdn2d family) against explicit convolutions and a slow loop reference."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from numerics import assert_close
from scipy.signal import convolve2d

from mimic3d.nn import conv2d_resample, downsample2d, filter2d, setup_filter, upfirdn2d, upsample2d


def zero_insert(x: np.ndarray, up_x: int, up_y: int) -> np.ndarray:
    """[..., H, W] -> [..., H*up_y, W*up_x] with samples at multiples of the factors."""
    out = np.zeros(x.shape[:-2] + (x.shape[-2] * up_y, x.shape[-1] * up_x), dtype=x.dtype)
    out[..., ::up_y, ::up_x] = x
    return out


def convolve_each(x: np.ndarray, f: np.ndarray, mode: str = "valid") -> np.ndarray:
    """True 2-D convolution of every [H, W] image of x [N, C, H, W] with f [fh, fw] (scipy)."""
    return np.stack([np.stack([convolve2d(img, f, mode=mode) for img in sample]) for sample in x])


def upfirdn2d_loop(x, f, up, down, pad, flip_filter, gain):
    """Definition-level reference: explicit loops over output pixels and filter taps."""
    (ux, uy), (dx, dy), (px0, px1, py0, py1) = up, down, pad
    f2 = f if f.ndim == 2 else np.outer(f, f)
    f2 = f2 * gain
    fh, fw = f2.shape
    upsampled = zero_insert(x, ux, uy)
    height, width = upsampled.shape[-2:]
    valid_h = height + py0 + py1 - fh + 1
    valid_w = width + px0 + px1 - fw + 1
    out = np.zeros(x.shape[:2] + (-(-valid_h // dy), -(-valid_w // dx)))
    for oy, ox in itertools.product(range(out.shape[2]), range(out.shape[3])):
        acc = np.zeros(x.shape[:2])
        for ky, kx in itertools.product(range(fh), range(fw)):
            sy, sx = oy * dy + ky - py0, ox * dx + kx - px0  # position in the upsampled image
            if 0 <= sy < height and 0 <= sx < width:
                tap = f2[ky, kx] if flip_filter else f2[fh - 1 - ky, fw - 1 - kx]
                acc += upsampled[:, :, sy, sx] * tap
        out[:, :, oy, ox] = acc
    return out


def test_setup_filter_is_normalised_outer_product():
    f = setup_filter([1, 3, 3, 1])
    taps = torch.tensor([1.0, 3.0, 3.0, 1.0])
    torch.testing.assert_close(f, torch.outer(taps, taps) / 64)
    assert f.dtype == torch.float32 and f.sum().item() == pytest.approx(1.0)
    assert setup_filter(list(range(1, 9))).ndim == 1  # 8+ taps stay separable, as in EG3D
    torch.testing.assert_close(setup_filter([1, 2, 1], gain=4.0).sum(), torch.tensor(4.0))
    torch.testing.assert_close(
        setup_filter([1, 2], flip_filter=True), torch.tensor([[4.0, 2.0], [2.0, 1.0]]) / 9
    )
    with pytest.raises(ValueError, match="filter"):
        setup_filter(torch.ones(2, 2, 2))


@pytest.mark.parametrize("taps", [[1, 3, 3, 1], [1, 2, 3, 4]])
def test_upsample2d_matches_zero_insertion_and_gain_4_filter(taps):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 5, 7))
    explicit = np.outer(taps, taps) / np.sum(taps) ** 2 * 4  # gain up^2 keeps the mean level
    # Pad so that the 4-tap kernel is centred between input samples: 2 before, 1 after.
    upsampled = np.pad(zero_insert(x, 2, 2), [(0, 0), (0, 0), (2, 1), (2, 1)])
    expected = convolve_each(upsampled, explicit)
    out = upsample2d(torch.from_numpy(x).float(), setup_filter(taps))
    assert out.shape == (2, 3, 10, 14)
    # float32 FIR filters against float64 references: each output sums the filter's taps.
    assert_close(out, expected, terms=16)


def test_upsample2d_preserves_constant_images():
    out = upsample2d(torch.full([1, 2, 6, 6], 3.0), setup_filter([1, 3, 3, 1]))
    torch.testing.assert_close(out[..., 2:-2, 2:-2], torch.full([1, 2, 8, 8], 3.0))


@pytest.mark.parametrize("taps", [[1, 3, 3, 1], [1, 2, 3, 4]])
def test_downsample2d_matches_filter_then_decimate(taps):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 8, 6))
    explicit = np.outer(taps, taps) / np.sum(taps) ** 2
    expected = convolve_each(np.pad(x, [(0, 0), (0, 0), (1, 1), (1, 1)]), explicit)[:, :, ::2, ::2]
    out = downsample2d(torch.from_numpy(x).float(), setup_filter(taps))
    assert out.shape == (2, 3, 4, 3)
    assert_close(out, expected, terms=16)


def test_filter2d_keeps_size_and_padding_extends_it():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 2, 6, 5))
    taps = [1, 2, 3, 4]
    explicit = np.outer(taps, taps) / 100
    full = convolve_each(x, explicit, mode="full")  # [.., 9, 8]
    out = filter2d(torch.from_numpy(x).float(), setup_filter(taps))
    assert_close(out, full[:, :, 1:7, 1:6], terms=16)
    padded = filter2d(torch.from_numpy(x).float(), setup_filter(taps), padding=1)
    assert_close(padded, full[:, :, 0:8, 0:7], terms=16)


CASES = [
    # (taps, separable, up, down, padding, flip_filter, gain)
    ([1, 3, 3, 1], False, (2, 2), (1, 1), (2, 1, 2, 1), False, 4.0),
    ([1, 3, 3, 1], False, (1, 1), (2, 2), (1, 1, 1, 1), False, 1.0),
    ([1, 2, 3, 4], False, (2, 2), (1, 1), (0, 0, 0, 0), False, 1.0),
    ([1, 2, 3, 4], False, (2, 2), (1, 1), (-1, 3, 2, -2), True, 2.0),
    ([1, 2, 3, 4], True, (3, 2), (1, 1), (1, 2, 0, 3), False, 1.0),
    ([1, 2, 3, 4], True, (1, 1), (2, 3), (2, -1, 1, 1), True, 1.0),
    ([1, 2, 3, 4, 5], False, (2, 2), (3, 2), (1, 1, 2, 2), False, 1.0),
    ([1, 2, 3, 4, 5], False, (1, 1), (1, 1), (-1, 2, 0, -1), False, 1.5),
    ([2], False, (2, 3), (1, 1), (0, 0, 0, 0), False, 1.0),
]


@pytest.mark.parametrize("taps, separable, up, down, pad, flip_filter, gain", CASES)
def test_upfirdn2d_matches_loop_reference(taps, separable, up, down, pad, flip_filter, gain):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 6, 5))
    f = setup_filter(taps, separable=separable if len(taps) > 1 else None, normalize=False)
    expected = upfirdn2d_loop(x, f.double().numpy(), up, down, pad, flip_filter, gain)
    out = upfirdn2d(
        torch.from_numpy(x).float(),
        f,
        up=list(up),
        down=list(down),
        padding=list(pad),
        flip_filter=flip_filter,
        gain=gain,
    )
    assert out.shape == expected.shape
    assert_close(out, expected, terms=len(taps) ** 2)


def test_upfirdn2d_non_square_filter_and_identity():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 2, 5, 6))
    f = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    expected = upfirdn2d_loop(x, f.double().numpy(), (2, 1), (1, 2), (1, 0, 0, 2), False, 1.0)
    out = upfirdn2d(torch.from_numpy(x).float(), f, up=[2, 1], down=[1, 2], padding=[1, 0, 0, 2])
    assert_close(out, expected, terms=6)
    xt = torch.from_numpy(x).float()
    torch.testing.assert_close(upfirdn2d(xt, None), xt)


def test_upfirdn2d_rejects_bad_input():
    f = setup_filter([1, 3, 3, 1])
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        upfirdn2d(torch.zeros(3, 8, 8), f)
    with pytest.raises(ValueError, match="smaller than the filter"):
        upfirdn2d(torch.zeros(1, 1, 2, 2), f)
    with pytest.raises(ValueError, match="up"):
        upfirdn2d(torch.zeros(1, 1, 8, 8), f, up=0)
    with pytest.raises(ValueError, match="padding"):
        upfirdn2d(torch.zeros(1, 1, 8, 8), f, padding=[1, 2, 3])


@pytest.mark.parametrize("flip_weight", [True, False])
def test_conv2d_resample_up_is_transposed_conv_then_filter(flip_weight):
    torch.manual_seed(0)
    x = torch.randn(2, 4, 5, 6)
    w = torch.randn(3, 4, 3, 3)
    f = setup_filter([1, 3, 3, 1])
    out = conv2d_resample(x, w, f=f, up=2, padding=1, flip_weight=flip_weight)
    # Explicit composition: full transposed conv (a convolution with w), full gain-4 filter,
    # then the 2H x 2W window centred like the official op (offset 2 into the full result).
    w_conv = w.flip([2, 3]) if flip_weight else w
    full = F.conv_transpose2d(x, w_conv.transpose(0, 1), stride=2)  # [2, 3, 11, 13]
    kernel = (f * 4).flip([0, 1])[None, None].repeat(3, 1, 1, 1)
    full = F.conv2d(F.pad(full, [3, 3, 3, 3]), kernel, groups=3)  # [2, 3, 14, 16]
    assert out.shape == (2, 3, 10, 12)
    # A 3x3 convolution over 4 channels and a 4x4 filter, in another order than the fused op.
    assert_close(out, full[:, :, 2:12, 2:14], terms=36, depth=2)


def test_conv2d_resample_down_is_filter_then_strided_conv():
    torch.manual_seed(1)
    x = torch.randn(2, 4, 8, 10)
    w = torch.randn(5, 4, 3, 3)
    f = setup_filter([1, 3, 3, 1])
    out = conv2d_resample(x, w, f=f, down=2, padding=1)
    kernel = f.flip([0, 1])[None, None].repeat(4, 1, 1, 1)
    filtered = F.conv2d(F.pad(x, [2, 2, 2, 2]), kernel, groups=4)
    expected = F.conv2d(filtered, w, stride=2)
    assert out.shape == (2, 5, 4, 5)
    assert_close(out, expected, terms=36, depth=2)


def test_conv2d_resample_1x1_paths_and_groups():
    torch.manual_seed(2)
    f = setup_filter([1, 3, 3, 1])
    x = torch.randn(2, 6, 8, 8)
    w = torch.randn(4, 3, 1, 1)  # two groups of 3 -> 2
    expected = upsample2d(F.conv2d(x, w, groups=2), f)
    assert_close(conv2d_resample(x, w, f=f, up=2, groups=2), expected, terms=16, depth=2)
    expected = F.conv2d(downsample2d(x, f), w, groups=2)
    assert_close(conv2d_resample(x, w, f=f, down=2, groups=2), expected, terms=16, depth=2)
    w3 = torch.randn(4, 3, 3, 3)
    torch.testing.assert_close(
        conv2d_resample(x, w3, padding=1, groups=2), F.conv2d(x, w3, padding=1, groups=2)
    )


def test_conv2d_resample_grouped_up_equals_per_group():
    torch.manual_seed(3)
    f = setup_filter([1, 3, 3, 1])
    x = torch.randn(1, 6, 5, 5)
    w = torch.randn(8, 3, 3, 3)
    grouped = conv2d_resample(x, w, f=f, up=2, padding=1, groups=2)
    split = torch.cat(
        [
            conv2d_resample(x[:, 3 * g : 3 * g + 3], w[4 * g : 4 * g + 4], f=f, up=2, padding=1)
            for g in range(2)
        ],
        dim=1,
    )
    assert_close(grouped, split, terms=27, depth=2)


def test_conv2d_resample_rejects_bad_input():
    with pytest.raises(ValueError, match="dtype"):
        conv2d_resample(torch.zeros(1, 2, 4, 4), torch.zeros(2, 2, 3, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="up, down"):
        conv2d_resample(torch.zeros(1, 2, 4, 4), torch.zeros(2, 2, 3, 3), up=0)


@pytest.fixture
def one_thread():
    """gradcheck runs thousands of tiny ops; thread hand-offs dominate them on a loaded machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def test_gradients_and_second_order_gradients(one_thread):
    # R1 needs gradients of gradients through the discriminator's resampling convolutions.
    torch.manual_seed(4)
    f = setup_filter([1, 3, 3, 1])
    x = torch.randn(1, 4, 4, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    w1 = torch.randn(4, 2, 1, 1, dtype=torch.float64, requires_grad=True)
    w_dense = torch.randn(2, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: upfirdn2d(x, f, up=2, padding=[2, 1, 0, 3]), (x,))
    assert torch.autograd.gradcheck(
        lambda x, w: conv2d_resample(x, w, f=f, up=2, padding=1, groups=2), (x, w)
    )
    assert torch.autograd.gradcheck(lambda x, w: conv2d_resample(x, w, groups=2), (x, w1))
    assert torch.autograd.gradgradcheck(
        lambda x, w: conv2d_resample(x, w, f=f, down=2, padding=1), (x, w_dense)
    )
