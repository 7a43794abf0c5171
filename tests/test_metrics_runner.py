"""Protocols and the metric runner, with a toy generator, toy images and a tiny random feature network."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from mimic3d.camera import orbit_cam2world
from mimic3d.data import DatasetCameraSampler
from mimic3d.metrics.custom import (
    custom_extractor,
    fid_with_features,
    kid_with_features,
    load_feature_network,
)
from mimic3d.metrics.distributed import gather_rows
from mimic3d.metrics.protocols import PROTOCOLS, MetricProtocol, get_protocol
from mimic3d.metrics.runner import (
    collect_features,
    compute_metric,
    generated_batches,
    quantize_images,
    real_batches,
    report_metric,
)

RES = 16


def toy_labels(count: int = 12) -> torch.Tensor:
    """[count, 25] EG3D labels on a yaw arc (cam2world then normalised intrinsics)."""
    yaw = torch.linspace(1.2, 1.9, count)
    cam2world = orbit_cam2world(yaw, torch.full_like(yaw, np.pi / 2))
    intrinsics = torch.tensor([[4.26, 0, 0.5], [0, 4.26, 0.5], [0, 0, 1]]).expand(count, 3, 3)
    return torch.cat([cam2world.reshape(count, 16), intrinsics.reshape(count, 9)], dim=1)


class ToyGenerator:
    """A fixed function of (z, c): colour from z, a horizontal ramp whose slope is the camera's x."""

    z_dim = 512  # read by the runner, as from a generator

    def __init__(self, offset: float = 0.0) -> None:
        self.offset = offset
        self.calls: list[tuple[int, torch.Tensor]] = []

    def __call__(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        self.calls.append((z.shape[0], c.clone()))
        ramp = torch.linspace(-1, 1, RES)[None, None, None, :] * c[:, 3, None, None, None]
        colour = torch.tanh(z[:, :3, None, None] * 0.6 + self.offset)
        return (colour * 0.7 + ramp * 0.3).expand(-1, 3, RES, RES)


class ToyDataset(torch.utils.data.Dataset):
    """Map-style real set like ImageDataset: (uint8 image [3, R, R], label [25]) items."""

    def __init__(self, count: int, offset: float = 0.0, seed: int = 1) -> None:
        gen = torch.Generator().manual_seed(seed)
        labels = toy_labels()
        self.labels = labels[torch.randint(len(labels), (count,), generator=gen)]
        z = torch.randn(count, 512, generator=gen)
        self.images = quantize_images(ToyGenerator(offset)(z, self.labels))

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.labels[index]


toy_dataset = ToyDataset


def tiny_extractor(counter: list[int] | None = None, fingerprint: str | None = None):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()

    def features(images: torch.Tensor) -> torch.Tensor:
        if counter is not None:
            counter.append(images.shape[0])
        return net(images.float() / 127.5 - 1)

    return custom_extractor(features, "tiny", feature_dim=16, fingerprint=fingerprint)


TOY_FID = MetricProtocol("fid_toy", "fid", num_gen=96, max_real=None)


def test_registry_names_say_what_is_computed():
    full = get_protocol("fid50k_full")
    assert (full.kind, full.num_gen, full.max_real, full.mirror) == ("fid", 50_000, None, False)
    assert full.real_set == "full"
    assert full.detector == "inception-2015-12-05"
    assert get_protocol("kid50k_full").real_set == "full" and get_protocol("kid50k_full").num_subsets == 100
    assert get_protocol("fid2k_full").num_gen == 2048 and get_protocol("fid10k").real_set == "10000"
    assert get_protocol("swd16k").detector is None
    assert full.result_name(True, "inception-2015-12-05") == "fid50k_full"
    assert full.result_name(False, "tiny") == "fid50k_full_custom[tiny]"
    assert {"fid50k_full", "kid50k_full", "fid10k", "fid2k_full", "kid2k_full"} <= set(PROTOCOLS)
    with pytest.raises(ValueError, match="unknown metric 'fid1k'; known metrics: fid50k_full"):
        get_protocol("fid1k")
    with pytest.raises(ValueError, match="kind"):
        MetricProtocol("bad", "lpips", num_gen=10, max_real=None)


def test_quick_runs_are_renamed():
    full = get_protocol("fid50k_full")
    assert full.with_counts() == full and full.with_counts(num_gen=50_000) == full
    quick = full.with_counts(num_gen=1000)
    assert (quick.name, quick.num_gen, quick.max_real) == ("fid50k_full_gen1000", 1000, None)
    assert quick.real_set == "full"
    both = get_protocol("kid50k_full").with_counts(num_gen=64, max_real=500)
    assert (both.name, both.num_gen, both.max_real) == ("kid50k_full_gen64_real500", 64, 500)
    assert both.real_set == "500"
    assert both.result_name(False, "tiny") == "kid50k_full_gen64_real500_custom[tiny]"
    with pytest.raises(ValueError, match="at least 2"):
        full.with_counts(num_gen=1)


def test_quantization_matches_stylegan():
    levels = torch.arange(256, dtype=torch.float32)
    assert torch.equal(quantize_images((levels - 127.5) / 127.5), levels.to(torch.uint8))
    assert quantize_images(torch.tensor([-3.0, -1.0, 0.0, 1.0, 5.0])).tolist() == [0, 0, 128, 255, 255]


def test_fid_runner_ranks_distributions_and_uses_dataset_cameras():
    labels = toy_labels()
    generator = ToyGenerator()
    same = compute_metric(TOY_FID, generator, DatasetCameraSampler(labels), toy_dataset(128),
                          tiny_extractor(), batch_size=32, seed=3)
    shifted = compute_metric(TOY_FID, ToyGenerator(), DatasetCameraSampler(labels),
                             toy_dataset(128, offset=0.8), tiny_extractor(), batch_size=32, seed=3)
    assert same.metric == "fid_toy_custom[tiny]" and set(same.results) == {"fid_toy_custom[tiny]"}
    assert 0 <= same.results[same.metric] < 0.2 * shifted.results[shifted.metric]
    assert same.num_real == 128 and same.num_gen == 96
    assert sum(n for n, _ in generator.calls) == 96 and max(n for n, _ in generator.calls) == 4
    drawn = torch.cat([c for _, c in generator.calls])
    assert all((labels == row).all(dim=1).any() for row in drawn)  # cameras come from the labels
    again = compute_metric(TOY_FID, ToyGenerator(), DatasetCameraSampler(labels), toy_dataset(128),
                           tiny_extractor(), batch_size=32, seed=3)
    other_seed = compute_metric(TOY_FID, ToyGenerator(), DatasetCameraSampler(labels), toy_dataset(128),
                                tiny_extractor(), batch_size=32, seed=4)
    assert again.results == same.results and other_seed.results != same.results


def test_kid_and_swd_protocols_and_real_set_options():
    labels = DatasetCameraSampler(toy_labels())
    kid = MetricProtocol("kid_toy", "kid", num_gen=64, max_real=50, num_subsets=20, max_subset_size=40)
    result = compute_metric(kid, ToyGenerator(), labels, toy_dataset(80), tiny_extractor(), batch_size=16)
    assert result.num_real == 50 and result.protocol["max_subset_size"] == 40
    assert abs(result.results["kid_toy_custom[tiny]"]) < 0.05

    swd = MetricProtocol("swd_toy", "swd", num_gen=32, max_real=32, detector=None)
    result = compute_metric(swd, ToyGenerator(), labels, toy_dataset(40), batch_size=16)
    assert result.metric == "swd_toy" and set(result.results) == {"swd_x1e3_16", "swd_x1e3_avg"}
    assert result.num_real == 32 and result.detector is None

    # Mirroring doubles the real set; a map-style dataset and the same images as batches agree.
    mirrored = MetricProtocol("fid_mirror", "fid", num_gen=32, max_real=None, mirror=True)
    items = toy_dataset(20)
    as_batches = list(items.images.split(8))
    from_dataset = compute_metric(mirrored, ToyGenerator(), labels, items, tiny_extractor(), batch_size=8)
    from_batches = compute_metric(mirrored, ToyGenerator(), labels, as_batches, tiny_extractor(),
                                  batch_size=8)
    assert from_dataset.num_real == from_batches.num_real == 40
    assert from_dataset.results == pytest.approx(from_batches.results, rel=1e-9)


def test_records_are_appended_as_json_lines(tmp_path):
    result = compute_metric(TOY_FID, ToyGenerator(), DatasetCameraSampler(toy_labels()), toy_dataset(64),
                            tiny_extractor(), batch_size=32, metadata={"branch": "2d", "network": "toy.pkl"})
    report_metric(result, tmp_path)
    report_metric(result, tmp_path)
    # The metric keeps its name; the file name has no brackets (shell- and URL-safe).
    assert [p.name for p in tmp_path.iterdir()] == ["metric-fid_toy_custom-tiny.jsonl"]
    lines = (tmp_path / "metric-fid_toy_custom-tiny.jsonl").read_text().splitlines()
    assert len(lines) == 2
    record = json.loads(lines[0])
    assert record["results"] == result.results and record["metric"] == "fid_toy_custom[tiny]"
    assert record["protocol"]["num_gen"] == 96 and record["protocol"]["real_set"] == "full"
    assert record["protocol"]["detector"] == "tiny"  # the features used, not the protocol's Inception
    assert record["detector"]["name"] == "tiny" and not record["detector"]["standard"]
    assert record["num_real"] == 64 and record["branch"] == "2d" and record["num_gpus"] == 1
    with pytest.raises(FileNotFoundError, match="run folder"):
        report_metric(result, tmp_path / "missing")


def test_real_statistics_are_cached_per_dataset_state(tmp_path):
    dataset_dir = tmp_path / "data"
    dataset_dir.mkdir()
    (dataset_dir / "dataset.json").write_text("{}")
    cache = tmp_path / "cache"
    calls: list[int] = []

    def run(fingerprint="tiny-seed0"):
        calls.clear()
        result = compute_metric(TOY_FID, ToyGenerator(), DatasetCameraSampler(toy_labels()), toy_dataset(64),
                                tiny_extractor(calls, fingerprint), batch_size=32, dataset_path=dataset_dir,
                                cache_folder=cache)
        return result, sum(calls)

    _, unfingerprinted_images = run(fingerprint=None)
    assert unfingerprinted_images == 96 + 64 and not cache.exists()  # unidentified networks are not cached
    first, first_images = run()
    second, second_images = run()
    assert len(list(cache.glob("data-tiny-*.npz"))) == 1
    assert first_images == 96 + 64 and second_images == 96  # reals come from the cache
    assert second.results == first.results
    (dataset_dir / "new.png").write_bytes(b"x")  # the dataset changed: new key, fresh statistics
    _, third_images = run()
    assert third_images == 96 + 64 and len(list(cache.glob("*.npz"))) == 2
    _, other_network_images = run(fingerprint="tiny-retrained")
    assert other_network_images == 96 + 64 and len(list(cache.glob("*.npz"))) == 3


def test_custom_feature_metrics_are_named_as_such():
    real = toy_dataset(64).images.split(16)
    near = toy_dataset(64, seed=2).images.split(16)
    far = toy_dataset(64, offset=0.8, seed=2).images.split(16)
    features = tiny_extractor().fn
    fid_near = fid_with_features(features, "tiny", real, near)
    fid_far = fid_with_features(features, "tiny", real, far)
    assert list(fid_near) == ["fid_custom[tiny]"]
    assert abs(fid_with_features(features, "tiny", real, real)["fid_custom[tiny]"]) < 1e-6  # a set vs itself
    assert fid_near["fid_custom[tiny]"] < 0.2 * fid_far["fid_custom[tiny]"]
    kid = kid_with_features(features, "tiny", real, far, num_subsets=10)
    assert list(kid) == ["kid_custom[tiny]"] and kid["kid_custom[tiny]"] > 0


class MeanColour(nn.Module):
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images.float().mean(dim=(2, 3))


class NeedsFloat(nn.Module):
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.conv2d(images, torch.ones(1, 3, 1, 1)).flatten(1)


@pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:DeprecationWarning")
def test_torchscript_feature_networks(tmp_path):
    path = tmp_path / "mean colour.pt"
    torch.jit.save(torch.jit.script(MeanColour()), str(path))
    extractor = load_feature_network(path, probe_resolution=8)
    images = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    assert torch.equal(extractor(images), images.float().mean(dim=(2, 3)))
    assert not extractor.standard and extractor.name == "mean colour"
    assert extractor.info["fingerprint"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert load_feature_network(path, name="rgb").name == "rgb"
    with pytest.raises(ValueError, match="name"):
        load_feature_network(path, name="a/b")
    torch.jit.save(torch.jit.script(NeedsFloat()), str(tmp_path / "float.pt"))
    with pytest.raises(ValueError, match=r"float.pt: the feature network fails on a uint8 \[1, 3, 8, 8\]"):
        load_feature_network(tmp_path / "float.pt", probe_resolution=8)
    torch.save({"w": torch.zeros(1)}, tmp_path / "state.pt")
    with pytest.raises(ValueError, match="state.pt: cannot be read as a TorchScript archive"):
        load_feature_network(tmp_path / "state.pt")
    with pytest.raises(FileNotFoundError, match="nothere.pt does not exist"):
        load_feature_network(tmp_path / "nothere.pt")


def test_generator_and_real_image_errors():
    labels = DatasetCameraSampler(toy_labels())
    with pytest.raises(ValueError, match=r"generate\(z, c\) must return images \[4, 3, H, W\]"):
        list(generated_batches(lambda z, c: torch.zeros(4, RES, RES), labels, num_images=8, z_dim=8))
    with pytest.raises(ValueError, match="uint8 batches"):
        list(real_batches([torch.zeros(2, 3, RES, RES)]))
    bad = ToyDataset(2)
    bad.images = bad.images.float()
    with pytest.raises(ValueError, match="real image 0: expected a uint8"):
        list(real_batches(bad))


def _distributed_worker(rank: int, world: int, folder: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=world)
    try:
        extractor = tiny_extractor()
        labels = DatasetCameraSampler(toy_labels())
        reals = collect_features(real_batches(toy_dataset(9), batch_size=2), extractor, capture_all=True)
        fakes = collect_features(generated_batches(ToyGenerator(), labels, num_images=7, batch_size=4,
                                                   batch_gen=2), extractor, capture_all=False)
        rows = gather_rows(torch.full((rank + 1, 2), float(rank)))
        result = compute_metric(TOY_FID, ToyGenerator(), labels, toy_dataset(30), extractor, batch_size=8)
        torch.save({"reals": torch.from_numpy(reals.features()), "num_fakes": fakes.num_items, "rows": rows,
                    "fid": result.results, "ranks": result.num_ranks}, os.path.join(folder, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_two_ranks_split_the_work_and_agree(tmp_path):
    # fork: the children need not re-import torch (seconds each on a loaded machine)
    mp.start_processes(_distributed_worker, args=(2, str(tmp_path)), nprocs=2, start_method="fork")
    outputs = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    single = collect_features(real_batches(toy_dataset(9), batch_size=2), tiny_extractor(), capture_all=True)
    expected = torch.from_numpy(single.features())
    for out in outputs:
        assert out["num_fakes"] == 7 and out["ranks"] == 2
        assert torch.equal(out["rows"], torch.tensor([[0.0, 0.0], [1.0, 1.0], [1.0, 1.0]]))
        # Same 9 real images in all, each read once (rank 0: 0, 2, 4, 6, 8; rank 1: 1, 3, 5, 7).
        order = torch.tensor([0, 2, 4, 6, 8, 1, 3, 5, 7])
        torch.testing.assert_close(out["reals"], expected[order])
    assert outputs[0]["fid"] == outputs[1]["fid"]
