"""Drive a generator through a named protocol and record the result (StyleGAN/EG3D's procedure).

Works with anything that fits three small interfaces, so that every model family (and tests)
can use it:

- ``generate(z [N, z_dim], c [N, 25]) -> images float [N, C, H, W] in [-1, 1]`` (pick the branch,
  truncation etc. in this callable); ``z_dim`` is taken from ``generate.z_dim`` (a generator, or a
  callable carrying the attribute) unless given;
- a label sampler with ``sample(batch_size, generator=None, device=None) -> c [N, 25]``
  (``mimic3d.data.DatasetCameraSampler``: cameras drawn from the dataset's labels);
- the real images: a ``torch.utils.data.Dataset`` whose items are uint8 [C, H, W] images or
  tuples starting with one (``mimic3d.data.ImageDataset``), or any other iterable of uint8
  batches [B, C, H, W] (a list of batches, a DataLoader).

Fakes are quantised as StyleGAN does, ``(x * 127.5 + 128).clamp(0, 255).to(uint8)``, with z ~ N(0, I)
and no truncation unless ``generate`` applies one. Under ``torch.distributed`` each rank
generates its share of fakes and reads every world-th real image, and the statistics are merged.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from mimic3d.metrics.cache import load_or_compute, real_stats_path
from mimic3d.metrics.detector import FeatureExtractor, describe_tensor, load_inception
from mimic3d.metrics.distributed import rank_and_world
from mimic3d.metrics.fid import fid_from_stats
from mimic3d.metrics.kid import kernel_distance
from mimic3d.metrics.protocols import MetricProtocol, get_protocol
from mimic3d.metrics.stats import FeatureStats
from mimic3d.metrics.swd import PatchDescriptors, SWDConfig, swd_from_descriptors

GenerateFn = Callable[[Tensor, Tensor], Tensor]


class LabelSampler(Protocol):
    def sample(self, batch_size: int, generator: torch.Generator | None = None,
               device: torch.device | str | None = None) -> Tensor: ...


def quantize_images(images: Tensor) -> Tensor:
    """float [-1, 1] -> uint8 [0, 255] exactly as StyleGAN/EG3D (+128 then truncation rounds to nearest)."""
    return (images * 127.5 + 128).clamp(0, 255).to(torch.uint8)


def rank_seed(seed: int, rank: int, world: int) -> int:
    """Independent, reproducible seed of one rank."""
    return int(np.random.SeedSequence(seed).spawn(world)[rank].generate_state(1)[0])


def generator_images(G: Any, branch: str = "2d", noise_mode: str = "random") -> GenerateFn:
    """``generate(z [N, z_dim], c [N, 25]) -> image [N, 3, R, R]`` in [-1, 1] of one branch of a
    tri-plane generator, untruncated, carrying ``G.z_dim`` for the runner.

    The rendering camera is also the conditioning camera (EG3D's metrics pass one label); the 3D
    branch renders at the full image resolution, in ``rendering.chunk_rays`` chunks. Backbone noise
    is "random", as in EG3D's metrics.
    """

    def generate(z: Tensor, c: Tensor) -> Tensor:
        return G(z, c, branch=branch, noise_mode=noise_mode)["image"]

    generate.z_dim = G.z_dim  # type: ignore[attr-defined]
    return generate


def latent_dim(z_dim: int | None, *generators: Any) -> int:
    """``z_dim`` when given, else the ``z_dim`` attribute of the generators (those that have one must
    agree); ValueError when none has one."""
    if z_dim is not None:
        return z_dim
    dims = {g.z_dim for g in generators if isinstance(getattr(g, "z_dim", None), int)}
    if len(dims) > 1:
        raise ValueError(f"z_dim: the generators disagree ({sorted(dims)}); they must share latents")
    if not dims:
        raise ValueError("z_dim: the generate callable has no z_dim attribute; pass z_dim=G.z_dim")
    return dims.pop()


def generated_batches(generate: GenerateFn, labels: LabelSampler, num_images: int, z_dim: int | None = None,
                      batch_size: int = 64, batch_gen: int = 4, seed: int = 0,
                      device: str | torch.device = "cpu") -> Iterator[Tensor]:
    """This rank's share of ``num_images`` quantised fakes, as uint8 batches of up to ``batch_size``.

    ``generate`` is called ``batch_gen`` samples at a time; z and the cameras come from one
    ``torch.Generator`` seeded per rank. Draws inside ``generate`` (backbone noise, ray jitter) use
    torch's global generator, which is seeded from that one meanwhile and restored afterwards, so the
    fakes depend on ``seed`` alone, not on what ran before (e.g. whether real statistics were cached).
    """
    z_dim = latent_dim(z_dim, generate)
    rank, world = rank_and_world()
    share = num_images // world + (rank < num_images % world)
    rng = torch.Generator().manual_seed(rank_seed(seed, rank, world))
    device = torch.device(device)
    cuda_devices = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(int(torch.randint(2**62, (), generator=rng)))
        yield from _generate(generate, labels, share, z_dim, batch_size, batch_gen, rng, device)


def latent_batches(labels: LabelSampler, num_images: int, z_dim: int, batch_size: int, rng: torch.Generator,
                   device: str | torch.device = "cpu") -> Iterator[tuple[Tensor, Tensor]]:
    """``num_images`` (z [n, z_dim] ~ N(0, I), camera c [n, 25] from ``labels``) pairs in batches of
    up to ``batch_size``, all drawn from ``rng`` (z, then c, per batch)."""
    done = 0
    while done < num_images:
        n = min(batch_size, num_images - done)
        z = torch.randn(n, z_dim, generator=rng).to(device)
        yield z, labels.sample(n, generator=rng, device=device)
        done += n


def _generate(generate: GenerateFn, labels: LabelSampler, share: int, z_dim: int, batch_size: int,
              batch_gen: int, rng: torch.Generator, device: torch.device) -> Iterator[Tensor]:
    pending: list[Tensor] = []
    for z, c in latent_batches(labels, share, z_dim, batch_gen, rng, device):
        n = z.shape[0]
        with torch.no_grad():
            images = generate(z, c)
        if not (isinstance(images, Tensor) and images.ndim == 4 and images.shape[0] == n
                and images.shape[1] in (1, 3)):
            raise ValueError(f"generate(z, c) must return images [{n}, 3, H, W] in [-1, 1], got "
                             f"{describe_tensor(images)}")
        pending.append(quantize_images(images).cpu())
        if sum(batch.shape[0] for batch in pending) >= batch_size:
            yield torch.cat(pending)
            pending = []
    if pending:
        yield torch.cat(pending)


def _first_image(item: Any) -> Tensor:
    return item[0] if isinstance(item, (tuple, list)) else item


def real_batches(source: Any, max_items: int | None = None, mirror: bool = False,
                 batch_size: int = 64, num_workers: int = 0) -> Iterator[Tensor]:
    """This rank's share of the real images as uint8 batches [B, C, H, W].

    Args:
        source: a ``torch.utils.data.Dataset`` (items are images or tuples starting with one),
            read item by item, or any other iterable of uint8 batches.
        max_items: keep the first this many images (after mirroring); None: all.
        mirror: follow the images with their x-flipped copies.
    """
    rank, world = rank_and_world()
    if isinstance(source, torch.utils.data.Dataset):
        yield from _dataset_batches(source, max_items, mirror, batch_size, num_workers, rank, world)
        return
    seen = 0
    for index, batch in enumerate(_mirrored(source, mirror)):
        if max_items is not None:
            batch = batch[: max(max_items - seen, 0)]
        seen += batch.shape[0]
        if batch.shape[0] and index % world == rank:
            yield batch
        if max_items is not None and seen >= max_items:
            return


def _mirrored(batches: Iterable[Tensor], mirror: bool) -> Iterator[Tensor]:
    for batch in batches:
        if not isinstance(batch, Tensor) or batch.dtype != torch.uint8 or batch.ndim != 4:
            raise ValueError(f"real images: expected uint8 batches [B, C, H, W], got "
                             f"{describe_tensor(batch)}")
        yield batch
        if mirror:
            yield batch.flip(-1)


class _MirroredView(torch.utils.data.Dataset):
    """Items 0..N-1 of a dataset, then (with mirror) their x-flips, as bare uint8 images."""

    def __init__(self, source: Any, mirror: bool) -> None:
        self.source = source
        self.mirror = mirror

    def __len__(self) -> int:
        return len(self.source) * (2 if self.mirror else 1)

    def __getitem__(self, index: int) -> Tensor:
        image = _first_image(self.source[index % len(self.source)])
        if not isinstance(image, Tensor) or image.dtype != torch.uint8 or image.ndim != 3:
            raise ValueError(f"real image {index}: expected a uint8 [C, H, W] tensor, got "
                             f"{describe_tensor(image)}")
        return image.flip(-1) if index >= len(self.source) else image


def _dataset_batches(source: Any, max_items: int | None, mirror: bool, batch_size: int, num_workers: int,
                     rank: int, world: int) -> Iterator[Tensor]:
    view = _MirroredView(source, mirror)
    count = len(view) if max_items is None else min(len(view), max_items)
    subset = torch.utils.data.Subset(view, list(range(rank, count, world)))
    yield from torch.utils.data.DataLoader(subset, batch_size=batch_size, num_workers=num_workers)


def collect_features(batches: Iterable[Tensor], extractor: FeatureExtractor,
                     capture_all: bool) -> FeatureStats:
    """Features of this rank's batches, merged over ranks (mean/cov for FID, all rows for KID)."""
    stats = FeatureStats(capture_mean_cov=not capture_all, capture_all=capture_all)
    for batch in batches:
        stats.append(extractor(batch))
    if stats.num_features is None:
        if extractor.feature_dim is None:
            raise ValueError(f"no images reached this rank and feature extractor {extractor.name!r} does not "
                             "state its feature_dim; use fewer ranks or set feature_dim")
        stats.append(np.zeros((0, extractor.feature_dim), dtype=np.float32))
    stats.merge_ranks()
    return stats


@dataclass
class MetricResult:
    """One computed metric, ready to be written as a JSON line.

    ``results`` maps result names to values (one entry for FID/KID, one per level for SWD).
    """

    metric: str
    results: dict[str, float]
    protocol: dict[str, Any]
    detector: dict[str, Any] | None
    num_real: int
    num_gen: int
    total_time: float
    num_ranks: int
    metadata: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        """StyleGAN's JSONL fields (``results``, ``metric``, ``total_time``, ``total_time_str``,
        ``num_gpus``: number of ranks, ``timestamp``) plus what exactly was computed."""
        return {
            "results": self.results,
            "metric": self.metric,
            "total_time": self.total_time,
            "total_time_str": _format_time(self.total_time),
            "num_gpus": self.num_ranks,
            "protocol": self.protocol,
            "detector": self.detector,
            "num_real": self.num_real,
            "num_gen": self.num_gen,
            **self.metadata,
            "timestamp": time.time(),
        }


def _format_time(seconds: float) -> str:
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {(s // 60) % 60:02d}m {s % 60:02d}s"


def compute_metric(protocol: MetricProtocol | str, generate: GenerateFn, labels: LabelSampler,
                   real_images: Any, extractor: FeatureExtractor | None = None, *, z_dim: int | None = None,
                   batch_size: int = 64, batch_gen: int = 4, seed: int = 0,
                   device: str | torch.device = "cpu",
                   dataset_path: str | os.PathLike | None = None,
                   cache_folder: str | os.PathLike | None = None, num_workers: int = 0,
                   metadata: Mapping[str, Any] | None = None) -> MetricResult:
    """Evaluate ``protocol`` for a generator against real images.

    Args:
        protocol: a :class:`MetricProtocol` or a registered name (``"fid50k_full"``).
        generate, labels, real_images: see the module docstring.
        extractor: feature network for FID/KID; None loads the standard Inception detector.
            Any non-standard extractor makes the result ``<protocol>_custom[<name>]``.
        z_dim: latent size (default: ``generate.z_dim``, see ``latent_dim``).
        dataset_path: when given, real statistics are cached per dataset state (see
            :mod:`mimic3d.metrics.cache`) in ``cache_folder`` (default: the mimic3d cache).
        metadata: extra fields for the record (network file, branch, resolution ...).
    """
    if isinstance(protocol, str):
        protocol = get_protocol(protocol)
    z_dim = latent_dim(z_dim, generate)
    start = time.time()
    _, world = rank_and_world()
    fakes = generated_batches(generate, labels, protocol.num_gen, z_dim, batch_size, batch_gen, seed, device)
    reals = real_batches(real_images, protocol.max_real, protocol.mirror, batch_size, num_workers)
    if protocol.kind == "swd":
        results, num_real = _swd(reals, fakes, seed)
        metric, detector_info = protocol.name, None
    else:
        if extractor is None:
            extractor = load_inception(device=device)
        capture_all = protocol.kind == "kid"
        cache_file = None
        if dataset_path is not None:
            cache_file = real_stats_path(dataset_path, extractor.info, protocol.max_real, protocol.mirror,
                                         capture_all, cache_folder)
        real_stats = load_or_compute(cache_file,
                                     lambda: collect_features(reals, extractor, capture_all))
        gen_stats = collect_features(fakes, extractor, capture_all)
        metric = protocol.result_name(extractor.standard, extractor.name)
        if capture_all:
            value = kernel_distance(real_stats.features(), gen_stats.features(), protocol.num_subsets,
                                    protocol.max_subset_size, seed)
        else:
            value = fid_from_stats(gen_stats, real_stats)
        results, num_real, detector_info = {metric: value}, real_stats.num_items, extractor.info
    protocol_record = protocol.to_dict()
    if protocol.kind != "swd":  # the features actually used, which --features may have replaced
        protocol_record["detector"] = extractor.name
    return MetricResult(metric=metric, results=results, protocol=protocol_record, detector=detector_info,
                        num_real=int(num_real or 0), num_gen=protocol.num_gen, total_time=time.time() - start,
                        num_ranks=world, metadata=dict(metadata or {}))


def _swd(reals: Iterable[Tensor], fakes: Iterable[Tensor], seed: int) -> tuple[dict[str, float], int]:
    """SWD results and the number of real images used."""
    rank, world = rank_and_world()
    patch_seed = rank_seed(seed + 1, rank, world)
    real = PatchDescriptors(SWDConfig(), torch.Generator().manual_seed(patch_seed))
    fake = PatchDescriptors(SWDConfig(), torch.Generator().manual_seed(patch_seed))
    for batch in reals:
        real.add(batch)
    for batch in fakes:
        fake.add(batch)
    if real.resolution is None or fake.resolution is None:
        raise ValueError("SWD: every rank needs at least one real and one generated image; use fewer ranks")
    real.merge_ranks()
    fake.merge_ranks()
    return swd_from_descriptors(real, fake, seed), real.num_images


def report_metric(result: MetricResult, run_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Print the JSON line (rank 0) and append it to ``run_dir/metric-<metric>.jsonl`` when given
    (``metric_file_name``)."""
    record = result.record()
    rank, _ = rank_and_world()
    if rank != 0:
        return record
    line = json.dumps(record)
    print(line)
    if run_dir is not None:
        run_dir = Path(run_dir)
        if not run_dir.is_dir():
            raise FileNotFoundError(f"run folder {run_dir} does not exist")
        with open(run_dir / metric_file_name(result.metric), "a", encoding="utf-8") as out:
            out.write(line + "\n")
    return record


def metric_file_name(metric: str) -> str:
    """``metric-<metric>.jsonl``, with a custom network's brackets turned into a plain name part:
    ``fid2k_full_custom[dino]`` -> ``metric-fid2k_full_custom-dino.jsonl``."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", metric.replace("]", "")).strip("-")
    return f"metric-{safe}.jsonl"
