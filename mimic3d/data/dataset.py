"""The EG3D-format image dataset: uint8 CHW images with their camera labels.

Layout (identical to EG3D's ``dataset_tool.py`` output, folder or zip)::

    00000/img00000000.png ...       images (sorted by name; the labels follow that order)
    dataset.json                    {"labels": [["00000/img00000000.png", [25 floats]], ...]}

Optional ground-truth depth (written by ``mimic3d dataset synth``) sits beside each image as
``<image stem>_depth.npy`` and is described by ``dataset.json["depth"]``.
"""

from __future__ import annotations

import io
import os

import numpy as np
import torch

from mimic3d.camera import Camera, mirror_label
from mimic3d.data.archive import Archive
from mimic3d.data.images import decode_image
from mimic3d.data.labels import METADATA_NAME, label_entries, parse_metadata, stack_labels

DEPTH_SUFFIX = "_depth.npy"


def depth_name(image_name: str) -> str:
    """Member name of the depth map stored beside ``image_name``."""
    return os.path.splitext(image_name)[0] + DEPTH_SUFFIX


def decode_depth(data: bytes, spec: dict, where: str) -> np.ndarray:
    """Depth map float32 [H, W] in world units from a stored ``.npy``; background pixels are inf.

    Args:
        data: ``.npy`` bytes of integer depth codes.
        spec: ``dataset.json["depth"]``: ``scale`` (world units per code) and ``background`` code.
    """
    try:
        codes = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise ValueError(f"{where}: cannot read depth map ({err})") from None
    if codes.ndim != 2:
        raise ValueError(f"{where}: depth map must be 2-D [H, W], got shape {list(codes.shape)}")
    depth = codes.astype(np.float32) * np.float32(spec["scale"])
    depth[codes == spec["background"]] = np.inf
    return depth


def check_image_shape(
    image: np.ndarray, where: str, expected: tuple[int, int, int] | None, reference: str = "the first image"
) -> None:
    """ValueError unless ``image`` [H, W, C] is square power-of-two with 1/3/4 channels and, when
    ``expected`` is given, has the shape of the ``reference`` image."""
    height, width, channels = image.shape
    if expected is not None and image.shape != expected:
        raise ValueError(
            f"{where}: image is {width}x{height} with {channels} channel(s), but {reference} is "
            f"{expected[1]}x{expected[0]} with {expected[2]} channel(s) (all images must match)"
        )
    if width != height or width & (width - 1) or width < 4:
        raise ValueError(f"{where}: image is {width}x{height}; expected a square power-of-two resolution")
    if channels not in (1, 3, 4):
        raise ValueError(f"{where}: image has {channels} channels, expected 1, 3 or 4")


class ImageDataset(torch.utils.data.Dataset):
    """Random access to an EG3D-format dataset (folder or zip) with camera labels.

    Items are ``(image uint8 [C, R, R], label float32 [25])``, plus ``depth float32 [1, R, R]``
    (inf on background) when ``load_depth``. With ``mirror`` the dataset has twice as many
    items; the second half are x-flipped copies whose cameras are mirrored with
    ``mimic3d.camera.mirror_label`` (EG3D's xflip flips only the image).

    Works with DataLoader workers (each process opens the zip itself) and with
    ``DistributedSampler`` (plain map-style dataset).

    Args:
        path: dataset folder or zip.
        resolution: required resolution (ValueError if the images differ); None accepts any.
        mirror: add mirrored copies of every sample.
        max_size: keep a random subset of this many images (chosen with ``seed``), before mirroring.
        load_depth: also return the stored ground-truth depth (synthetic datasets).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        resolution: int | None = None,
        mirror: bool = False,
        max_size: int | None = None,
        seed: int = 0,
        load_depth: bool = False,
    ) -> None:
        self.archive = Archive(path)
        self.path = self.archive.path
        problems = self.archive.problems()
        if problems:
            raise ValueError(problems[0])
        self.names = self.archive.image_names()
        if not self.names:
            raise ValueError(
                f"{self.path}: no images found (expected .png or .jpg files and {METADATA_NAME})"
            )
        self.metadata = read_metadata(self.archive)
        table, problems = label_entries(self.metadata, self.archive.describe(METADATA_NAME))
        raw_labels, label_problems = stack_labels(
            table, self.names, self.archive.describe, self.archive.describe(METADATA_NAME)
        )
        problems += label_problems
        if problems:
            raise ValueError(problems[0])
        self.raw_labels = torch.from_numpy(raw_labels)
        self.image_shape_hwc = self._decode(0, expected=None).shape
        if resolution is not None and self.resolution != resolution:
            raise ValueError(
                f"{self.path}: images are {self.resolution}x{self.resolution}, "
                f"but resolution {resolution} was requested"
            )
        self.depth_spec = self.metadata.get("depth") if load_depth else None
        if load_depth and self.depth_spec is None:
            raise ValueError(
                f"{self.archive.describe(METADATA_NAME)}: no 'depth' entry; this dataset has no depth maps"
            )

        raw_index = np.arange(len(self.names), dtype=np.int64)
        if max_size is not None and max_size < raw_index.size:
            np.random.RandomState(seed).shuffle(raw_index)
            raw_index = np.sort(raw_index[:max_size])
        flip = np.zeros(raw_index.size, dtype=bool)
        if mirror:
            raw_index = np.concatenate([raw_index, raw_index])
            flip = np.concatenate([flip, np.ones_like(flip)])
        self.raw_index = raw_index
        self.flip = flip
        labels = self.raw_labels[torch.from_numpy(raw_index)]
        if mirror:
            labels[torch.from_numpy(flip)] = mirror_label(labels[torch.from_numpy(flip)])
        self.labels = labels

    @property
    def resolution(self) -> int:
        return int(self.image_shape_hwc[0])

    @property
    def num_channels(self) -> int:
        return int(self.image_shape_hwc[2])

    @property
    def image_shape(self) -> list[int]:
        """[C, R, R] of every item."""
        return [self.num_channels, self.resolution, self.resolution]

    @property
    def label_dim(self) -> int:
        return int(self.raw_labels.shape[1])

    @property
    def label_std(self) -> torch.Tensor:
        """[25] per-entry standard deviation of the stored labels (EG3D's ``get_label_std``)."""
        return self.raw_labels.std(0, unbiased=False)

    @property
    def cameras(self) -> Camera:
        """Cameras of all items (mirrored ones included): cam2world [len, 4, 4], intrinsics [len, 3, 3]."""
        return Camera.from_label(self.labels)

    def __len__(self) -> int:
        return int(self.raw_index.size)

    def _decode(self, raw_idx: int, expected: tuple[int, int, int] | None) -> np.ndarray:
        name = self.names[raw_idx]
        where = self.archive.describe(name)
        image = decode_image(self.archive.read(name), where)
        check_image_shape(image, where, expected, reference=f"'{self.names[0]}'")
        return image

    def load_image(self, idx: int) -> torch.Tensor:
        """uint8 [C, R, R] image of item ``idx`` (x-flipped for mirrored items)."""
        image = self._decode(int(self.raw_index[idx]), expected=tuple(self.image_shape_hwc))
        if self.flip[idx]:
            image = image[:, ::-1]
        return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))

    def load_depth(self, idx: int) -> torch.Tensor:
        """float32 [1, R, R] ground-truth depth of item ``idx`` (inf on background)."""
        if self.depth_spec is None:
            raise ValueError(f"{self.path}: depth was not requested (use load_depth=True)")
        name = depth_name(self.names[int(self.raw_index[idx])])
        depth = decode_depth(self.archive.read(name), self.depth_spec, self.archive.describe(name))
        if depth.shape != (self.resolution, self.resolution):
            raise ValueError(
                f"{self.archive.describe(name)}: depth map is {list(depth.shape)}, "
                f"expected [{self.resolution}, {self.resolution}]"
            )
        if self.flip[idx]:
            depth = depth[:, ::-1]
        return torch.from_numpy(np.ascontiguousarray(depth))[None]

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, ...]:
        if self.depth_spec is not None:
            return self.load_image(idx), self.labels[idx].clone(), self.load_depth(idx)
        return self.load_image(idx), self.labels[idx].clone()

    def camera_sampler(self) -> DatasetCameraSampler:
        """Sampler of rendering cameras drawn from this dataset's labels (mirrored ones included)."""
        return DatasetCameraSampler(self.labels)

    def close(self) -> None:
        self.archive.close()


class DatasetCameraSampler:
    """Draws cameras uniformly from a dataset's labels (EG3D renders fakes from real poses).

    Args:
        labels: [N, 25] camera labels.
    """

    def __init__(self, labels: torch.Tensor) -> None:
        if labels.ndim != 2 or labels.shape[0] == 0:
            raise ValueError(f"labels: expected a non-empty [N, 25] tensor, got {list(labels.shape)}")
        self.labels = labels.float()

    def sample(
        self,
        batch_size: int,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """[batch_size, 25] labels drawn with replacement (on the CPU, then copied to ``device``
        from pinned memory without waiting for it)."""
        index = torch.randint(self.labels.shape[0], (batch_size,), generator=generator)
        labels = self.labels[index]
        if device is not None and torch.device(device).type == "cuda":
            return labels.pin_memory().to(device, non_blocking=True)
        return labels.to(device)


def read_metadata(archive: Archive) -> dict:
    """Parsed ``dataset.json`` of an archive; ValueError when it is absent or malformed."""
    if not archive.contains(METADATA_NAME):
        raise ValueError(
            f"{archive.path}: no {METADATA_NAME} with camera labels (EG3D-format datasets "
            "need one; create it with `mimic3d dataset build`)"
        )
    return parse_metadata(archive.read(METADATA_NAME), archive.describe(METADATA_NAME))
