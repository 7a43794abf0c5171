"""The stream of real images a run consumes, resumable from a single position counter.

Indices follow a fresh seeded permutation of the dataset every epoch; step ``k`` takes global
positions ``[k * B, (k + 1) * B)`` of that endless sequence, and each process loads only its
slice of them. The position (images consumed) is all a snapshot needs to continue exactly, and
the global order does not depend on the number of processes.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from mimic3d.camera import PRESETS, CameraPreset, sample_labels
from mimic3d.data import DatasetCameraSampler, ImageDataset
from mimic3d.runtime import available_cpus
from mimic3d.training.randomness import stream_seed

_EPOCH_STREAM = 1  # key separating the shuffling stream from the per-chunk streams
PREFETCH_BATCHES = 2  # batches each loader process prepares ahead


class ShuffledIndices:
    """Endless dataset indices, one seeded permutation per epoch: ``indices(position, count)``."""

    def __init__(self, size: int, seed: int) -> None:
        if size < 1:
            raise ValueError(f"dataset: expected at least one image, got {size}")
        self.size, self.seed = size, seed
        self._epoch: int | None = None
        self._order: Tensor | None = None

    def _permutation(self, epoch: int) -> Tensor:
        if epoch != self._epoch:
            generator = torch.Generator().manual_seed(stream_seed(self.seed, _EPOCH_STREAM, epoch))
            self._order = torch.randperm(self.size, generator=generator)
            self._epoch = epoch
        return self._order

    def indices(self, position: int, count: int) -> list[int]:
        """Dataset indices at global positions ``position .. position + count - 1``."""
        out = []
        for pos in range(position, position + count):
            out.append(int(self._permutation(pos // self.size)[pos % self.size]))
        return out


class _StepSlices(torch.utils.data.Sampler):
    """Batch sampler: this process's slice of every step's global batch, from a start position."""

    def __init__(self, order: ShuffledIndices, batch_size: int, start: int, stop: int, position: int) -> None:
        self.order, self.batch_size, self.start, self.stop, self.position = (
            order,
            batch_size,
            start,
            stop,
            position,
        )

    def __iter__(self) -> Iterator[list[int]]:
        position = self.position
        while True:
            yield self.order.indices(position + self.start, self.stop - self.start)
            position += self.batch_size

    def __len__(self) -> int:
        return 2**62  # endless; DataLoader only needs a number


class RealImageStream:
    """Per-step real batches for one process: ``next_batch() -> (images [b, 3, R, R] in [-1, 1], c [b, 25])``.

    Args:
        dataset: the training set.
        batch_size: global batch per step (all processes together).
        rank, world: this process's slice is ``[rank * b, (rank + 1) * b)`` with b = batch / world.
        seed: shuffling seed.
        position: images consumed before the first batch (from a snapshot).
        workers: DataLoader worker processes (0 loads in this process), each ``PREFETCH_BATCHES``
            ahead; on CUDA batches arrive in pinned memory and are copied without waiting.
    """

    def __init__(
        self,
        dataset: ImageDataset,
        batch_size: int,
        rank: int = 0,
        world: int = 1,
        seed: int = 0,
        position: int = 0,
        workers: int = 0,
        device: torch.device | str = "cpu",
    ) -> None:
        if batch_size % world:
            raise ValueError(f"run.batch_size: {batch_size} is not divisible by the {world} processes")
        if dataset.num_channels != 3:
            raise ValueError(
                f"{dataset.path}: training needs RGB images, got {dataset.num_channels} channels"
            )
        # No more loader processes than CPUs this process may use (more only compete with training,
        # and torch warns): the default 3 (EG3D's) becomes 2 on a 2-core machine.
        workers = min(workers, available_cpus())
        local = batch_size // world
        self.dataset, self.batch_size, self.position, self.device = dataset, batch_size, position, device
        sampler = _StepSlices(
            ShuffledIndices(len(dataset), seed), batch_size, rank * local, (rank + 1) * local, position
        )
        self._iterator = iter(
            torch.utils.data.DataLoader(
                dataset,
                batch_sampler=sampler,
                num_workers=workers,
                pin_memory=torch.device(device).type == "cuda",
                persistent_workers=workers > 0,
                prefetch_factor=PREFETCH_BATCHES if workers > 0 else None,
            )
        )

    def next_batch(self) -> tuple[Tensor, Tensor]:
        images, labels = next(self._iterator)[:2]
        self.position += self.batch_size
        images = images.to(self.device, non_blocking=True).to(torch.float32) / 127.5 - 1
        return images, labels.to(self.device, non_blocking=True).to(torch.float32)


class PresetCameraSampler:
    """Fakes' cameras from a camera preset's pose distribution and focal (``data.gen_cameras``):
    ``sample(batch_size, generator=None, device=None) -> [batch_size, 25]`` like the dataset sampler."""

    def __init__(self, preset: CameraPreset) -> None:
        self.preset = preset

    def sample(
        self,
        batch_size: int,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> Tensor:
        return sample_labels(self.preset, batch_size, generator=generator, device=device)


def fake_camera_sampler(name: str, dataset: ImageDataset) -> DatasetCameraSampler | PresetCameraSampler:
    """``dataset``: the training set's labels (EG3D); else the ``mimic3d.camera.PRESETS`` entry."""
    if name == "dataset":
        return dataset.camera_sampler()
    return PresetCameraSampler(PRESETS[name])
