"""Parity with the official renderers on recorded outputs.

tests/fixtures/render/official_renders.safetensors holds tensors recorded by running NVlabs/eg3d's
and SeanChenxy/Mimic3D's ``RaySampler`` + ``ImportanceRenderer`` (official ``OSGDecoder``, 4
channels, zero stratified jitter, ``det=True`` importance sampling) on tiny tri-planes: an EG3D face
setup, a ShapeNet setup (white background, box_warp 1.6), and Mimic3D's summed coarse 16^2 +
residual 32^2 tri-planes with its (x,y), (y,z), (z,x) projection. Ours must match within float32
rounding (``numerics``); deliberately wrong variants (half-pixel shift, box_warp 1% off, swapped
planes) must not.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from numerics import assert_close, assert_not_close, fan_in_sum
from safetensors.torch import load_file

from mimic3d.render import RenderConfig, TriplaneDecoder, TriplaneRenderer, generate_rays

FIXTURE = Path(__file__).parent / "fixtures" / "render" / "official_renders.safetensors"

CASES = {
    "eg3d": dict(
        ray_start=2.25, ray_end=3.3, depth_resolution=12, depth_resolution_importance=12, box_warp=1
    ),
    "shapenet": dict(
        ray_start=0.1,
        ray_end=2.6,
        depth_resolution=10,
        depth_resolution_importance=6,
        box_warp=1.6,
        white_back=True,
    ),
    "mimic3d": dict(
        ray_start=2.25, ray_end=3.3, depth_resolution=12, depth_resolution_importance=12, box_warp=1
    ),
}


@pytest.fixture(scope="module")
def recorded() -> dict[str, torch.Tensor]:
    return load_file(FIXTURE)


def _decoder(recorded: dict[str, torch.Tensor]) -> TriplaneDecoder:
    decoder = TriplaneDecoder(n_features=4, hidden_dim=64, output_dim=3)
    state = {k.removeprefix("decoder."): v for k, v in recorded.items() if k.startswith("decoder.")}
    decoder.load_state_dict(state, strict=True)
    return decoder


# A ray is a 3x3 inverse-intrinsics product, a 3x3 rotation and a normalisation: a few 3-term sums.
RAY_TERMS = 9


def _render_terms(case: str, decoder: TriplaneDecoder) -> int:
    """Bilinear taps of three planes (two tri-planes for Mimic3D), the decoder's FCs and the
    compositing sum over the ray's coarse and importance samples."""
    taps = 4 * 3 * (2 if case == "mimic3d" else 1)
    return (
        taps
        + fan_in_sum(decoder)
        + CASES[case]["depth_resolution"]
        + CASES[case]["depth_resolution_importance"]
    )


def _render(recorded: dict[str, torch.Tensor], case: str, **options):
    options = {"convention": "xyz" if case == "mimic3d" else "eg3d", **options}
    planes = [recorded["planes16"], recorded["planes32"]] if case == "mimic3d" else recorded["planes16"]
    config = RenderConfig.from_eg3d_kwargs(
        {**CASES[case], "box_warp": options.pop("box_warp", CASES[case]["box_warp"])},
        perturb=False,
        **options,
    )
    decoder = _decoder(recorded)
    with torch.no_grad():
        result = TriplaneRenderer(config)(
            planes, decoder, recorded[f"{case}.origins"], recorded[f"{case}.directions"]
        )
    return result, _render_terms(case, decoder)


@pytest.mark.parametrize("case", sorted(CASES))
def test_rays_match_official(recorded: dict[str, torch.Tensor], case: str) -> None:
    origins, directions = generate_rays(recorded["cam2world"], recorded["intrinsics"], 8)
    assert_close(origins, recorded[f"{case}.origins"], terms=RAY_TERMS)
    assert_close(directions, recorded[f"{case}.directions"], terms=RAY_TERMS)


@pytest.mark.parametrize("chunk_rays", [4096, 7])
@pytest.mark.parametrize("case", sorted(CASES))
def test_render_matches_official(recorded: dict[str, torch.Tensor], case: str, chunk_rays: int) -> None:
    result, terms = _render(recorded, case, chunk_rays=chunk_rays)
    assert float(recorded[f"{case}.alpha"].max()) > 0.3  # the recorded scene is not empty
    assert_close(result.features, recorded[f"{case}.features"], terms=terms)
    assert_close(result.depth, recorded[f"{case}.depth"], terms=terms)
    assert_close(result.alpha, recorded[f"{case}.alpha"], terms=terms)


def test_wrong_variants_fail_the_parity_tolerance(recorded: dict[str, torch.Tensor]) -> None:
    """Rays through pixel corners instead of centres (a half-pixel shift), a box_warp 1% off and
    EG3D's planes for Mimic3D's tri-planes: the same comparisons must fail."""
    shifted = recorded["intrinsics"].clone()
    shifted[..., :2, 2] += 0.5 / 8
    _, directions = generate_rays(recorded["cam2world"], shifted, 8)
    assert_not_close(directions, recorded["eg3d.directions"], terms=RAY_TERMS)
    result, terms = _render(recorded, "eg3d", box_warp=1.01)
    assert_not_close(result.features, recorded["eg3d.features"], terms=terms)
    result, terms = _render(recorded, "mimic3d", convention="eg3d")
    assert_not_close(result.features, recorded["mimic3d.features"], terms=terms)
