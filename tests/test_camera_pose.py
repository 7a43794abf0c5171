"""Look-at, EG3D's orbit parameterisation, intrinsics and presets against hand-computed cameras."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from numerics import POSE, assert_close

from mimic3d.camera import (
    PRESETS,
    focal_to_fov,
    fov_to_focal,
    intrinsics_matrix,
    look_at,
    make_label,
    orbit_cam2world,
    orbit_origin,
    validate_label,
)


def _assert_pose(pose: torch.Tensor, right, down, forward, origin) -> None:
    expected = torch.eye(4, dtype=pose.dtype)
    expected[:3, 0] = torch.tensor(right, dtype=pose.dtype)
    expected[:3, 1] = torch.tensor(down, dtype=pose.dtype)
    expected[:3, 2] = torch.tensor(forward, dtype=pose.dtype)
    expected[:3, 3] = torch.tensor(origin, dtype=pose.dtype)
    assert_close(pose, expected, **POSE)


def test_frontal_camera_by_hand():
    pose = orbit_cam2world(math.pi / 2, math.pi / 2, radius=2.7)
    _assert_pose(pose, (1, 0, 0), (0, -1, 0), (0, 0, -1), (0, 0, 2.7))
    _assert_pose(look_at([0.0, 0.0, 2.7]), (1, 0, 0), (0, -1, 0), (0, 0, -1), (0, 0, 2.7))


def test_side_and_elevated_cameras_by_hand():
    # yaw = pi: camera on +x looking down -x; its right is -z.
    _assert_pose(orbit_cam2world(math.pi, math.pi / 2, 2.0), (0, 0, -1), (0, -1, 0), (-1, 0, 0), (2, 0, 0))
    # pitch v = pi/4 maps to polar angle arccos(1 - 2 v / pi) = pi/3: height r cos(pi/3), above.
    origin = orbit_origin(math.pi / 2, math.pi / 4, 2.0)
    assert_close(origin, torch.tensor([0.0, 1.0, math.sqrt(3.0)]), **POSE)
    # Poles are clamped (EG3D) so the camera never looks along up.
    assert orbit_origin(0.3, 0.0, 1.0)[1] == pytest.approx(1.0, abs=1e-4)
    validate_label(
        make_label(orbit_cam2world(0.3, torch.tensor([0.0, math.pi]), 1.0), intrinsics_matrix(1.0))
    )


def test_look_at_points_forward_at_pivot():
    pivot = torch.tensor([0.0, 0.0, 0.2])
    pose = orbit_cam2world(math.pi / 2 + 0.5, math.pi / 2 - 0.3, 2.7, pivot)
    origin, forward = pose[:3, 3], pose[:3, 2]
    assert_close(forward, (pivot - origin) / (pivot - origin).norm(), **POSE)
    assert_close(origin.norm(), torch.tensor(2.7), **POSE)  # the pivot changes direction, not radius
    # The pivot projects onto the principal point.
    pivot_cam = torch.linalg.inv(pose) @ torch.cat([pivot, torch.ones(1)])
    uv = intrinsics_matrix(4.2647) @ (pivot_cam[:3] / pivot_cam[2])
    assert_close(uv[:2], torch.tensor([0.5, 0.5]), terms=3, depth=6, scale=4.3)  # + inverse, intrinsics
    # Straight on: from (0, 0, 2.7) the pivot (0, 0, 0.2) is straight ahead.
    _assert_pose(look_at([0.0, 0.0, 2.7], pivot), (1, 0, 0), (0, -1, 0), (0, 0, -1), (0, 0, 2.7))


def test_look_at_no_roll_and_broadcasting():
    origins = torch.randn(4, 5, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    pose = look_at(origins, torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64))
    assert pose.shape == (4, 5, 4, 4) and pose.dtype == torch.float64
    rotation = pose[..., :3, :3]
    torch.testing.assert_close(
        rotation.transpose(-1, -2) @ rotation, torch.eye(3, dtype=torch.float64).expand(4, 5, 3, 3)
    )
    assert torch.allclose(torch.linalg.det(rotation), torch.ones(4, 5, dtype=torch.float64))
    assert pose[..., 1, 0].abs().max() < 1e-12  # no roll: the right axis stays horizontal
    assert (pose[..., 1, 1] <= 0).all()  # image down never points up in the world


def test_look_at_is_differentiable():
    origin = torch.tensor([0.3, 0.4, 2.5], dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(
        lambda o: look_at(o, torch.tensor([0.0, 0.1, 0.2], dtype=torch.float64)), (origin,)
    )


def test_orbit_batches_and_dtypes():
    yaw = np.linspace(1.0, 2.0, 6).reshape(2, 3)
    pose = orbit_cam2world(yaw, 1.5, radius=torch.tensor([[1.0], [2.0]], dtype=torch.float64))
    assert pose.shape == (2, 3, 4, 4) and pose.dtype == torch.float64
    torch.testing.assert_close(
        pose[..., :3, 3].norm(dim=-1), torch.tensor([[1.0] * 3, [2.0] * 3], dtype=torch.float64)
    )
    assert orbit_cam2world(1.0, 1.5).dtype == torch.float32


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: look_at([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]), "origin coincides with its target"),
        (lambda: look_at([[0.0, 0.0, 1.0], [0.0, 2.0, 0.0]]), r"parallel to up \(camera 1 of 2\)"),
        (lambda: look_at([0.0, float("nan"), 1.0]), "origin has non-finite values"),
        (lambda: look_at([0.0, 1.0]), r"origin: expected shape \[..., 3\], got \[2\]"),
        (lambda: look_at(torch.ones(2, 3), torch.zeros(3, 3)), r"look_at: shapes do not broadcast"),
        (lambda: orbit_cam2world(1.0, 1.0, radius=0.0), "radius: expected positive"),
        (
            lambda: orbit_cam2world(torch.zeros(3), torch.zeros(2)),
            r"do not broadcast: yaw \[3\], pitch \[2\]",
        ),
        (lambda: orbit_cam2world(1.0, 1.0, pivot=(0.0, 0.0)), r"pivot: expected shape"),
    ],
)
def test_pose_bad_inputs(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_fov_to_focal_matches_ffhq_labels():
    assert fov_to_focal(18.837) == pytest.approx(4.2647, abs=2e-3)
    assert fov_to_focal(45.0) == pytest.approx(PRESETS["shapenet"].focal, abs=1e-4)  # EG3D ShapeNet
    # EG3D's sqrt(2) convention, not the plain pinhole 1 / (2 tan(fov / 2)).
    assert fov_to_focal(18.837) == pytest.approx(
        1 / (math.tan(math.radians(18.837) / 2) * math.sqrt(2)), rel=1e-3
    )
    assert focal_to_fov(fov_to_focal(30.0)) == pytest.approx(30.0, abs=1e-9)
    fov = torch.tensor([10.0, 49.134])
    torch.testing.assert_close(focal_to_fov(fov_to_focal(fov)), fov)
    for bad in (0.0, 180.0, -5.0, float("nan")):
        with pytest.raises(ValueError, match="fov_degrees"):
            fov_to_focal(bad)
    with pytest.raises(ValueError, match="focal"):
        focal_to_fov(0.0)


def test_intrinsics_matrix():
    k = intrinsics_matrix(torch.tensor([4.0, 2.0]), cx=0.4, focal_y=torch.tensor([4.5, 2.5]))
    assert k.shape == (2, 3, 3)
    torch.testing.assert_close(k[1], torch.tensor([[2.0, 0.0, 0.4], [0.0, 2.5, 0.5], [0.0, 0.0, 1.0]]))
    with pytest.raises(ValueError, match="focal: expected positive"):
        intrinsics_matrix(0.0)
    with pytest.raises(ValueError, match="focal_y: expected positive"):
        intrinsics_matrix(1.0, focal_y=-1.0)


def test_presets_are_eg3d_values():
    assert (PRESETS["ffhq"].focal, PRESETS["ffhq"].radius, PRESETS["ffhq"].pivot) == (
        4.2647,
        2.7,
        (0.0, 0.0, 0.2),
    )
    assert PRESETS["afhq"].pivot == (0.0, 0.0, -0.06)
    assert (PRESETS["shapenet"].focal, PRESETS["shapenet"].radius) == (1.7074, 1.7)
    for preset in PRESETS.values():
        c = preset.frontal_label()
        validate_label(c)
        assert c[16].item() == pytest.approx(preset.focal)
        forward = c[[2, 6, 10]]
        target = torch.tensor(preset.pivot) - c[[3, 7, 11]]
        torch.testing.assert_close(forward, target / target.norm())
    with pytest.raises(ValueError, match="distribution"):
        type(PRESETS["ffhq"])("x", 1.0, 1.0, (0.0, 0.0, 0.0), 0.1, 0.1, distribution="cauchy")
