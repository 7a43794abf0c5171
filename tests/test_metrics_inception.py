"""FID Inception-v3: architecture, TF input handling, state-dict loading, TorchScript equivalence."""

from __future__ import annotations

import pickle
from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from numerics import assert_close, fan_in_sum
from torch import Tensor, nn

from mimic3d.metrics.detector import expected_state_shapes, inception_from_state_dict, load_inception
from mimic3d.metrics.inception import FIDInceptionV3, InceptionE, tf_average_pool, tf_resize_bilinear


def random_inception_state(seed: int = 0) -> dict[str, Tensor]:
    """A pytorch-fid-named state dict (classifier included) with He-scaled random weights."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in expected_state_shapes().items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(0)
        elif key.endswith("conv.weight") or key == "fc.weight":
            fan_in = int(np.prod(shape[1:]))
            state[key] = torch.randn(shape, generator=gen) * (2.0 / fan_in) ** 0.5
        elif key.endswith(("running_var", "bn.weight")):
            state[key] = 0.5 + torch.rand(shape, generator=gen)
        else:  # bn.bias, running_mean, fc.bias
            state[key] = 0.1 * torch.randn(shape, generator=gen)
    return state


def test_parameter_count_and_names_match_tf_inception_v3():
    # torchvision's Inception-v3 has 27,161,264 parameters; minus its aux head (3,326,696) and its
    # 1000-way classifier (2,049,000) leaves the 21,785,568 of the shared backbone.
    model = FIDInceptionV3()
    assert sum(p.numel() for p in model.parameters()) == 21_785_568
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert shapes["Conv2d_1a_3x3.conv.weight"] == [32, 3, 3, 3]
    assert shapes["Mixed_5b.branch_pool.conv.weight"] == [32, 192, 1, 1]
    assert shapes["Mixed_6a.branch3x3.conv.weight"] == [384, 288, 3, 3]
    assert shapes["Mixed_6b.branch7x7_2.conv.weight"] == [128, 128, 1, 7]
    assert shapes["Mixed_7b.branch3x3dbl_1.conv.weight"] == [448, 1280, 1, 1]
    assert shapes["Mixed_7c.branch_pool.conv.weight"] == [192, 2048, 1, 1]
    assert shapes["Mixed_7c.branch3x3_2b.bn.running_var"] == [384]


def legacy_resize_reference(image: np.ndarray, size: int) -> np.ndarray:
    """TensorFlow 1 ``resize_bilinear`` (align_corners=False): source = target * in / out, clamped."""

    def axis_weights(n_in: int) -> np.ndarray:
        matrix = np.zeros((size, n_in))
        for j in range(size):
            src = j * n_in / size
            lo = int(np.floor(src))
            hi = min(lo + 1, n_in - 1)
            matrix[j, lo] += 1 - (src - lo)
            matrix[j, hi] += src - lo
        return matrix

    rows, cols = axis_weights(image.shape[-2]), axis_weights(image.shape[-1])
    return rows @ image @ cols.T


@pytest.mark.parametrize("height,width", [(40, 56), (299, 299), (512, 384)])
def test_tf_resize_matches_tensorflow_legacy_bilinear(height, width):
    image = torch.rand(2, 3, height, width, generator=torch.Generator().manual_seed(1)) * 255
    ours = tf_resize_bilinear(image, 299)
    reference = legacy_resize_reference(image.double().numpy(), 299)
    assert ours.shape == (2, 3, 299, 299)
    np.testing.assert_allclose(ours.numpy(), reference, atol=0.02)  # float32 grid on a 0..255 scale


def test_average_pool_ignores_padding_like_tensorflow():
    ones = torch.ones(1, 2, 5, 5)
    assert torch.equal(tf_average_pool(ones), ones)  # counting the zero padding would darken the border


def test_last_block_pools_its_side_branch_with_max():
    def block(max_pool: bool) -> InceptionE:
        torch.manual_seed(0)
        module = InceptionE(4, max_pool=max_pool).eval()
        with torch.no_grad():  # side branch = channel 0 of the pooled input, other branches irrelevant
            module.branch_pool.conv.weight.zero_()
            module.branch_pool.conv.weight[:, 0] = 1
            module.branch_pool.bn.running_var.fill_(1 - module.branch_pool.bn.eps)
        return module

    spike = torch.zeros(1, 4, 5, 5)
    spike[0, 0, 2, 2] = 9.0
    side_max = block(True)(spike)[0, -192:]
    side_avg = block(False)(spike)[0, -192:]
    assert torch.allclose(side_max[0, 1:4, 1:4], torch.full((3, 3), 9.0))  # max spreads the full value
    assert torch.allclose(side_avg[0, 1:4, 1:4], torch.full((3, 3), 1.0))  # 9 / 9 neighbours
    assert FIDInceptionV3().Mixed_7c.max_pool and not FIDInceptionV3().Mixed_7b.max_pool


class DetectorLike(nn.Module):
    """Our network behind NVIDIA's detector calling convention: uint8 in, ``return_features`` flag."""

    def __init__(self, net: FIDInceptionV3, fc: nn.Linear) -> None:
        super().__init__()
        self.net = net
        self.fc = fc

    def forward(self, img: Tensor, return_features: bool = False) -> Tensor:
        features = self.net(img.to(torch.float32))
        if return_features:
            return features
        return F.softmax(self.fc(features), dim=1)


@pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:DeprecationWarning")
def test_state_dict_and_torchscript_detectors_agree(tmp_path):
    state = random_inception_state()
    state_file = tmp_path / "random_inception.pth"
    torch.save(state, state_file)
    from_state = load_inception(state_file)
    assert from_state.info["form"] == "state_dict" and from_state.standard and not from_state.info["verified"]
    loaded = from_state.module.state_dict()
    assert all(torch.equal(loaded[k], state[k]) for k in loaded)

    net = FIDInceptionV3().eval()
    net.load_state_dict({k: v for k, v in state.items() if not k.startswith("fc.")})
    fc = nn.Linear(2048, 1008)
    fc.load_state_dict({"weight": state["fc.weight"], "bias": state["fc.bias"]})
    script_file = tmp_path / "scripted_detector.pt"
    torch.jit.save(torch.jit.script(DetectorLike(net, fc).eval()), str(script_file))
    from_script = load_inception(script_file)
    assert from_script.info["form"] == "torchscript"

    gen = torch.Generator().manual_seed(3)
    images = torch.randint(0, 256, (2, 3, 24, 32), dtype=torch.uint8, generator=gen)
    a, b = from_state(images), from_script(images)
    assert a.shape == (2, 2048) and a.dtype == torch.float32
    assert a.std() > 0 and not torch.allclose(a[0], a[1])
    assert_close(a, b, terms=fan_in_sum(net))  # TorchScript may run other kernels for the same network


def test_optional_and_bad_tensors():
    state = {k: torch.zeros(v) for k, v in expected_state_shapes().items()}
    trimmed = {k: v for k, v in state.items() if not k.startswith("fc.") and "num_batches" not in k}
    inception_from_state_dict(trimmed, "trimmed")  # classifier and BN counters are optional

    broken = dict(state)
    del broken["Mixed_6c.branch7x7_3.conv.weight"]
    with pytest.raises(ValueError, match="missing 1 tensors.*Mixed_6c.branch7x7_3.conv.weight"):
        inception_from_state_dict(broken, "broken.pth")
    reshaped = dict(state, **{"Mixed_5b.branch1x1.conv.weight": torch.zeros(64, 192, 3, 3)})
    with pytest.raises(ValueError, match=r"Mixed_5b.branch1x1.conv.weight: \[64, 192, 3, 3\]"):
        inception_from_state_dict(reshaped, "reshaped.pth")
    with pytest.raises(ValueError, match="unexpected 1 tensors"):
        inception_from_state_dict(dict(state, foo=torch.zeros(1)), "extra.pth")
    with pytest.raises(ValueError, match="expected a state dict"):
        inception_from_state_dict([torch.zeros(1)], "list.pth")


def test_pickled_detectors_are_refused_without_unpickling(tmp_path):
    path = tmp_path / "inception-2015-12-05.pkl"
    path.write_bytes(pickle.dumps(Fraction(1, 3), protocol=2))
    with pytest.raises(ValueError, match=r"never unpickled.*inception-2015-12-05\.pt"):
        load_inception(path)
