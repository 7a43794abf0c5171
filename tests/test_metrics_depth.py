"""Depth error against a synthetic dataset's ground truth: analytic maps, bad inputs, and the
real-vs-real baseline on a tiny rendered dataset."""

from __future__ import annotations

import math

import pytest
import torch

from mimic3d.data import ImageDataset
from mimic3d.data.synth import synth_dataset
from mimic3d.metrics.depth import depth_errors, render_depth, synthetic_depth_error
from mimic3d.models import TriplaneGenerator, generator_preset

RANGE = (2.25, 3.3)


def test_a_constant_offset_is_the_error_and_vanishes_after_the_median_shift():
    reference = torch.full((2, 1, 4, 4), 2.7)
    reference[:, :, 0] = math.inf  # background row: ignored
    depth = reference.clamp(max=3.3) + 0.05
    depth[:, :, 0] = 2.3  # whatever lies in front of the background does not count
    errors = depth_errors(depth, reference, RANGE)
    # |2.75 - 2.7| in float32: a few ulps of 2.7
    assert torch.allclose(errors.mae, torch.full((2,), 0.05), rtol=0, atol=1e-6)
    assert torch.allclose(errors.median, errors.mae, rtol=0, atol=1e-6)
    assert torch.allclose(errors.offset_mae, torch.zeros(2), rtol=0, atol=1e-6)
    assert errors.as_dict("3d/depth_")["3d/depth_mae"] == pytest.approx(0.05, abs=1e-6)


def test_both_maps_are_clamped_to_the_render_range_and_empty_masks_give_nan():
    reference = torch.full((2, 1, 2, 2), 3.0)
    reference[1] = math.inf  # no foreground at all
    depth = torch.full((2, 1, 2, 2), 10.0)  # beyond ray_end: counts as ray_end
    errors = depth_errors(depth, reference, RANGE)
    assert errors.mae[0] == pytest.approx(0.3, abs=1e-6) and torch.isnan(errors.mae[1])
    assert errors.as_dict()["mae"] == pytest.approx(0.3, abs=1e-6)  # NaN images are left out
    with pytest.raises(ValueError, match=r"depth: expected two \[N, 1, R, R\] maps of one shape"):
        depth_errors(depth[:, 0], reference[:, 0], RANGE)


@pytest.fixture(scope="module")
def heads(tmp_path_factory):
    path = tmp_path_factory.mktemp("depth") / "heads.zip"
    synth_dataset(str(path), "heads", 4, 16, seed=3, workers=1, progress=False)
    return path


def test_the_baseline_is_another_real_head_at_the_same_camera(heads):
    torch.manual_seed(0)
    G = TriplaneGenerator(generator_preset("tiny-mimic3d", img_resolution=16, neural_rendering_resolution=8))
    results = synthetic_depth_error(G.eval(), str(heads), num_images=3)
    assert set(results) == {
        f"{who}/depth_{name}" for who in ("2d", "3d", "real") for name in ("mae", "median", "offset_mae")
    }
    # Two different heads seen by one camera disagree, but by much less than the depth range.
    assert 0 < results["real/depth_mae"] < 0.25 * (RANGE[1] - RANGE[0])
    assert all(math.isfinite(value) and value >= 0 for value in results.values())
    depth = render_depth(G, torch.randn(1, G.z_dim), ImageDataset(heads).labels[:1], "2d", 16)
    assert depth.shape == (1, 1, 16, 16)


def test_bad_inputs_name_what_was_expected(heads, tmp_path):
    G = TriplaneGenerator(generator_preset("tiny-mimic3d", img_resolution=16, neural_rendering_resolution=8))
    with pytest.raises(ValueError, match=r"num_images: expected 1\.\.4, got 5"):
        synthetic_depth_error(G, str(heads), num_images=5)
    with pytest.raises(ValueError, match="branch: expected one of"):
        render_depth(G, torch.randn(1, G.z_dim), ImageDataset(heads).labels[:1], "4d", 16)
