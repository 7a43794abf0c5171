"""Running statistics of feature vectors (StyleGAN's ``FeatureStats``), saved as ``.npz``.

Mean and covariance are accumulated as a float64 sum and sum of outer products, so that any
number of batches (and ranks) combine exactly; the covariance is the population one
(divided by N), as in StyleGAN/EG3D's FID. KID needs the features themselves (``capture_all``).
"""

from __future__ import annotations

import os

import numpy as np
import torch

from mimic3d.checkpoints.atomic import atomic_write
from mimic3d.metrics.distributed import all_reduce_sum, gather_rows

_FORMAT_VERSION = 1


class FeatureStats:
    """Accumulates features [B, D] batch by batch.

    Args:
        capture_mean_cov: keep float64 sums for :meth:`mean_cov` (FID).
        capture_all: keep every feature row as float32 for :meth:`features` (KID).
        max_items: stop accepting rows after this many (later rows are dropped); None: no limit.
    """

    def __init__(self, capture_mean_cov: bool = True, capture_all: bool = False,
                 max_items: int | None = None) -> None:
        if not (capture_mean_cov or capture_all):
            raise ValueError("FeatureStats: capture_mean_cov and capture_all are both False; nothing to keep")
        if max_items is not None and max_items < 1:
            raise ValueError(f"FeatureStats max_items: expected a positive count or None, got {max_items}")
        self.capture_mean_cov = capture_mean_cov
        self.capture_all = capture_all
        self.max_items = max_items
        self.num_items = 0
        self.num_features: int | None = None
        self.raw_sum: np.ndarray | None = None
        self.raw_outer: np.ndarray | None = None
        self.rows: list[np.ndarray] = []

    def is_full(self) -> bool:
        return self.max_items is not None and self.num_items >= self.max_items

    def _start(self, num_features: int) -> None:
        if self.num_features is None:
            self.num_features = num_features
            if self.capture_mean_cov:
                self.raw_sum = np.zeros(num_features, dtype=np.float64)
                self.raw_outer = np.zeros((num_features, num_features), dtype=np.float64)
        elif num_features != self.num_features:
            raise ValueError(f"features: expected {self.num_features} columns like the earlier batches, "
                             f"got {num_features}")

    def append(self, features: torch.Tensor | np.ndarray) -> None:
        """Add rows [B, D] (converted to float32 first, as StyleGAN does, then summed in float64)."""
        if isinstance(features, torch.Tensor):
            features = features.detach().cpu().numpy()
        x = np.asarray(features, dtype=np.float32)
        if x.ndim != 2:
            raise ValueError(f"features: expected a [B, D] array, got shape {list(x.shape)}")
        if self.max_items is not None:
            x = x[: max(self.max_items - self.num_items, 0)]
        self._start(x.shape[1])
        if x.shape[0] == 0:
            return
        self.num_items += x.shape[0]
        if self.capture_all:
            self.rows.append(x)
        if self.capture_mean_cov:
            x64 = x.astype(np.float64)
            self.raw_sum += x64.sum(axis=0)
            self.raw_outer += x64.T @ x64

    def merge_ranks(self) -> None:
        """Combine the statistics of all distributed ranks in place (no-op without torch.distributed).

        Every rank must call it and must have seen at least one batch (to know D).
        """
        if self.num_features is None:
            raise ValueError("FeatureStats.merge_ranks: no features were appended on this rank")
        self.num_items = int(all_reduce_sum(torch.tensor([self.num_items], dtype=torch.float64)).item())
        if self.capture_mean_cov:
            self.raw_sum = all_reduce_sum(torch.from_numpy(self.raw_sum)).numpy()
            self.raw_outer = all_reduce_sum(torch.from_numpy(self.raw_outer)).numpy()
        if self.capture_all:
            self.rows = [gather_rows(torch.from_numpy(self.features())).numpy()]

    def mean_cov(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean float64 [D], population covariance float64 [D, D])."""
        if not self.capture_mean_cov:
            raise ValueError("FeatureStats: mean/covariance were not captured (capture_mean_cov=False)")
        if self.num_items == 0:
            raise ValueError("FeatureStats: no features appended")
        mean = self.raw_sum / self.num_items
        cov = self.raw_outer / self.num_items - np.outer(mean, mean)
        return mean, cov

    def features(self) -> np.ndarray:
        """All captured rows, float32 [N, D]."""
        if not self.capture_all:
            raise ValueError("FeatureStats: features were not kept (capture_all=False)")
        if self.num_features is None:
            raise ValueError("FeatureStats: no features appended")
        if not self.rows:
            return np.zeros((0, self.num_features), dtype=np.float32)
        if len(self.rows) > 1:
            self.rows = [np.concatenate(self.rows, axis=0)]
        return self.rows[0]

    def save(self, path: str | os.PathLike) -> None:
        """Write to ``path`` (.npz) through a temporary sibling, so readers never see half a file."""
        if self.num_features is None:
            raise ValueError("FeatureStats.save: no features appended")
        arrays = {
            "format_version": np.array(_FORMAT_VERSION),
            "num_items": np.array(self.num_items),
            "max_items": np.array(-1 if self.max_items is None else self.max_items),
            "num_features": np.array(self.num_features),
        }
        if self.capture_mean_cov:
            arrays["raw_sum"] = self.raw_sum
            arrays["raw_outer"] = self.raw_outer
        if self.capture_all:
            arrays["features"] = self.features()
        def write(temporary: str) -> None:
            with open(temporary, "wb") as out:  # a file object: np.savez would append .npz to a name
                np.savez(out, **arrays)

        atomic_write(path, write)

    @classmethod
    def load(cls, path: str | os.PathLike) -> FeatureStats:
        """Read a file written by :meth:`save`; ValueError when it is not one."""
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {key: data[key] for key in data.files}
        except (OSError, ValueError) as err:
            raise ValueError(f"{path}: not a feature statistics file ({err})") from None
        if int(arrays.get("format_version", -1)) != _FORMAT_VERSION:
            raise ValueError(f"{path}: unknown feature statistics format (expected version "
                             f"{_FORMAT_VERSION})")
        max_items = int(arrays["max_items"])
        stats = cls(capture_mean_cov="raw_sum" in arrays, capture_all="features" in arrays,
                    max_items=None if max_items < 0 else max_items)
        stats.num_items = int(arrays["num_items"])
        stats.num_features = int(arrays["num_features"])
        if stats.capture_mean_cov:
            stats.raw_sum = arrays["raw_sum"]
            stats.raw_outer = arrays["raw_outer"]
        if stats.capture_all:
            stats.rows = [arrays["features"]]
        return stats
