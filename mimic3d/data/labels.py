"""Camera labels of an EG3D-format dataset: parsing ``dataset.json``, checks, pose statistics.

``dataset.json`` holds ``{"labels": [[relative_path, [25 floats]], ...]}``; each label is an
EG3D camera: 16 cam2world + 9 normalised intrinsics, as NVlabs/eg3d's ``dataset_preprocessing``
scripts write them. Extra keys (``depth``, ``synth``) are ignored by EG3D.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import numpy as np
import torch

from mimic3d.camera import validate_label

METADATA_NAME = "dataset.json"
LABEL_DIM = 25
# Cameras outside this distance from the world origin are treated as a unit or convention error.
MIN_RADIUS, MAX_RADIUS = 1e-3, 1e4


def parse_metadata(data: bytes, where: str) -> dict:
    """The decoded ``dataset.json`` object; ValueError naming ``where`` when malformed."""
    try:
        metadata = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{where}: invalid JSON ({err})") from None
    if not isinstance(metadata, dict):
        raise ValueError(f"{where}: expected a JSON object with a 'labels' list")
    return metadata


def label_entries(metadata: dict, where: str) -> tuple[dict[str, list], list[str]]:
    """Map image name -> raw label from ``metadata['labels']``, plus structural problems.

    Returns:
        (labels by name, problems). Entries that are not ``[name, list]`` pairs and repeated
        names are reported as problems (the first occurrence is kept).
    """
    raw = metadata.get("labels")
    if raw is None:
        return {}, [f"{where}: no camera labels ('labels' is missing or null)"]
    if not isinstance(raw, list):
        return {}, [f"{where}: 'labels' must be a list of [relative_path, [25 floats]] pairs"]
    table: dict[str, list] = {}
    problems = []
    for i, entry in enumerate(raw):
        if not (isinstance(entry, (list, tuple)) and len(entry) == 2 and isinstance(entry[0], str)):
            problems.append(
                f"{where}: labels[{i}] must be [relative_path, [25 floats]], got {str(entry)[:60]}"
            )
            continue
        name, label = entry[0].replace("\\", "/"), entry[1]
        if name in table:
            problems.append(f"{where}: '{name}' has more than one label (duplicate name)")
            continue
        table[name] = label
    return table, problems


def _shape_problem(label: object, where: str) -> str | None:
    if not isinstance(label, (list, tuple)) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in label
    ):
        return f"{where}: camera label must be a list of {LABEL_DIM} numbers"
    if len(label) != LABEL_DIM:
        return (
            f"{where}: camera label has {len(label)} values, expected {LABEL_DIM} "
            "(16 cam2world + 9 intrinsics)"
        )
    return None


def label_problem(label: object, where: str) -> str | None:
    """Why one raw label is not a usable camera (None when it is).

    Checks: 25 finite numbers, a valid EG3D camera (orthonormal rotation, bottom row, positive
    focal: ``mimic3d.camera.validate_label``), a plausible distance to the origin, and a camera
    that looks toward the origin rather than away (the sign of a Blender/OpenGL label).
    """
    problem = _shape_problem(label, where)
    if problem is not None:
        return problem
    c = np.asarray(label, dtype=np.float64)
    try:
        validate_label(torch.from_numpy(c), name=f"{where}: camera")
    except ValueError as err:
        return str(err)
    return pose_problem(c, where)


def pose_problem(label: np.ndarray, where: str) -> str | None:
    """Distance and facing checks for one valid label [25] (None when plausible)."""
    radius, cos_angle = _radius_and_facing(label[None])
    radius, cos_angle = float(radius[0]), float(cos_angle[0])
    if not MIN_RADIUS <= radius <= MAX_RADIUS:
        return (
            f"{where}: camera is {radius:.3g} units from the world origin "
            f"(expected between {MIN_RADIUS:g} and {MAX_RADIUS:g})"
        )
    if cos_angle < 0.0:
        angle = math.degrees(math.acos(max(-1.0, min(1.0, cos_angle))))
        return (
            f"{where}: camera looks away from the world origin ({angle:.0f} degrees off); "
            "an OpenGL/Blender pose? convert with --convention blender or opengl"
        )
    return None


def _radius_and_facing(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[N] distance to the origin and cosine between the view direction and the direction to it."""
    position = labels[:, [3, 7, 11]]
    forward = labels[:, [2, 6, 10]]
    radius = np.linalg.norm(position, axis=1)
    cos_angle = -(forward * position).sum(1) / np.maximum(radius, 1e-30)
    return radius, cos_angle


def stack_labels(
    table: dict[str, list], names: list[str], describe: Callable[[str], str], where: str
) -> tuple[np.ndarray, list[str]]:
    """float32 [len(names), 25] labels in the order of ``names``, plus one problem per bad entry.

    Missing or invalid labels leave a zero row and a problem naming the image file (as
    ``describe(name)`` spells it; ``where`` names ``dataset.json``). All labels are checked in
    one batch; only a failing batch is re-checked label by label for messages.
    """
    problems = []
    rows, values = [], []
    for i, name in enumerate(names):
        if name not in table:
            problems.append(f"{describe(name)}: no camera label in {METADATA_NAME}")
            continue
        problem = _shape_problem(table[name], describe(name))
        if problem is not None:
            problems.append(problem)
            continue
        rows.append(i)
        values.append(table[name])
    batch = np.asarray(values, dtype=np.float64).reshape(-1, LABEL_DIM)
    valid = np.ones(len(rows), dtype=bool)
    try:
        validate_label(torch.from_numpy(batch), name="camera")
        radius, cos_angle = _radius_and_facing(batch)
        valid = (radius >= MIN_RADIUS) & (radius <= MAX_RADIUS) & (cos_angle >= 0.0)
    except ValueError:
        valid[:] = False
    for k in np.flatnonzero(~valid):
        problem = label_problem(values[k], describe(names[rows[k]]))
        if problem is not None:
            problems.append(problem)
            valid[k] = False
        else:
            valid[k] = True
    labels = np.zeros([len(names), LABEL_DIM], dtype=np.float32)
    labels[np.asarray(rows, dtype=np.int64)[valid]] = batch[valid].astype(np.float32)
    known = set(names)
    for name in table:
        if name not in known:
            problems.append(f"{where}: labels '{name}', which is not an image in the dataset")
    return labels, problems


def camera_angles(labels: np.ndarray) -> dict[str, np.ndarray]:
    """Camera positions as radius, yaw and elevation (degrees), for summaries and plots.

    Args:
        labels: [N, 25] EG3D labels.
    Returns:
        dict of [N] arrays: ``radius`` (distance to the world origin), ``yaw`` (degrees around
        +y, 0 = in front of the subject on +z, positive toward +x), ``elevation`` (degrees
        above the xz plane).
    """
    position = labels[:, [3, 7, 11]].astype(np.float64)
    radius = np.linalg.norm(position, axis=1)
    yaw = np.degrees(np.arctan2(position[:, 0], position[:, 2]))
    elevation = np.degrees(np.arcsin(np.clip(position[:, 1] / np.maximum(radius, 1e-12), -1.0, 1.0)))
    return {"radius": radius, "yaw": yaw, "elevation": elevation}
