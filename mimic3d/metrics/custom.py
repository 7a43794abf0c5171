"""FID/KID computed on a caller-supplied feature network (offline, CI, ablations).

Networks come as Python callables or as TorchScript files (:func:`load_feature_network`, the
``--features`` option of ``mimic3d metrics``). Results are named ``fid_custom[<name>]`` /
``kid_custom[<name>]``: they are Fréchet/kernel distances in *that* network's feature space and
must never be compared with published FID/KID, which are defined by the 2015-12-05 Inception
network only.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from torch import Tensor

from mimic3d.checkpoints.pretrained import file_sha256
from mimic3d.metrics.detector import FeatureExtractor, load_torchscript
from mimic3d.metrics.fid import fid_from_stats
from mimic3d.metrics.kid import kernel_distance
from mimic3d.metrics.runner import collect_features

FeatureFn = Callable[[Tensor], Tensor]


def custom_extractor(feature_fn: FeatureFn, name: str, feature_dim: int | None = None,
                     device: str | torch.device = "cpu", fingerprint: str | None = None) -> FeatureExtractor:
    """Wrap ``feature_fn(images uint8 [N, 3, H, W]) -> [N, D]`` as a non-standard extractor.

    ``fingerprint`` (e.g. a hash of the network's weights) identifies the network in the real
    statistics cache; without one, real statistics of this extractor are never cached.
    """
    info = {"form": "custom", "fingerprint": fingerprint}
    return FeatureExtractor(feature_fn, name, feature_dim, device, standard=False, info=info)


def load_feature_network(path: str | os.PathLike, name: str | None = None, device: str | torch.device = "cpu",
                         probe_resolution: int | None = None) -> FeatureExtractor:
    """A TorchScript feature network file as a non-standard extractor (``torch.jit.load``, no unpickling).

    The module is called as ``module(uint8 images [N, 3, H, W]) -> [N, D]``. ``name`` (default: the
    file's stem) labels results as ``..._custom[<name>]``; the file's SHA-256 is its fingerprint, so
    real statistics are cached per network file. ``probe_resolution`` runs one black image of that
    size first, so that a network with another calling convention fails now with a clear message.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"feature network file {path} does not exist")
    device = torch.device(device)
    module = load_torchscript(path, device)

    def features(images: Tensor) -> Tensor:
        return module(images)

    extractor = custom_extractor(features, name or path.stem, device=device, fingerprint=file_sha256(path))
    extractor.info["file"] = str(path.resolve())
    extractor.module = module
    if probe_resolution is not None:
        probe = torch.zeros(1, 3, probe_resolution, probe_resolution, dtype=torch.uint8)
        try:
            extractor(probe)
        except RuntimeError as err:
            raise ValueError(f"{path}: the feature network fails on a uint8 {list(probe.shape)} image "
                             f"(expected module(images) -> [N, D]): {err}") from None
    return extractor


def fid_with_features(feature_fn: FeatureFn, name: str, real_batches: Iterable[Tensor],
                      fake_batches: Iterable[Tensor], device: str | torch.device = "cpu") -> dict[str, float]:
    """``{"fid_custom[<name>]": value}``: Fréchet distance of ``feature_fn`` features of two uint8
    image streams (batches [B, C, H, W])."""
    extractor = custom_extractor(feature_fn, name, device=device)
    real = collect_features(real_batches, extractor, capture_all=False)
    fake = collect_features(fake_batches, extractor, capture_all=False)
    return {f"fid_custom[{name}]": fid_from_stats(fake, real)}


def kid_with_features(feature_fn: FeatureFn, name: str, real_batches: Iterable[Tensor],
                      fake_batches: Iterable[Tensor], num_subsets: int = 100, max_subset_size: int = 1000,
                      seed: int = 0, device: str | torch.device = "cpu") -> dict[str, float]:
    """``{"kid_custom[<name>]": value}``: KID protocol on ``feature_fn`` features of two uint8
    image streams (batches [B, C, H, W])."""
    extractor = custom_extractor(feature_fn, name, device=device)
    real = collect_features(real_batches, extractor, capture_all=True)
    fake = collect_features(fake_batches, extractor, capture_all=True)
    value = kernel_distance(real.features(), fake.features(), num_subsets, max_subset_size, seed)
    return {f"kid_custom[{name}]": value}
