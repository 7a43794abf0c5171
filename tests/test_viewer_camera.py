"""The viewer's camera conversion: browser pose -> EG3D label is exact, and renders at it equal direct ones.

The browser side is simulated with three.js's own construction (``Object3D.lookAt``: z = eye - target,
x = up x z, y = z x x, in OpenGL camera axes) and an independent quaternion (scipy), so the test
does not reuse the conversion it checks.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from numerics import assert_close
from scipy.spatial.transform import Rotation

from mimic3d.camera import PRESETS, fov_to_focal, split_label
from mimic3d.models import TriplaneGenerator, generator_preset
from mimic3d.tools.imaging import to_uint8
from mimic3d.tools.latents import seed_ws
from mimic3d.tools.viewpoints import orbit_labels
from mimic3d.viewer.camera import (
    browser_label,
    canvas_fov,
    canvas_frame,
    label_pose,
    pad_to_aspect,
    square_focal,
    wxyz_to_rotation,
)
from mimic3d.viewer.frames import FrameRenderer, ViewSettings

# Labels are float32; the conversion runs in float64 and rounds once, so entries agree to a few ulps
# of their magnitude (positions ~2.7, focal ~4.3: 4 * 2.4e-7 ~ 1e-6).
LABEL_ATOL = 2e-6


def threejs_wxyz(position: np.ndarray, look_at: np.ndarray, up: np.ndarray) -> np.ndarray:
    """The quaternion (w, x, y, z) of T_world_camera in OpenCV axes that a three.js camera at
    ``position`` looking at ``look_at`` with ``up`` reports (viser flips its y and z axes)."""
    z = position - look_at
    z /= np.linalg.norm(z)
    x = np.cross(up, z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    opengl = np.stack([x, y, z], axis=1)
    opencv = opengl * np.array([1.0, -1.0, -1.0])
    xyzw = Rotation.from_matrix(opencv).as_quat()
    return np.array([xyzw[3], *xyzw[:3]])


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return TriplaneGenerator(generator_preset("tiny-mimic3d")).eval().requires_grad_(False)


def test_focal_and_canvas_fov_are_inverse_and_follow_the_shorter_side():
    ffhq = PRESETS["ffhq"].focal
    for aspect in (0.5, 1.0, 16 / 9):
        for panels in (1, 2):
            fov = canvas_fov(ffhq, aspect, panels)
            assert square_focal(fov, aspect, panels) == pytest.approx(ffhq, rel=1e-12)
    # Landscape, one panel: the square spans the canvas height, focal = 0.5 / tan(fov / 2).
    assert square_focal(math.radians(30), 2.0) == pytest.approx(0.5 / math.tan(math.radians(15)), rel=1e-12)
    # Portrait: the width is the shorter side, so the same vertical fov gives a longer focal.
    assert square_focal(math.radians(30), 0.5) == pytest.approx(1 / math.tan(math.radians(15)), rel=1e-12)
    # Two panels on a 3:2 canvas: each column is 0.75 wide per unit height.
    assert square_focal(1.0, 1.5, 2) == pytest.approx(0.5 / (math.tan(0.5) * 0.75), rel=1e-12)
    # EG3D's FFHQ focal is a true pinhole fov of 2 atan(0.5 / 4.2647) = 13.4 degrees (vertical).
    assert math.degrees(canvas_fov(ffhq, 1.0)) == pytest.approx(13.3738, abs=1e-4)
    assert fov_to_focal(18.837) == pytest.approx(ffhq, rel=1e-3)  # EG3D's own "fov" is not that angle


def test_wxyz_to_rotation_matches_scipy():
    rotations = Rotation.random(20, random_state=0)
    for rotation in rotations:
        x, y, z, w = rotation.as_quat()
        np.testing.assert_allclose(wxyz_to_rotation([w, x, y, z]), rotation.as_matrix(), atol=1e-12)
        # Not normalised, and the other sign of the same rotation.
        np.testing.assert_allclose(
            wxyz_to_rotation([-2 * w, -2 * x, -2 * y, -2 * z]), rotation.as_matrix(), atol=1e-12
        )


@pytest.mark.parametrize("preset", ["ffhq", "shapenet"])
@pytest.mark.parametrize("aspect, panels", [(1.0, 1), (16 / 9, 1), (0.6, 1), (3.0, 2), (1.2, 2)])
def test_label_to_browser_pose_and_back_is_exact(preset, aspect, panels):
    p = PRESETS[preset]
    yaws = math.pi / 2 + torch.tensor([0.0, 0.4, -0.7, 2.5])
    pitches = math.pi / 2 + torch.tensor([0.0, -0.3, 0.25, -0.6])
    labels = orbit_labels(yaws, pitches, p)
    for label in labels:
        pose = label_pose(label, aspect, p.pivot, panels)
        # Orbiting turns about the pivot: a point at the camera's distance, a few roundings.
        look_at, pivot = torch.as_tensor(pose.look_at), torch.as_tensor(p.pivot)
        assert_close(look_at, pivot, terms=3, depth=3, scale=p.radius)
        np.testing.assert_array_equal(pose.up, [0, 1, 0])  # orbit cameras have no roll: level orbiting
        wxyz = threejs_wxyz(pose.position, pose.look_at, pose.up)
        back = browser_label(wxyz, pose.position, pose.fov, aspect, panels)
        assert back.dtype == torch.float32 and back.shape == (25,)
        torch.testing.assert_close(back, label, atol=LABEL_ATOL, rtol=0)


def test_label_pose_keeps_roll_and_refuses_a_target_behind():
    label = orbit_labels([math.pi / 2 + 0.3], math.pi / 2 - 0.2, PRESETS["ffhq"])[0]
    cam2world, _ = split_label(label)
    roll = 0.4  # rotate the camera about its forward axis
    rolled = label.clone().reshape(25)
    turn = torch.tensor(
        [[math.cos(roll), -math.sin(roll), 0], [math.sin(roll), math.cos(roll), 0], [0, 0, 1.0]]
    )
    rolled[:16] = torch.cat(
        [torch.cat([cam2world[:3, :3] @ turn, cam2world[:3, 3:]], 1), cam2world[3:]]
    ).reshape(16)
    pose = label_pose(rolled, 1.0, PRESETS["ffhq"].pivot)
    back = browser_label(threejs_wxyz(pose.position, pose.look_at, pose.up), pose.position, pose.fov, 1.0)
    torch.testing.assert_close(back, rolled, atol=LABEL_ATOL, rtol=0)
    with pytest.raises(ValueError, match="behind the camera"):
        label_pose(label, 1.0, (0.0, 0.0, 10.0))
    with pytest.raises(ValueError, match="fov"):
        browser_label([1, 0, 0, 0], [0, 0, 2.7], 0.0, 1.0)
    with pytest.raises(ValueError, match="wxyz"):
        browser_label([0, 0, 0, 0], [0, 0, 2.7], 0.3, 1.0)


@pytest.mark.parametrize("branch", ["2d", "3d"])
def test_a_frame_at_the_browser_camera_equals_a_direct_render(tiny, branch):
    preset = PRESETS["ffhq"]
    label = orbit_labels([math.pi / 2 + 0.35], math.pi / 2 - 0.15, preset)
    pose = label_pose(label[0], 16 / 9, preset.pivot)
    browser = browser_label(
        threejs_wxyz(pose.position, pose.look_at, pose.up), pose.position, pose.fov, 16 / 9
    )
    settings = ViewSettings(seed=3, truncation_psi=0.7, branch=branch, resolution_3d=32)
    frame = FrameRenderer(tiny, preset).render(settings, browser)
    ws = seed_ws(tiny, [3], preset, truncation_psi=0.7)
    with torch.no_grad():
        direct = tiny.synthesis(ws, label, branch=branch, noise_mode="const", perturb=False)["image"]
        at_browser = tiny.synthesis(ws, browser[None], branch=branch, noise_mode="const", perturb=False)[
            "image"
        ]
    # The two labels differ by float32 rounding only: images agree to float32 error of O(1) values
    # through a few hundred operations.
    torch.testing.assert_close(at_browser, direct, atol=1e-4, rtol=1e-4)
    reference = to_uint8(direct)[0]
    assert frame.panels[0].shape == reference.shape
    # uint8 rounding can flip a level where a value sits on a rounding boundary.
    difference = np.abs(frame.panels[0].astype(int) - reference.astype(int))
    assert difference.max() <= 1 and difference.mean() < 0.01
    # Not a camera-independent picture: another camera gives another frame (the random tiny model's
    # images are dark, a few levels of contrast, yet 50x further off than the match).
    side = orbit_labels([math.pi / 2 - 0.35], math.pi / 2, preset)[0]
    assert (
        np.abs(FrameRenderer(tiny, preset).render(settings, side).panels[0].astype(int) - reference).mean()
        > 0.5
    )


def test_frontal_frame_equals_the_full_forward(tiny):
    """At the frontal camera conditioning and rendering camera coincide, so the frame is G(z, c)."""
    preset = PRESETS["ffhq"]
    c = preset.frontal_label()[None].float()
    z = torch.from_numpy(np.random.RandomState(5).randn(1, tiny.z_dim)).float()
    with torch.no_grad():
        image = tiny(z, c, truncation_psi=0.7, noise_mode="const", perturb=False)["image"]
    frame = FrameRenderer(tiny, preset).render(ViewSettings(seed=5), c[0])
    np.testing.assert_array_equal(frame.panels[0], to_uint8(image)[0])  # same ops, same process


def test_pad_to_aspect_centres_the_square_to_the_pixel():
    square = np.full((32, 32, 3), 200, np.uint8)
    wide = pad_to_aspect(square, 3.0, (1, 2, 3))
    assert wide.shape == (32, 96, 3)
    assert (
        (wide[:, 32:64] == 200).all()
        and (wide[:, :32] == [1, 2, 3]).all()
        and (wide[:, 64:] == [1, 2, 3]).all()
    )
    odd = pad_to_aspect(square, 1.7)  # 54.4 wide: 54, padding 11 each side
    assert odd.shape == (32, 54, 3) and (odd[:, 11:43] == 200).all() and (odd[:, 10] == 0).all()
    tall = pad_to_aspect(square, 0.5)
    assert tall.shape == (64, 32, 3) and (tall[16:48] == 200).all()
    pair = canvas_frame([square, square // 2], 4.0)
    assert pair.shape == (32, 128, 3)
    assert (pair[:, 16:48] == 200).all() and (pair[:, 80:112] == 100).all() and (pair[:, 48:80] == 0).all()
    with pytest.raises(ValueError, match="panels"):
        canvas_frame([square, square[:16]], 2.0)
