"""The 25-float label: packing, validation errors, mirroring, the Camera dataclass."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from numerics import POSE, assert_close

from mimic3d.camera import (
    Camera,
    intrinsics_matrix,
    make_label,
    mirror_label,
    orbit_cam2world,
    split_label,
    validate_label,
)

FRONTAL = torch.tensor(
    [[1.0, 0.0, 0.0, 0.0], [0.0, -1.0, 0.0, 0.0], [0.0, 0.0, -1.0, 2.7], [0.0, 0.0, 0.0, 1.0]]
)
FFHQ_K = torch.tensor([[4.2647, 0.0, 0.5], [0.0, 4.2647, 0.5], [0.0, 0.0, 1.0]])


def _labels(n: int) -> torch.Tensor:
    yaw = torch.linspace(0.5, 2.5, n)
    pitch = torch.linspace(1.0, 2.0, n)
    return make_label(orbit_cam2world(yaw, pitch, 2.7, (0.0, 0.0, 0.2)), FFHQ_K)


def test_frontal_label_layout_by_hand():
    c = make_label(FRONTAL, FFHQ_K)
    assert c.shape == (25,)
    assert c[[3, 7, 11]].tolist() == pytest.approx([0.0, 0.0, 2.7])
    assert c[16:].tolist() == pytest.approx([4.2647, 0, 0.5, 0, 4.2647, 0.5, 0, 0, 1])
    # The EG3D frontal camera: right (1,0,0), down (0,-1,0), forward (0,0,-1) as columns.
    assert_close(make_label(orbit_cam2world(math.pi / 2, math.pi / 2), FFHQ_K), c, **POSE)


def test_make_split_round_trip_and_broadcast():
    poses = orbit_cam2world(torch.tensor([[1.0, 1.4, 2.0]]), torch.tensor([[1.2], [1.9]]))
    c = make_label(poses, FFHQ_K)  # one intrinsics matrix for a [2, 3] batch of poses
    assert c.shape == (2, 3, 25)
    pose_back, k_back = split_label(c)
    torch.testing.assert_close(pose_back, poses)
    torch.testing.assert_close(k_back, FFHQ_K.expand(2, 3, 3, 3))
    with pytest.raises(ValueError, match="do not broadcast"):
        make_label(poses, FFHQ_K.expand(4, 3, 3))


def test_accepts_numpy_and_lists_and_keeps_float64():
    c64 = make_label(FRONTAL.double().numpy(), FFHQ_K.tolist())
    assert c64.dtype == torch.float64
    validate_label(c64.numpy())
    validate_label(c64.tolist())
    assert split_label(c64.tolist())[0].dtype == torch.float32


def test_validate_accepts_real_batches():
    validate_label(_labels(7))
    validate_label(_labels(6).reshape(2, 3, 25))
    validate_label(torch.zeros(0, 25))


def _corrupt(index: int, edit) -> torch.Tensor:
    c = _labels(5)
    pose, k = split_label(c)
    pose, k = pose.clone(), k.clone()
    edit(pose[index], k[index])
    return make_label(pose, k)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda p, k: p[:3, 0].mul_(1.1),
            r"camera\[3\]: rotation is not orthonormal \(\|R\^T R - I\| = 0\.21\)",
        ),
        (
            lambda p, k: p[1, 3].fill_(float("nan")),
            r"camera\[3\]: non-finite value nan at position 7 \(cam2world\[1, 3\]\)",
        ),
        (
            lambda p, k: k[1, 1].fill_(float("inf")),
            r"camera\[3\]: non-finite value inf at position 20 \(intrinsics\[1, 1\]\)",
        ),
        (
            lambda p, k: p[3, 2].fill_(0.5),
            r"camera\[3\]: cam2world last row must be \[0, 0, 0, 1\], got \[0, 0, 0\.5, 1\]",
        ),
        (lambda p, k: p[:3, 0].neg_(), r"camera\[3\]: rotation has determinant -1, a reflection"),
        (
            lambda p, k: k[0, 0].fill_(0.0),
            r"camera\[3\]: focal length must be positive, got fx = 0, fy = 4\.2647",
        ),
        (
            lambda p, k: k[1, 1].fill_(-2.0),
            r"camera\[3\]: focal length must be positive, got fx = 4\.2647, fy = -2",
        ),
        (lambda p, k: k[2, 0].fill_(1.0), r"camera\[3\]: intrinsics last row must be \[0, 0, 1\]"),
    ],
)
def test_validate_names_the_bad_entry(edit, message):
    with pytest.raises(ValueError, match=message):
        validate_label(_corrupt(3, edit))


def test_validate_shape_errors_and_batch_index():
    with pytest.raises(ValueError, match=r"camera: expected 25 floats per label .* got 24"):
        validate_label(torch.zeros(24))
    with pytest.raises(ValueError, match=r"labels: expected 25 floats .* got 26 \(shape \[2, 26\]\)"):
        validate_label(torch.zeros(2, 26), name="labels")
    with pytest.raises(ValueError, match="got a scalar"):
        validate_label(3.0)
    with pytest.raises(ValueError, match="expected real numbers"):
        validate_label(["a"] * 25)
    c = _labels(6).reshape(2, 3, 25).clone()
    c[1, 2, 20] = 0.0
    c[1, 1, 20] = 0.0
    with pytest.raises(ValueError, match=r"camera\[1, 1\]: focal .* \(and 1 more bad labels\)"):
        validate_label(c)
    c = make_label(FRONTAL, FFHQ_K)
    c[2] = float("nan")
    with pytest.raises(ValueError, match=r"^camera: non-finite"):
        validate_label(c)


def test_mirror_negates_the_documented_entries():
    c = _labels(4)
    m = mirror_label(c)
    flipped = [1, 2, 3, 4, 8]
    torch.testing.assert_close(m[:, flipped], -c[:, flipped])
    kept = [i for i in range(25) if i not in flipped]
    torch.testing.assert_close(m[:, kept], c[:, kept])  # EG3D intrinsics (cx = 0.5) unchanged
    torch.testing.assert_close(mirror_label(m), c)
    validate_label(m)


def test_mirror_equals_yaw_reflection_about_frontal():
    k = intrinsics_matrix(4.2647)
    left = make_label(orbit_cam2world(math.pi / 2 + 0.4, math.pi / 2 - 0.2, 2.7, (0, 0, 0.2)), k)
    right = make_label(orbit_cam2world(math.pi / 2 - 0.4, math.pi / 2 - 0.2, 2.7, (0, 0, 0.2)), k)
    assert_close(mirror_label(left), right, **POSE)
    assert left[3] > 0 > right[3]  # larger EG3D yaw puts the camera on +x


def test_mirror_moves_off_centre_principal_point():
    c = make_label(FRONTAL, intrinsics_matrix(2.0, cx=0.3, cy=0.6))
    _, k = split_label(mirror_label(c))
    assert k[0, 2].item() == pytest.approx(0.7)
    assert k[1, 2].item() == pytest.approx(0.6)


def test_camera_dataclass_wraps_the_label_functions():
    c = _labels(3)
    cam = Camera.from_label(c)
    torch.testing.assert_close(cam.to_label(), c)
    torch.testing.assert_close(cam.mirror().to_label(), mirror_label(c))
    torch.testing.assert_close(cam.origin, c[:, [3, 7, 11]])
    assert cam.validate() is cam
    with pytest.raises(ValueError, match=r"views\[0\]: focal"):
        Camera(cam.cam2world, FFHQ_K * torch.tensor([0.0, 1.0, 1.0])[:, None]).validate("views")


def test_numpy_label_mirror():
    c = _labels(2).numpy()
    assert isinstance(mirror_label(c), torch.Tensor)
    np.testing.assert_allclose(mirror_label(c)[:, 3].numpy(), -c[:, 3])
