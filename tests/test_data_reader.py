"""EG3D-format reader and writer: round trips, mirroring, label std, sampling, DataLoader workers."""

from __future__ import annotations

import json
import math
import zipfile

import numpy as np
import pytest
import torch
from numerics import assert_close
from torch.utils.data import DataLoader, DistributedSampler

from mimic3d.camera import intrinsics_matrix, make_label, mirror_label, orbit_cam2world
from mimic3d.data import DatasetWriter, ImageDataset


def _labels(count: int) -> torch.Tensor:
    yaw = math.pi / 2 + torch.linspace(-0.6, 0.6, count, dtype=torch.float64)
    pitch = math.pi / 2 + torch.linspace(0.3, -0.2, count, dtype=torch.float64)
    return make_label(orbit_cam2world(yaw, pitch, 2.7, (0.0, 0.0, 0.2)), intrinsics_matrix(4.2647).double())


def _write(dest, count=6, resolution=16, channels=3, depth=False, mirror=False, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (count, resolution, resolution, channels), dtype=np.uint8)
    depths = rng.uniform(2.0, 3.0, (count, resolution, resolution)).astype(np.float32)
    depths[:, :2] = np.inf  # background rows
    labels = _labels(count)
    with DatasetWriter(dest) as writer:
        for i in range(count):
            writer.add(images[i], labels[i], depth=depths[i] if depth else None, mirror=mirror)
    return images, labels, depths


@pytest.mark.parametrize("container", ["data.zip", "folder"])
def test_round_trip_pixels_and_cameras(tmp_path, container):
    images, labels, depths = _write(tmp_path / container, depth=True)
    dataset = ImageDataset(tmp_path / container, load_depth=True)
    assert len(dataset) == 6 and dataset.resolution == 16 and dataset.image_shape == [3, 16, 16]
    for i in range(6):
        image, label, depth = dataset[i]
        assert image.dtype == torch.uint8 and image.shape == (3, 16, 16)
        assert torch.equal(image, torch.from_numpy(images[i]).permute(2, 0, 1))
        torch.testing.assert_close(label, labels[i].float())
        assert torch.isinf(depth[0, :2]).all()
        # Depth is stored as uint16 codes of 1e-4 world units.
        np.testing.assert_allclose(depth[0, 2:].numpy(), depths[i, 2:], atol=6e-5)


def test_layout_matches_eg3d(tmp_path):
    _write(tmp_path / "d.zip", count=3)
    with zipfile.ZipFile(tmp_path / "d.zip") as archive:
        names = archive.namelist()
        metadata = json.loads(archive.read("dataset.json"))
    assert "00000/img00000000.png" in names and "00000/img00000002.png" in names
    assert [entry[0] for entry in metadata["labels"]] == [f"00000/img0000000{i}.png" for i in range(3)]
    assert all(len(entry[1]) == 25 for entry in metadata["labels"])


def test_grayscale_round_trip(tmp_path):
    images, _, _ = _write(tmp_path / "g.zip", channels=1)
    dataset = ImageDataset(tmp_path / "g.zip")
    assert dataset.num_channels == 1
    assert torch.equal(dataset[2][0], torch.from_numpy(images[2]).permute(2, 0, 1))


def test_mirror_flips_image_and_camera_together(tmp_path):
    images, labels, depths = _write(tmp_path / "m.zip", depth=True)
    dataset = ImageDataset(tmp_path / "m.zip", mirror=True, load_depth=True)
    assert len(dataset) == 12
    for i in range(6):
        image, label, depth = dataset[6 + i]
        assert torch.equal(image, torch.from_numpy(images[i][:, ::-1].copy()).permute(2, 0, 1))
        torch.testing.assert_close(label, mirror_label(labels[i]).float())
        assert torch.equal(depth, dataset[i][2].flip(-1))
        # The mirrored camera sits at minus the x of the original and looks the mirrored way.
        assert label[3] == pytest.approx(-float(labels[i][3]), abs=1e-6)
        origin = dataset.cameras.origin[6 + i]
        torch.testing.assert_close(origin, labels[i][[3, 7, 11]].float() * torch.tensor([-1.0, 1.0, 1.0]))


def test_baked_mirror_copies_match_reader_mirroring(tmp_path):
    _write(tmp_path / "b.zip", count=3, mirror=True)
    baked = ImageDataset(tmp_path / "b.zip")
    assert len(baked) == 6
    assert baked.names[:2] == ["00000/img00000000.png", "00000/img00000000_mirror.png"]
    image, label = baked[0]
    mirrored_image, mirrored_label = baked[1]
    assert torch.equal(mirrored_image, image.flip(-1))
    torch.testing.assert_close(mirrored_label, mirror_label(label))


def test_label_std_and_camera_sampler(tmp_path):
    _, labels, _ = _write(tmp_path / "s.zip")
    dataset = ImageDataset(tmp_path / "s.zip", mirror=True)
    assert_close(dataset.label_std, labels.numpy().std(0), terms=12, depth=2, scale=3.0)  # 12 labels
    sampler = dataset.camera_sampler()
    drawn = sampler.sample(64, generator=torch.Generator().manual_seed(0))
    assert drawn.shape == (64, 25)
    pool = torch.cat([labels.float(), mirror_label(labels).float()])
    # Every drawn camera is one of the dataset's (mirrored ones included), and both halves occur.
    matches = (drawn[:, None] - pool[None]).abs().amax(-1) < 1e-6
    assert matches.any(1).all()
    assert matches[:, :6].any() and matches[:, 6:].any()


def test_max_size_subset_is_deterministic(tmp_path):
    _write(tmp_path / "x.zip")
    a = ImageDataset(tmp_path / "x.zip", max_size=3, seed=1)
    b = ImageDataset(tmp_path / "x.zip", max_size=3, seed=1)
    assert len(a) == 3 and list(a.raw_index) == list(b.raw_index)
    assert list(a.raw_index) == sorted(a.raw_index)


def test_dataloader_workers_over_zip(tmp_path):
    images, labels, _ = _write(tmp_path / "w.zip", count=8)
    dataset = ImageDataset(tmp_path / "w.zip", mirror=True)
    dataset[0]  # open the zip in the parent first: workers must not reuse its handle
    loader = DataLoader(dataset, batch_size=3, num_workers=2, shuffle=False)
    got_images, got_labels = zip(*loader)
    got_images, got_labels = torch.cat(got_images), torch.cat(got_labels)
    expected = torch.from_numpy(images).permute(0, 3, 1, 2)
    assert torch.equal(got_images[:8], expected)
    assert torch.equal(got_images[8:], expected.flip(-1))
    torch.testing.assert_close(got_labels[8:], mirror_label(labels).float())


def test_distributed_sampler_partitions_the_dataset(tmp_path):
    _write(tmp_path / "d.zip", count=5)
    dataset = ImageDataset(tmp_path / "d.zip", mirror=True)
    seen = []
    for rank in range(2):
        sampler = DistributedSampler(dataset, num_replicas=2, rank=rank, shuffle=True, seed=3)
        seen += list(sampler)
        assert len(list(sampler)) == 5
    assert sorted(seen) == list(range(10))


def test_pickled_dataset_reopens_zip(tmp_path):
    import pickle

    images, _, _ = _write(tmp_path / "p.zip")
    dataset = ImageDataset(tmp_path / "p.zip")
    dataset[0]
    clone = pickle.loads(pickle.dumps(dataset))
    assert clone.archive._zip is None
    assert torch.equal(clone[4][0], torch.from_numpy(images[4]).permute(2, 0, 1))


def test_requested_resolution_is_enforced(tmp_path):
    _write(tmp_path / "r.zip")
    with pytest.raises(ValueError, match="resolution 32 was requested"):
        ImageDataset(tmp_path / "r.zip", resolution=32)


def test_writer_refuses_to_overwrite_and_cleans_up(tmp_path):
    _write(tmp_path / "o.zip")
    with pytest.raises(ValueError, match="already exists"):
        DatasetWriter(tmp_path / "o.zip")
    with pytest.raises(RuntimeError):
        with DatasetWriter(tmp_path / "new.zip") as writer:
            writer.add(np.zeros((8, 8, 3), np.uint8), _labels(1)[0])
            raise RuntimeError("interrupted")
    assert not (tmp_path / "new.zip").exists() and not (tmp_path / "new.zip.partial").exists()
