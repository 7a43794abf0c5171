"""Cache of real-image feature statistics, one ``.npz`` per (dataset state, detector, protocol).

The key holds everything that changes the statistics: the dataset's absolute path, total size
and newest modification time, the detector (name, form, SHA-256 of its file, or the fingerprint
given to a custom extractor), the number of real images, mirroring, and what was captured
(mean/cov or all features). Files live in ``<cache_dir>/gan-metrics/<dataset>-<detector>-<md5>.npz``.
Extractors without a file hash or fingerprint are never cached: nothing would notice their weights change.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from mimic3d.checkpoints.pretrained import cache_dir
from mimic3d.metrics.distributed import all_reduce_sum, rank_and_world
from mimic3d.metrics.stats import FeatureStats


def dataset_fingerprint(path: str | os.PathLike) -> dict[str, Any]:
    """``{"path", "size", "mtime"}`` of a dataset zip or folder (sizes summed, newest mtime over files)."""
    path = Path(path).expanduser().resolve()
    if path.is_file():
        info = path.stat()
        return {"path": str(path), "size": info.st_size, "mtime": info.st_mtime}
    if not path.is_dir():
        raise FileNotFoundError(f"dataset {path} does not exist")
    size, mtime = 0, path.stat().st_mtime
    for root, _, files in os.walk(path):
        for name in files:
            info = os.stat(os.path.join(root, name))
            size += info.st_size
            mtime = max(mtime, info.st_mtime)
    return {"path": str(path), "size": size, "mtime": mtime}


def real_stats_path(dataset_path: str | os.PathLike, detector: Mapping[str, Any], max_real: int | None,
                    mirror: bool, capture_all: bool, folder: str | os.PathLike | None = None) -> Path | None:
    """Cache file for the real statistics of a dataset under a detector and protocol settings;
    None when the detector has neither a file hash nor a fingerprint."""
    identity = detector.get("sha256") or detector.get("fingerprint")
    if identity is None:
        return None
    key = {
        "dataset": dataset_fingerprint(dataset_path),
        "detector": {"name": detector.get("name"), "form": detector.get("form"), "identity": identity},
        "max_real": max_real,
        "mirror": mirror,
        "capture_all": capture_all,
    }
    digest = hashlib.md5(json.dumps(key, sort_keys=True).encode()).hexdigest()
    stem = Path(key["dataset"]["path"]).stem
    folder = Path(folder) if folder is not None else cache_dir() / "gan-metrics"
    return folder / f"{stem}-{detector.get('name')}-{digest}.npz"


def load_or_compute(path: Path | None, compute: Callable[[], FeatureStats]) -> FeatureStats:
    """Statistics from ``path`` when rank 0 finds it, else ``compute()`` (on every rank) saved by rank 0."""
    if path is None:
        return compute()
    rank, _ = rank_and_world()
    found = float(rank == 0 and path.is_file())
    if all_reduce_sum(torch.tensor([found])).item() > 0:
        return FeatureStats.load(path)
    stats = compute()
    if rank == 0:
        stats.save(path)
    return stats
