"""Ray generation: image, Mimic3D patch and EpiGRAF scale/offset patch rays."""

from __future__ import annotations

import pytest
import torch
from numerics import assert_close

from mimic3d.camera import intrinsics_matrix, look_at, orbit_cam2world
from mimic3d.render import (
    generate_patch_rays,
    generate_rays,
    generate_scaled_patch_rays,
    image_uv,
    rays_from_uv,
    scaled_patch_uv,
)


def frontal_camera(batch: int = 1, focal: float = 4.2647) -> tuple[torch.Tensor, torch.Tensor]:
    cam2world = look_at(torch.tensor([0.0, 0.0, 2.7])).expand(batch, 4, 4).clone()
    return cam2world, intrinsics_matrix(focal).expand(batch, 3, 3).clone()


def test_centre_pixel_of_frontal_camera_points_along_minus_z() -> None:
    cam2world, intrinsics = frontal_camera()
    origins, directions = generate_rays(cam2world, intrinsics, 5)
    torch.testing.assert_close(directions[0, 12], torch.tensor([0.0, 0.0, -1.0]))
    torch.testing.assert_close(origins[0], torch.tensor([0.0, 0.0, 2.7]).expand(25, 3))
    torch.testing.assert_close(directions.norm(dim=-1), torch.ones(1, 25))
    # Row 0 is the image top (world +y), column 0 the image left (world -x for a camera facing -z).
    assert directions[0, 0, 1] > 0 and directions[0, 0, 0] < 0


def test_pixel_grid_is_row_major_pixel_centres() -> None:
    uv = image_uv(4)
    assert uv.shape == (16, 2)
    torch.testing.assert_close(uv[1], torch.tensor([0.375, 0.125]))  # row 0, column 1
    torch.testing.assert_close(uv[4], torch.tensor([0.125, 0.375]))  # row 1, column 0


def test_ray_through_projected_point_hits_it_with_skew_and_offset_centre() -> None:
    cam2world = orbit_cam2world(torch.tensor([1.2]), torch.tensor([1.4]), 2.7, (0.0, 0.0, 0.2))
    intrinsics = torch.tensor([[[3.0, 0.2, 0.45], [0.0, 2.5, 0.55], [0.0, 0.0, 1.0]]])
    points = torch.tensor([[0.1, -0.2, 0.3], [-0.3, 0.25, -0.1]])
    camera = (points - cam2world[0, :3, 3]) @ cam2world[0, :3, :3]  # world -> camera coordinates
    uv = (camera @ intrinsics[0].T)[:, :2] / camera[:, 2:]
    origins, directions = rays_from_uv(cam2world, intrinsics, uv)
    offsets = points - origins[0]
    along = (offsets * directions[0]).sum(-1, keepdim=True)
    assert_close(offsets, along * directions[0], terms=3, depth=6)  # pose, inverse, projection, ray


def test_patch_rays_equal_sub_block_of_image_rays() -> None:
    cam2world = orbit_cam2world(torch.tensor([1.3, 1.9]), torch.tensor([1.5, 1.6]))
    intrinsics = intrinsics_matrix(torch.tensor([4.26, 3.0]))
    full_o, full_d = generate_rays(cam2world, intrinsics, 16)
    top, left = torch.tensor([3, 10]), torch.tensor([0, 7])
    patch_o, patch_d = generate_patch_rays(cam2world, intrinsics, 16, top, left, 6)
    for i in range(2):
        block = full_d.view(2, 16, 16, 3)[i, top[i] : top[i] + 6, left[i] : left[i] + 6].reshape(36, 3)
        # The same pixels' rays, from batched products of another shape: equal up to rounding.
        assert_close(patch_d[i], block, terms=3, depth=2)
        assert_close(patch_o[i], full_o[i, :36], terms=3, depth=2)


def test_scaled_patch_with_unit_scale_is_the_full_image() -> None:
    cam2world, intrinsics = frontal_camera(batch=2)
    full = generate_rays(cam2world, intrinsics, 8)
    patch = generate_scaled_patch_rays(cam2world, intrinsics, 8, torch.ones(2), torch.zeros(2, 2))
    assert_close(patch[0], full[0], terms=3, depth=2)
    assert_close(patch[1], full[1], terms=3, depth=2)


def test_half_scale_patch_matches_pixel_window_of_double_resolution_image() -> None:
    # A patch of r pixels at scale 1/2 samples the pixel centres of a 2r image, shifted by the offset.
    uv = scaled_patch_uv(4, torch.tensor([0.5]), torch.tensor([[3 / 8, 2 / 8]]))
    full = image_uv(8).view(8, 8, 2)
    assert_close(uv.view(4, 4, 2), full[2:6, 3:7], depth=2)  # offset + scale * u against (i + 0.5) / 8


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda c, k: generate_rays(c[0], k, 4), "cam2world"),
        (lambda c, k: generate_rays(c, k[:, :2], 4), "intrinsics"),
        (lambda c, k: generate_rays(c.expand(2, 4, 4), k, 4), "batch sizes"),
        (lambda c, k: generate_rays(c, k, 0), "resolution"),
        (lambda c, k: generate_patch_rays(c, k, 8, 5, 0, 4), "top"),
        (lambda c, k: generate_patch_rays(c, k, 8, 0, -1, 4), "left"),
        (lambda c, k: generate_patch_rays(c, k, 8, 0.5, 0, 4), "integer"),
        (lambda c, k: generate_scaled_patch_rays(c, k, 4, torch.tensor([1.5]), torch.zeros(1, 2)), "scale"),
        (lambda c, k: generate_scaled_patch_rays(c, k, 4, torch.ones(1), torch.zeros(1, 3)), "offset"),
        (lambda c, k: rays_from_uv(c, k, torch.zeros(1, 5, 3)), "uv"),
    ],
)
def test_bad_inputs_raise_value_error(call, message: str) -> None:
    cam2world, intrinsics = frontal_camera()
    with pytest.raises(ValueError, match=message):
        call(cam2world, intrinsics)
