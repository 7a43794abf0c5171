"""``mimic3d metrics`` end to end on a tiny random-weight Mimic3D generator and a 16-image synthetic set."""

from __future__ import annotations

import hashlib
import io
import json
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from numerics import assert_close
from torch import nn

import mimic3d
from mimic3d.checkpoints import pretrained
from mimic3d.cli.main import main
from mimic3d.data import ImageDataset
from mimic3d.data.synth import synth_dataset
from mimic3d.metrics.cache import real_stats_path
from mimic3d.metrics.detector import DETECTOR_FILES
from mimic3d.metrics.protocols import PROTOCOLS
from mimic3d.metrics.stats import FeatureStats
from mimic3d.models.config import generator_preset
from mimic3d.models.generator import TriplaneGenerator

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:DeprecationWarning")

NUM_REAL = 16
QUICK = ["--num-gen", "8", "--device", "cpu", "--batch-gen", "4", "--workers", "0"]


class ChannelStats(nn.Module):
    """Per-channel mean and standard deviation of uint8 images in [0, 1]: [N, 3, H, W] -> [N, 6]."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float() / 255
        return torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], dim=1)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("metrics_cli")
    torch.manual_seed(0)
    run = root / "run"
    run.mkdir()
    network = mimic3d.save(run / "network.safetensors", TriplaneGenerator(generator_preset("tiny-mimic3d")))
    data = root / "heads32.zip"
    synth_dataset(str(data), "heads", NUM_REAL, 32, workers=1, progress=False)
    small = root / "heads16.zip"
    synth_dataset(str(small), "heads", 4, 16, workers=1, progress=False)
    features = root / "chanstats.pt"
    torch.jit.save(torch.jit.script(ChannelStats()), str(features))
    return {"network": Path(network), "run": run, "data": data, "small": small, "features": features}


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("MIMIC3D_CACHE", str(folder))
    return folder


def read_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_swd_on_both_branches_is_recorded_in_the_run_folder(files, capsys):
    base = ["metrics", str(files["network"]), "--data", str(files["data"]), "--metrics", "swd16k", *QUICK]
    for branch in ("2d", "3d", "3d"):
        assert main([*base, "--branch", branch]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    records = read_records(files["run"] / "metric-swd16k_gen8.jsonl")
    assert [r["branch"] for r in records] == ["2d", "3d", "3d"]
    for record, line in zip(records, printed):
        assert record == line
        assert record["metric"] == "swd16k_gen8"  # a quick run never passes for swd16k
        assert record["protocol"]["num_gen"] == record["num_gen"] == 8
        assert record["num_real"] == NUM_REAL and record["detector"] is None
        assert record["network"] == str(files["network"].absolute()) and record["resolution"] == 32
        assert record["truncation_psi"] == 1.0 and record["noise_mode"] == "random"
        levels = [record["results"][f"swd_x1e3_{res}"] for res in (32, 16)]
        assert all(np.isfinite(levels)) and min(levels) > 0
        assert record["results"]["swd_x1e3_avg"] == pytest.approx(np.mean(levels))
    two_d, three_d, again = (r["results"] for r in records)
    assert two_d != three_d  # the branches render different images
    assert again == three_d  # seeded: the same command gives the same numbers


def test_two_processes_share_the_work(files, tmp_path, capfd):
    args = ["metrics", str(files["network"]), "--metrics", "swd16k", "--gpus", "2",
            "--run-dir", str(tmp_path), *QUICK]
    assert main([*args, "--data", str(files["data"])]) == 0
    (record,) = read_records(tmp_path / "metric-swd16k_gen8.jsonl")
    assert record["num_gpus"] == 2 and record["num_gen"] == 8 and record["num_real"] == NUM_REAL
    assert np.isfinite(record["results"]["swd_x1e3_avg"])
    capfd.readouterr()
    # A user error inside the ranks is their one-line message and exit status 2.
    assert main([*args, "--data", str(files["small"])]) == 2
    err = capfd.readouterr().err
    assert "error (rank 0): " in err and "images are 16x16" in err and "Traceback" not in err


def test_fid_and_kid_on_a_scripted_feature_network(files, cache, tmp_path):
    args = ["metrics", str(files["network"]), "--data", str(files["data"]),
            "--features", str(files["features"]), "--run-dir", str(tmp_path), *QUICK]
    assert main([*args, "--metrics", "fid50k_full,kid50k_full"]) == 0
    fid_file = tmp_path / "metric-fid50k_full_gen8_custom-chanstats.jsonl"
    kid_file = tmp_path / "metric-kid50k_full_gen8_custom-chanstats.jsonl"
    (fid,), (kid,) = read_records(fid_file), read_records(kid_file)
    digest = hashlib.sha256(files["features"].read_bytes()).hexdigest()
    for record in (fid, kid):
        assert record["detector"]["standard"] is False and record["detector"]["fingerprint"] == digest
        assert record["num_real"] == NUM_REAL and record["branch"] == "2d"
    value = fid["results"]["fid50k_full_gen8_custom[chanstats]"]
    assert np.isfinite(value) and value > 0
    assert np.isfinite(kid["results"]["kid50k_full_gen8_custom[chanstats]"])

    # The cached real statistics are those of every dataset image, unmirrored.
    identity = {"name": "chanstats", "form": "custom", "fingerprint": digest}
    cached = real_stats_path(files["data"], identity, max_real=None, mirror=False, capture_all=False)
    assert cached.parent == cache / "gan-metrics"
    dataset = ImageDataset(files["data"])
    reals = ChannelStats()(torch.stack([dataset[i][0] for i in range(len(dataset))])).double().numpy()
    mean, cov = FeatureStats.load(cached).mean_cov()
    # Channel statistics are float32 means over an image's pixels, computed in other batches here.
    pixels = dataset.resolution**2
    assert_close(mean, reals.mean(0), terms=pixels, dtype=torch.float32)
    expected_cov = np.cov(reals, rowvar=False, bias=True)
    squares = float(np.abs(reals).max()) ** 2  # products of two features
    assert_close(cov, expected_cov, terms=pixels, depth=2, scale=squares, dtype=torch.float32)

    # A second run reads that cache and repeats the number.
    assert main([*args, "--metrics", "fid50k_full"]) == 0
    assert read_records(fid_file)[1]["results"] == fid["results"]


def run_failing(capsys, *args: str) -> str:
    assert main(["metrics", *args]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_missing_detector_is_a_clear_error(files, cache, capsys, monkeypatch):
    base = [str(files["network"]), "--data", str(files["data"]), "--metrics", "fid2k_full", *QUICK]
    err = run_failing(capsys, *base, "--detector", str(cache / "nothere.pt"))
    assert "nothere.pt does not exist" in err

    def offline(*args, **kwargs):
        raise urllib.error.URLError("network unreachable")

    monkeypatch.setattr(pretrained.urllib.request, "urlopen", offline)
    err = run_failing(capsys, *base)
    for entry in DETECTOR_FILES:
        assert str(cache / entry.filename) in err and entry.url in err
    assert "network unreachable" in err and "--detector PATH" in err
    assert "downloads disabled" in run_failing(capsys, *base, "--no-download")


def test_detector_is_downloaded_once_and_recorded(files, cache, monkeypatch, tmp_path):
    """Online without a cached detector: the file lands in the cache and its hash is in the record."""
    scripted = io.BytesIO()
    torch.jit.save(torch.jit.script(Inception2048()), scripted)
    payload = scripted.getvalue()
    monkeypatch.setattr(pretrained.urllib.request, "urlopen", lambda url, timeout: io.BytesIO(payload))
    # KID: FID's 2048x2048 matrix square root would take seconds.
    args = ["metrics", str(files["network"]), "--data", str(files["data"]), "--metrics", "kid50k_full",
            "--run-dir", str(tmp_path), *QUICK]
    assert main(args) == 0
    (record,) = read_records(tmp_path / "metric-kid50k_full_gen8.jsonl")
    assert np.isfinite(record["results"]["kid50k_full_gen8"])
    assert record["detector"]["sha256"] == hashlib.sha256(payload).hexdigest()
    assert record["detector"]["file"] == str(cache / DETECTOR_FILES[0].filename)
    assert record["detector"]["standard"] is True and record["detector"]["verified"] is False


class Inception2048(nn.Module):
    """Stands in for NVIDIA's detector (same calling convention, 2048-d output) without its weights."""

    def forward(self, images: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        x = images.float().mean(dim=(2, 3))
        return torch.cat([x, x.square()], dim=1).repeat(1, 342)[:, :2048]


KNOWN = ", ".join(PROTOCOLS)


@pytest.mark.parametrize(
    ("data", "extra", "message"),
    [
        ("data", ["--metrics", "swd16k,fid1k"], "unknown metric 'fid1k'; known metrics: " + KNOWN),
        ("data", ["--metrics", "swd16k", "--features-name", "x"], "--features-name: only meaningful with"),
        ("data", ["--metrics", "fid50k_full", "--features", "nothere.pt"], "network file nothere.pt does"),
        ("data", ["--features", "a.pt", "--detector", "b.pt"], "--detector, --features: give one"),
        ("data", ["--metrics", "swd16k", "--run-dir", "no/such/folder"], "--run-dir: folder no/such/folder"),
        ("small", ["--metrics", "swd16k"], "images are 16x16, but"),
    ],
)
def test_bad_arguments_exit_2_with_a_clear_message(files, capsys, data, extra, message):
    assert message in run_failing(capsys, str(files["network"]), "--data", str(files[data]), *QUICK, *extra)
