"""Dataset tool: camera converters against hand-made cameras, crop/resize/alpha, build -> read round trips."""

from __future__ import annotations

import functools
import json
import math

import numpy as np
import PIL.Image
import pytest
import torch
from numerics import POSE, assert_close

from mimic3d.camera import intrinsics_matrix, make_label, mirror_label, orbit_cam2world
from mimic3d.cli.main import main
from mimic3d.data import ImageDataset
from mimic3d.data.build import build_dataset
from mimic3d.data.converters import CameraFile, crop_label


def _project(label: np.ndarray, point: np.ndarray) -> np.ndarray:
    """Normalised image coordinates (u right, v down) of a world point seen by an EG3D label."""
    pose = np.asarray(label[:16], dtype=np.float64).reshape(4, 4)
    intrinsics = np.asarray(label[16:], dtype=np.float64).reshape(3, 3)
    local = pose[:3, :3].T @ (point - pose[:3, 3])
    assert local[2] > 0, "point behind the camera"
    uvw = intrinsics @ (local / local[2])
    return uvw[:2]


def _save(path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    PIL.Image.fromarray(pixels).save(path)


def test_blender_transforms_hand_made_camera(tmp_path):
    # OpenGL camera at (0, 0, 4) with identity rotation looks down -z at the origin.
    angle_x = 0.6
    transforms = {
        "camera_angle_x": angle_x,
        "frames": [
            {
                "file_path": "./train/r_0",
                "transform_matrix": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 4], [0, 0, 0, 1]],
            }
        ],
    }
    (tmp_path / "transforms.json").write_text(json.dumps(transforms))
    cameras = CameraFile(str(tmp_path / "transforms.json"), "blender")
    label = cameras.label("train/r_0.png", 64, 64)
    pose = label[:16].reshape(4, 4)
    np.testing.assert_allclose(pose[:3, :3], np.diag([1.0, -1.0, -1.0]), atol=1e-12)
    np.testing.assert_allclose(pose[:3, 3], [0, 0, 4])
    assert label[16] == pytest.approx(0.5 / math.tan(angle_x / 2))
    np.testing.assert_allclose(_project(label, np.zeros(3)), [0.5, 0.5], atol=1e-12)
    # World +x appears right of centre, world +y (up) above it.
    u, v = _project(label, np.array([0.3, 0.2, 0.0]))
    assert u > 0.5 and v < 0.5
    # The image edge is where the horizontal FOV says it is.
    edge = np.array([4 * math.tan(angle_x / 2), 0.0, 0.0])
    assert _project(label, edge)[0] == pytest.approx(1.0)


def test_blender_z_up_world_becomes_y_up(tmp_path):
    # Blender front view: camera at -y looking +y in a z-up world (OpenGL camera, up = +z).
    matrix = [[1, 0, 0, 0], [0, 0, -1, -4], [0, 1, 0, 0], [0, 0, 0, 1]]
    transforms = {"camera_angle_x": 0.5, "frames": [{"file_path": "a", "transform_matrix": matrix}]}
    (tmp_path / "t.json").write_text(json.dumps(transforms))
    label = CameraFile(str(tmp_path / "t.json"), "blender", world_up="z").label("a.png", 32, 32)
    frontal = orbit_cam2world(math.pi / 2, math.pi / 2, 4.0).numpy()
    # Blender's front (-y) maps to EG3D's front (+z): the camera is EG3D's frontal camera.
    assert_close(label[:16].reshape(4, 4), frontal, **POSE)


def test_instant_ngp_pixel_intrinsics_rescale(tmp_path):
    transforms = {
        "fl_x": 100.0,
        "fl_y": 80.0,
        "cx": 60.0,
        "cy": 40.0,
        "w": 128,
        "h": 96,
        "frames": [{"file_path": "a.png", "transform_matrix": np.eye(4).tolist()}],
    }
    (tmp_path / "t.json").write_text(json.dumps(transforms))
    label = CameraFile(str(tmp_path / "t.json"), "blender").label("a.png", 64, 48)
    np.testing.assert_allclose(label[16:], [100 / 128, 0, 60 / 128, 0, 80 / 96, 40 / 96, 0, 0, 1])


def test_angles_hand_made_cameras(tmp_path):
    angles = {
        "camera_angles": {
            "front.png": [0.0, math.pi / 2, 0.0],
            "side.png": [math.pi / 2, math.pi / 2, 0.0],
            "high.png": [0.0, 0.3, 0.0],
        }
    }
    (tmp_path / "angles.json").write_text(json.dumps(angles))
    cameras = CameraFile(str(tmp_path / "angles.json"), "angles", preset="ffhq")
    front = cameras.label("front.png", 64, 64)
    np.testing.assert_allclose(front[[3, 7, 11]], [0, 0, 2.7], atol=1e-9)
    assert front[16] == pytest.approx(4.2647)
    np.testing.assert_allclose(_project(front, np.array([0.0, 0.0, 0.2])), [0.5, 0.5], atol=1e-9)
    # EpiGRAF's documented sphere: r (-sin p sin y, cos p, sin p cos y).
    np.testing.assert_allclose(cameras.label("side.png", 64, 64)[[3, 7, 11]], [-2.7, 0, 0], atol=1e-9)
    high = cameras.label("high.png", 64, 64)
    np.testing.assert_allclose(high[[3, 7, 11]], [0, 2.7 * math.cos(0.3), 2.7 * math.sin(0.3)], atol=1e-9)
    custom = CameraFile(str(tmp_path / "angles.json"), "angles", radius=1.5, focal=2.0, pivot=(0, 0, 0))
    label = custom.label("side.png", 8, 8)
    assert np.linalg.norm(label[[3, 7, 11]]) == pytest.approx(1.5) and label[16] == 2.0


def test_eg3d_and_opengl_label_files(tmp_path):
    label = make_label(orbit_cam2world(1.3, 1.4, 2.7, (0, 0, 0.2)), intrinsics_matrix(4.2647)).double()
    pose_gl = label[:16].reshape(4, 4) @ torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=torch.float64))
    (tmp_path / "eg3d.json").write_text(json.dumps({"labels": [["sub/x.png", label.tolist()]]}))
    gl = torch.cat([pose_gl.reshape(-1), label[16:]]).tolist()
    (tmp_path / "gl.json").write_text(json.dumps({"labels": [["sub/x.png", gl]]}))
    np.testing.assert_allclose(
        CameraFile(str(tmp_path / "eg3d.json"), "eg3d").label("sub/x.png", 8, 8), label
    )
    np.testing.assert_allclose(
        CameraFile(str(tmp_path / "gl.json"), "opengl").label("x.png", 8, 8), label, atol=1e-12
    )


def test_camera_lookup_errors(tmp_path):
    (tmp_path / "c.json").write_text(
        json.dumps({"labels": [["a/x.png", [0.0] * 25], ["b/x.png", [0.0] * 25]]})
    )
    cameras = CameraFile(str(tmp_path / "c.json"), "eg3d")
    assert cameras.find("a/x.png") == "a/x.png"
    assert cameras.find("x.png") is None  # ambiguous basename
    with pytest.raises(ValueError, match="no camera for image 'c/y.png'"):
        cameras.label("c/y.png", 8, 8)
    (tmp_path / "bad.json").write_text(json.dumps({"labels": [["a.png", [1.0] * 24]]}))
    with pytest.raises(ValueError, match="bad.json: 'a.png': expected 25 numbers"):
        CameraFile(str(tmp_path / "bad.json"), "eg3d")
    with pytest.raises(FileNotFoundError, match="missing.json"):
        CameraFile(str(tmp_path / "missing.json"), "eg3d")


def test_crop_label_keeps_projections_on_the_same_pixels():
    width, height = 96, 64
    label = (
        make_label(orbit_cam2world(1.4, 1.5, 2.7), intrinsics_matrix(2.0, cx=0.45, cy=0.55)).double().numpy()
    )
    left, top, size = 16, 0, 64
    cropped = crop_label(label, width, height, left, top, size)
    for point in (np.zeros(3), np.array([0.2, -0.1, 0.1]), np.array([-0.3, 0.25, -0.2])):
        u, v = _project(label, point)
        u2, v2 = _project(cropped, point)
        assert u2 * size == pytest.approx(u * width - left) and v2 * size == pytest.approx(v * height - top)


def test_build_crops_resizes_and_moves_the_principal_point(tmp_path):
    # A 96x64 photo with a bright marker where the camera sees the world origin.
    width, height, resolution = 96, 64, 32
    label = (
        make_label(orbit_cam2world(1.5, 1.6, 2.7), intrinsics_matrix(1.2, cx=0.6, cy=0.5)).double().numpy()
    )
    u, v = _project(label, np.zeros(3))
    pixels = np.zeros((height, width, 3), np.uint8)
    col, row = int(u * width), int(v * height)
    pixels[row - 2 : row + 2, col - 2 : col + 2] = 255
    _save(tmp_path / "src" / "photo.png", pixels)
    (tmp_path / "src" / "dataset.json").write_text(json.dumps({"labels": [["photo.png", label.tolist()]]}))
    build_dataset(str(tmp_path / "src"), str(tmp_path / "out.zip"), resolution, progress=False)
    image, out_label = ImageDataset(tmp_path / "out.zip")[0]
    u2, v2 = _project(out_label.double().numpy(), np.zeros(3))
    brightest = np.unravel_index(int(image[0].double().argmax()), image[0].shape)
    assert abs((brightest[1] + 0.5) / resolution - u2) <= 1.5 / resolution
    assert abs((brightest[0] + 0.5) / resolution - v2) <= 1.5 / resolution
    assert u2 == pytest.approx((u * width - 16) / 64, abs=1e-6)


@pytest.mark.parametrize("background,value", [("white", 255), ("black", 0)])
def test_build_composites_alpha(tmp_path, background, value):
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[:, :, 0] = 200
    rgba[:, 8:, 3] = 255  # right half opaque red, left half transparent
    _save(tmp_path / "src" / "a.png", rgba)
    label = make_label(orbit_cam2world(math.pi / 2, math.pi / 2, 2.7), intrinsics_matrix(4.2647))
    (tmp_path / "src" / "dataset.json").write_text(json.dumps({"labels": [["a.png", label.tolist()]]}))
    build_dataset(str(tmp_path / "src"), str(tmp_path / "o.zip"), 16, background=background, progress=False)
    image = ImageDataset(tmp_path / "o.zip")[0][0]
    assert image.shape[0] == 3
    assert (image[:, :, :8] == value).all()
    assert (image[0, :, 8:] == 200).all() and (image[1:, :, 8:] == 0).all()


def test_build_round_trip_with_mirror_through_cli(tmp_path):
    rng = np.random.default_rng(0)
    labels = make_label(
        orbit_cam2world(torch.tensor([1.2, 1.6, 2.0]), torch.tensor([1.5, 1.6, 1.7]), 2.7, (0, 0, 0.2)),
        intrinsics_matrix(4.2647),
    ).double()
    images = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    angles = {}
    for i in range(3):
        _save(tmp_path / "src" / f"{i}.png", images[i])
        angles[f"{i}.png"] = labels[i].tolist()
    (tmp_path / "cams.json").write_text(json.dumps({"labels": list(map(list, angles.items()))}))
    code = main(
        [
            "dataset",
            "build",
            str(tmp_path / "src"),
            str(tmp_path / "out.zip"),
            "--resolution",
            "32",
            "--cameras",
            str(tmp_path / "cams.json"),
            "--convention",
            "eg3d",
            "--mirror",
        ]
    )
    assert code == 0
    dataset = ImageDataset(tmp_path / "out.zip")
    assert len(dataset) == 6
    for i in range(3):
        image, label = dataset[2 * i]
        mirrored_image, mirrored_label = dataset[2 * i + 1]
        assert torch.equal(image, torch.from_numpy(images[i]).permute(2, 0, 1))
        torch.testing.assert_close(label, labels[i].float())
        assert torch.equal(mirrored_image, image.flip(-1))
        torch.testing.assert_close(mirrored_label, mirror_label(labels[i]).float())


def test_build_reports_bad_inputs_by_file(tmp_path, capsys):
    _save(tmp_path / "src" / "a.png", np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "src" / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    label = make_label(orbit_cam2world(math.pi / 2, math.pi / 2, 2.7), intrinsics_matrix(4.2647)).tolist()
    (tmp_path / "src" / "dataset.json").write_text(
        json.dumps({"labels": [["a.png", label], ["b.png", label]]})
    )
    assert (
        main(["dataset", "build", str(tmp_path / "src"), str(tmp_path / "o.zip"), "--resolution", "8"]) == 2
    )
    assert "b.png: cannot decode image" in capsys.readouterr().err
    assert not (tmp_path / "o.zip").exists()
    _save(tmp_path / "bare" / "a.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="no camera file found"):
        build_dataset(str(tmp_path / "bare"), str(tmp_path / "x.zip"), 8, progress=False)


def test_build_flags_opengl_poses_given_as_eg3d(tmp_path):
    _save(tmp_path / "src" / "a.png", np.zeros((8, 8, 3), np.uint8))
    pose = orbit_cam2world(1.4, 1.5, 2.7).double() @ torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0]).double())
    label = make_label(pose, intrinsics_matrix(4.2647).double()).tolist()
    (tmp_path / "cams.json").write_text(json.dumps({"labels": [["a.png", label]]}))
    cameras = str(tmp_path / "cams.json")
    build = functools.partial(
        build_dataset, str(tmp_path / "src"), str(tmp_path / "x.zip"), 8, cameras=cameras, progress=False
    )
    with pytest.raises(ValueError, match=r"a.png: camera looks away .* --convention blender or opengl"):
        build(convention="eg3d")
    build(convention="opengl")
    torch.testing.assert_close(
        ImageDataset(tmp_path / "x.zip")[0][1].double(),
        make_label(orbit_cam2world(1.4, 1.5, 2.7).double(), intrinsics_matrix(4.2647).double()),
    )
