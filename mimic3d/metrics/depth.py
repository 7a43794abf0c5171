"""Depth error of a generator against the ground-truth depth of a synthetic dataset.

A generated head is not any particular dataset head (without inversion there is no latent for a real
image), so the comparison is made per camera and judged against the spread between real heads:

- generated: for dataset item i, a fresh latent rendered at item i's camera c_i (same intrinsics,
  same pixel-centre rays, so both depths are the Euclidean distance along the same rays);
- real: item i's stored ground-truth depth (``mimic3d dataset synth``), the reference;
- baseline: another real head of the same generator (``sample_objects`` with the dataset's seed,
  index i + 1) rendered by the synthetic tracer at c_i: what the error is between two real heads.

Errors are taken on the reference's foreground pixels (a finite ground-truth depth). Depth values
are compared as they are, in world units, without any scale or offset fitted: the cameras fix the
scale, and a generator that puts the head at the wrong distance should score badly. Both maps are
clamped to the renderer's depth range [ray_start, ray_end] first (the volume renderer's depth
cannot leave it; a background pixel of the baseline's head counts as ray_end). ``offset_mae`` also
reports the error left after removing each image's median difference, to show how much of the error
is a global shift.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mimic3d.data import ImageDataset
from mimic3d.data.synth import get_kind, render_samples, sample_objects
from mimic3d.metrics.reprojection import BRANCHES

SYNTH_KEY = "synth"  # dataset.json entry written by ``mimic3d dataset synth``


@dataclass
class DepthErrors:
    """Per-image errors [N] on the reference's foreground pixels, in world units."""

    mae: Tensor
    median: Tensor
    offset_mae: Tensor

    def as_dict(self, prefix: str = "") -> dict[str, float]:
        names = ("mae", "median", "offset_mae")
        return {f"{prefix}{name}": float(getattr(self, name).nanmean()) for name in names}


def depth_errors(depth: Tensor, reference: Tensor, depth_range: tuple[float, float]) -> DepthErrors:
    """Errors of depth [N, 1, R, R] against reference [N, 1, R, R] (inf on background).

    Pixels count where the reference is finite; both maps are clamped to ``depth_range`` first.
    An image without foreground gets NaN.
    """
    if depth.shape != reference.shape or depth.ndim != 4 or depth.shape[1] != 1:
        raise ValueError(
            f"depth: expected two [N, 1, R, R] maps of one shape, got {list(depth.shape)} and "
            f"{list(reference.shape)}"
        )
    near, far = depth_range
    mask = torch.isfinite(reference)
    diff = depth.clamp(near, far) - reference.clamp(near, far)
    mae, median, offset_mae = [], [], []
    for d, m in zip(diff, mask):
        values = d[m]
        if values.numel() == 0:
            mae.append(torch.tensor(float("nan")))
            median.append(torch.tensor(float("nan")))
            offset_mae.append(torch.tensor(float("nan")))
            continue
        mae.append(values.abs().mean())
        median.append(values.abs().median())
        offset_mae.append((values - values.median()).abs().mean())
    return DepthErrors(torch.stack(mae), torch.stack(median), torch.stack(offset_mae))


@torch.no_grad()
def render_depth(G: nn.Module, z: Tensor, cameras: Tensor, branch: str, resolution: int) -> Tensor:
    """Depth [N, 1, R, R] of latents z [N, z_dim] at cameras [N, 25] (conditioned on the same camera),
    deterministically; the 2D branch's depth (rendered at the neural rendering resolution) is
    bilinearly resized to ``resolution``, like the reprojection metric does."""
    if branch not in BRANCHES:
        raise ValueError(f"branch: expected one of {BRANCHES}, got {branch!r}")
    depths = []
    for k in range(z.shape[0]):
        out = G(z[k : k + 1], cameras[k : k + 1], branch=branch, noise_mode="const", perturb=False)
        depth = out["image_depth"]
        if depth.shape[-1] != resolution:
            depth = F.interpolate(depth, size=(resolution, resolution), mode="bilinear", align_corners=False)
        depths.append(depth)
    return torch.cat(depths)


def synthetic_depth_error(
    G: nn.Module, dataset_path: str, num_images: int = 64, branches: tuple[str, ...] = BRANCHES, seed: int = 0
) -> dict[str, float]:
    """Mean depth errors of ``G`` per branch (``{branch}/depth_mae`` ...) and of the real-vs-real
    baseline (``real/depth_mae`` ...) over the first ``num_images`` items of a synthetic dataset."""
    dataset = ImageDataset(dataset_path, load_depth=True)
    synth = dataset.metadata.get(SYNTH_KEY)
    if not isinstance(synth, dict) or "kind" not in synth or "seed" not in synth:
        raise ValueError(
            f"{dataset.path}: no '{SYNTH_KEY}' entry in dataset.json; the depth error needs a dataset made "
            "by `mimic3d dataset synth`"
        )
    if not 1 <= num_images <= len(dataset):
        raise ValueError(f"num_images: expected 1..{len(dataset)}, got {num_images}")
    device = next(G.parameters()).device
    resolution = dataset.resolution
    cameras = dataset.labels[:num_images]
    reference = torch.stack([dataset.load_depth(i) for i in range(num_images)])
    rendering = G.config.rendering
    depth_range = (rendering.ray_start, rendering.ray_end)
    results: dict[str, float] = {}
    z = torch.randn(num_images, G.z_dim, generator=torch.Generator().manual_seed(seed))
    for branch in branches:
        depth = render_depth(G, z.to(device), cameras.to(device), branch, resolution).cpu()
        results.update(depth_errors(depth, reference, depth_range).as_dict(f"{branch}/depth_"))
    kind = get_kind(synth["kind"])
    others = sample_objects(kind, int(synth["seed"]), range(1, num_images + 1))
    baseline = render_samples(kind, others, cameras, resolution).depth[:, None]
    results.update(depth_errors(baseline, reference, depth_range).as_dict("real/depth_"))
    return results
