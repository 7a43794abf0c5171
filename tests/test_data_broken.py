"""A corpus of broken datasets: `check` and the reader must both name the bad file and the problem."""

from __future__ import annotations

import io
import json
import math
import zipfile

import numpy as np
import PIL.Image
import pytest
import torch

from mimic3d.camera import intrinsics_matrix, make_label, orbit_cam2world, to_opengl
from mimic3d.cli.main import main
from mimic3d.data import ImageDataset
from mimic3d.data.check import check_dataset

GOOD_LABEL = make_label(
    orbit_cam2world(math.pi / 2 + 0.2, math.pi / 2, 2.7), intrinsics_matrix(4.2647)
).tolist()


def _png(size=(8, 8), mode="RGB") -> bytes:
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    rng = np.random.default_rng(size[0] * 7 + channels)
    pixels = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    buffer = io.BytesIO()
    PIL.Image.fromarray(pixels[:, :, 0] if channels == 1 else pixels, mode).save(buffer, format="png")
    return buffer.getvalue()


def _label_with(index: int, value: float) -> list[float]:
    label = list(GOOD_LABEL)
    label[index] = value
    return label


def _members(
    overrides: dict | None = None, labels: dict | None = None, count: int = 3
) -> list[tuple[str, bytes]]:
    """Members of a 3-image dataset (img0..img2) with some files or labels replaced."""
    files = {f"img{i}.png": _png() for i in range(count)}
    files.update(overrides or {})
    table = {name: GOOD_LABEL for name in files if name.endswith(".png")}
    table.update(labels or {})
    metadata = {"labels": [[name, label] for name, label in table.items() if label is not None]}
    return [*files.items(), ("dataset.json", json.dumps(metadata).encode())]


def _zip(path, members: list[tuple[str, bytes]]):
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members:
            archive.writestr(name, data)
    return path


CASES = {
    "truncated_png": (_members({"img1.png": _png()[:40]}), "img1.png", "truncated or corrupt"),
    "not_an_image": (_members({"img0.png": b"hello"}), "img0.png", "not an image"),
    "grayscale_rgb_mix": (_members({"img2.png": _png(mode="L")}), "img2.png", "1 channel(s)"),
    "wrong_size": (_members({"img2.png": _png((16, 16))}), "img2.png", "16x16"),
    "not_square": (
        _members({f"img{i}.png": _png((8, 4)) for i in range(3)}),
        "img0.png",
        "square power-of-two",
    ),
    "missing_label": (_members(labels={"img1.png": None}), "img1.png", "no camera label"),
    "nan_label": (_members(labels={"img2.png": _label_with(5, float("nan"))}), "img2.png", "non-finite"),
    "label_24_floats": (_members(labels={"img0.png": GOOD_LABEL[:24]}), "img0.png", "24 values, expected 25"),
    "non_rotation": (_members(labels={"img1.png": _label_with(0, 2.0)}), "img1.png", "not orthonormal"),
    "negative_focal": (_members(labels={"img1.png": _label_with(16, -4.0)}), "img1.png", "focal length"),
    "opengl_pose": (
        _members(
            labels={
                "img2.png": make_label(
                    to_opengl(torch.tensor(GOOD_LABEL[:16]).reshape(4, 4)), intrinsics_matrix(4.2647)
                ).tolist()
            }
        ),
        "img2.png",
        "looks away",
    ),
    "camera_at_origin": (
        _members(labels={"img0.png": [v if k not in (3, 7, 11) else 0.0 for k, v in enumerate(GOOD_LABEL)]}),
        "img0.png",
        "from the world origin",
    ),
    "label_for_unknown_file": (_members(labels={"ghost.png": GOOD_LABEL}), "ghost.png", "not an image"),
    "path_traversal": (_members({"../evil.png": _png()}), "../evil.png", "path traversal"),
    "empty": ([("dataset.json", b'{"labels": []}')], "", "no images found"),
    "invalid_json": (_members()[:-1] + [("dataset.json", b"{labels:")], "dataset.json", "invalid JSON"),
    "no_metadata": (_members()[:-1], "", "no dataset.json"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_check_and_reader_report_the_same_problem(tmp_path, case):
    members, culprit, phrase = CASES[case]
    path = _zip(tmp_path / f"{case}.zip", members)
    report = check_dataset(path)
    matching = [p for p in report.problems if culprit in p and phrase in p]
    assert matching, f"no problem naming {culprit!r} with {phrase!r} in {report.problems}"
    with pytest.raises(ValueError) as raised:
        dataset = ImageDataset(path)
        for i in range(len(dataset)):
            dataset[i]
    assert culprit in str(raised.value) and phrase in str(raised.value)
    assert str(raised.value) in report.problems


def test_duplicate_zip_members_are_reported(tmp_path):
    members = _members()
    path = tmp_path / "dup.zip"
    with pytest.warns(UserWarning, match="Duplicate name"):
        _zip(path, members + [("img1.png", _png())])
    report = check_dataset(path)
    assert any("'img1.png' appears 2 times" in p for p in report.problems)
    with pytest.raises(ValueError, match="img1.png' appears 2 times"):
        ImageDataset(path)


def test_duplicate_label_entries_are_reported(tmp_path):
    members = _members()
    metadata = json.loads(members[-1][1])
    metadata["labels"].append(["img0.png", GOOD_LABEL])
    path = _zip(tmp_path / "duplabel.zip", members[:-1] + [("dataset.json", json.dumps(metadata).encode())])
    with pytest.raises(ValueError, match="'img0.png' has more than one label"):
        ImageDataset(path)


def test_folder_dataset_names_the_file_path(tmp_path):
    root = tmp_path / "folder"
    for name, data in _members({"img1.png": _png()[:40]}):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    report = check_dataset(root)
    assert any(p.startswith(str(root).replace("\\", "/") + "/img1.png") for p in report.problems)


def test_good_dataset_has_no_problems(tmp_path):
    report = check_dataset(_zip(tmp_path / "good.zip", _members()))
    assert report.ok and report.count == 3 and report.resolution == 8


def test_missing_path_and_non_zip(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.zip"):
        ImageDataset(tmp_path / "nope.zip")
    (tmp_path / "fake.zip").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a zip archive"):
        check_dataset(tmp_path / "fake.zip")


def test_cli_check_exit_codes(tmp_path, capsys):
    broken = _zip(tmp_path / "broken.zip", CASES["nan_label"][0])
    assert main(["dataset", "check", str(broken), "--no-plot"]) == 1
    out = capsys.readouterr().out
    assert "problem:" in out and "img2.png" in out
    assert main(["dataset", "check", str(tmp_path / "missing.zip")]) == 2
    assert "missing.zip" in capsys.readouterr().err
