"""Conversions: OpenGL/Blender cam2world and EpiGRAF/GRAM [yaw, pitch, roll] angles."""

from __future__ import annotations

import math

import pytest
import torch
from numerics import POSE, assert_close

from mimic3d.camera import (
    from_angles,
    from_opengl,
    intrinsics_matrix,
    make_label,
    mirror_label,
    orbit_cam2world,
    sample_uniform,
    to_angles,
    to_opengl,
    validate_label,
)

FRONTAL = orbit_cam2world(math.pi / 2, math.pi / 2, 2.7)


def test_opengl_frontal_by_hand():
    # An OpenGL camera at (0, 0, 2.7) with identity rotation looks down -z with +y up.
    gl = torch.eye(4)
    gl[2, 3] = 2.7
    assert_close(from_opengl(gl), FRONTAL, **POSE)
    assert_close(to_opengl(FRONTAL), gl, **POSE)


def test_opengl_round_trip_and_projection():
    poses = sample_uniform(16, radius=2.0, pivot=(0.1, 0.0, 0.2), generator=torch.Generator().manual_seed(3))
    gl = to_opengl(poses)
    torch.testing.assert_close(from_opengl(gl), poses)
    # A point in front of the camera: OpenGL sees it at negative z and positive y when EG3D sees it
    # at positive z and negative y (above the image centre).
    point = poses[:, :3, :3] @ torch.tensor([0.0, -0.1, 1.0]) + poses[:, :3, 3]
    local = torch.linalg.inv(gl)[:, :3, :3] @ point[..., None] + torch.linalg.inv(gl)[:, :3, 3:]
    # ... and a 4x4 inverse, 3 more chained 3-term products.
    assert_close(local[:, :, 0], torch.tensor([0.0, 0.1, -1.0]).expand(16, 3), terms=3, depth=6, scale=2.0)


def test_angles_frontal_and_relation_to_eg3d_orbit():
    assert_close(from_angles(0.0, math.pi / 2, 0.0, 2.7), FRONTAL, **POSE)
    yaw = torch.tensor([-1.0, -0.2, 0.4, 2.5])
    pitch = torch.tensor([0.6, 1.2, 1.57, 2.4])
    # Angles' pitch is the polar angle; EG3D's pitch v maps to it through arccos(1 - 2 v / pi).
    eg3d = orbit_cam2world(math.pi / 2 - yaw, math.pi / 2 * (1 - torch.cos(pitch)), 1.5, (0.0, 0.1, 0.2))
    assert_close(from_angles(yaw, pitch, radius=1.5, pivot=(0.0, 0.1, 0.2)), eg3d, **POSE)
    assert from_angles(0.4, math.pi / 2)[0, 3] < 0  # positive yaw moves towards -x of EG3D's world
    assert from_angles(0.0, 1.0)[1, 3] > 0  # pitch below pi/2 is above the subject


def test_angles_mirror_negates_yaw():
    k = intrinsics_matrix(4.2647)
    plus = make_label(from_angles(0.4, 1.3, 0.0, 2.7, (0.0, 0.0, 0.2)), k)
    minus = make_label(from_angles(-0.4, 1.3, 0.0, 2.7, (0.0, 0.0, 0.2)), k)
    assert_close(mirror_label(plus), minus, **POSE)


def test_angles_round_trip_both_directions():
    g = torch.Generator().manual_seed(0)
    yaw = torch.rand(64, generator=g, dtype=torch.float64) * 6 - 3
    pitch = torch.rand(64, generator=g, dtype=torch.float64) * 2.8 + 0.15
    roll = torch.rand(64, generator=g, dtype=torch.float64) * 2 - 1
    radius = torch.rand(64, generator=g, dtype=torch.float64) + 1.0
    pivot = (0.0, 0.05, 0.2)
    poses = from_angles(yaw, pitch, roll, radius, pivot)
    validate_label(make_label(poses, intrinsics_matrix(2.0)))
    angles, radius_back = to_angles(poses)
    torch.testing.assert_close(angles, torch.stack([yaw, pitch, roll], -1))
    torch.testing.assert_close(radius_back, radius)
    eg3d = sample_uniform(64, radius=2.7, pivot=pivot, generator=g).double()
    angles, radius_back = to_angles(eg3d)
    # float32 poses are orthonormal only to float32 rounding, which the float64 round trip keeps.
    assert_close(angles[:, 2], torch.zeros(64, dtype=torch.float64), **POSE, scale=1.0, dtype=torch.float32)
    assert_close(from_angles(*angles.unbind(-1), radius_back, pivot), eg3d, **POSE, dtype=torch.float32)


def test_roll_turns_about_the_viewing_axis():
    flat = from_angles(0.3, 1.2)
    rolled = from_angles(0.3, 1.2, math.pi / 2)
    assert_close(rolled[:3, 0], flat[:3, 1], **POSE)
    torch.testing.assert_close(rolled[:3, 2:], flat[:3, 2:])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: from_opengl(torch.eye(3)), r"cam2world: expected shape \[..., 4, 4\], got \[3, 3\]"),
        (lambda: from_angles(0.0, 1.0, radius=-1.0), "radius: expected positive"),
        (lambda: from_angles(torch.zeros(2), torch.zeros(3)), "do not broadcast"),
        (lambda: to_angles(torch.eye(4)), "camera at the world origin"),
    ],
)
def test_convert_bad_inputs(call, message):
    with pytest.raises(ValueError, match=message):
        call()
