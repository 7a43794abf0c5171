"""``mimic3d dataset check``: find every problem of an EG3D-format dataset and summarise it.

The checks are the ones the reader (``ImageDataset``) applies, with the same messages, but they
are run over every file and collected instead of stopping at the first one.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from mimic3d.data.archive import Archive
from mimic3d.data.dataset import check_image_shape, decode_depth, depth_name, read_metadata
from mimic3d.data.images import decode_image
from mimic3d.data.labels import METADATA_NAME, camera_angles, label_entries, stack_labels


@dataclass
class CheckReport:
    """What ``check_dataset`` found: problems (one line each, naming the file) and a summary."""

    path: str
    problems: list[str] = field(default_factory=list)
    count: int = 0
    resolution: int | None = None
    channels: int | None = None
    labels: np.ndarray | None = None  # [N, 25] labels of the images with valid cameras
    has_depth: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        """Multi-line human-readable summary (counts, resolution, camera ranges)."""
        lines = [f"dataset:     {self.path}", f"images:      {self.count}"]
        if self.resolution is not None:
            lines.append(f"resolution:  {self.resolution}x{self.resolution}, {self.channels} channel(s)")
        lines.append(f"depth maps:  {'yes' if self.has_depth else 'no'}")
        if self.labels is not None and len(self.labels):
            angles = camera_angles(self.labels)
            focal = self.labels[:, 16]
            for key, unit in (("radius", ""), ("yaw", " deg"), ("elevation", " deg")):
                values = angles[key]
                lines.append(
                    f"camera {key + ':':<11}{values.min():8.3f} .. {values.max():8.3f}{unit} "
                    f"(mean {values.mean():.3f}, std {values.std():.3f})"
                )
            lines.append(f"focal:       {focal.min():.4f} .. {focal.max():.4f} (normalised)")
            lines.append(
                "  (yaw: degrees around +y, 0 = camera on +z facing the subject; "
                "elevation: degrees above the xz plane)"
            )
        lines.append(f"problems:    {len(self.problems)}")
        return "\n".join(lines)


def check_dataset(path: str | os.PathLike, progress: bool = False) -> CheckReport:
    """Check every image, label and depth map of a dataset (folder or zip).

    Raises FileNotFoundError / ValueError only when ``path`` is not a dataset container at all;
    everything else is collected in ``CheckReport.problems``.
    """
    archive = Archive(path)
    report = CheckReport(path=archive.path)
    report.problems += archive.problems()
    names = archive.image_names()
    report.count = len(names)
    if not names:
        report.problems.append(
            f"{archive.path}: no images found (expected .png or .jpg files and {METADATA_NAME})"
        )
        return report

    metadata: dict = {}
    try:
        metadata = read_metadata(archive)
    except ValueError as err:
        report.problems.append(str(err))
    if metadata:
        table, problems = label_entries(metadata, archive.describe(METADATA_NAME))
        labels, label_problems = stack_labels(table, names, archive.describe, archive.describe(METADATA_NAME))
        report.problems += problems + label_problems
        valid = np.abs(labels).sum(1) > 0
        report.labels = labels[valid]

    shapes: dict[str, tuple[int, ...]] = {}
    for name in tqdm(names, desc="check images", unit="img", disable=not progress):
        where = archive.describe(name)
        try:
            image = decode_image(archive.read(name), where)
            check_image_shape(image, where, expected=None)
            shapes[name] = image.shape
        except (ValueError, FileNotFoundError) as err:
            report.problems.append(str(err))
    if shapes:
        # The most common shape is the dataset's; the odd ones out are the problems.
        reference = Counter(shapes.values()).most_common(1)[0][0]
        reference_name = next(name for name, shape in shapes.items() if shape == reference)
        report.resolution, report.channels = reference[0], reference[2]
        for name, shape in shapes.items():
            if shape != reference:
                try:
                    check_image_shape(
                        np.empty(shape, dtype=np.uint8),
                        archive.describe(name),
                        reference,
                        reference=f"'{reference_name}'",
                    )
                except ValueError as err:
                    report.problems.append(str(err))

    spec = metadata.get("depth") if metadata else None
    if spec is not None:
        report.has_depth = True
        for name in tqdm(names, desc="check depth", unit="map", disable=not progress):
            member = depth_name(name)
            where = archive.describe(member)
            try:
                depth = decode_depth(archive.read(member), spec, where)
            except (ValueError, FileNotFoundError, KeyError) as err:
                report.problems.append(
                    str(err) if not isinstance(err, KeyError) else f"{where}: bad depth spec {err}"
                )
                continue
            if report.resolution is not None and depth.shape != (report.resolution, report.resolution):
                report.problems.append(
                    f"{where}: depth map is {list(depth.shape)}, expected "
                    f"[{report.resolution}, {report.resolution}]"
                )
    archive.close()
    return report
