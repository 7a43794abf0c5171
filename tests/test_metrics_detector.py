"""Finding, downloading and checking detector files, and the FeatureExtractor interface (offline)."""

from __future__ import annotations

import hashlib
import io
import urllib.error

import pytest
import torch

from mimic3d.checkpoints import pretrained
from mimic3d.checkpoints.pretrained import cache_dir, file_sha256
from mimic3d.metrics.custom import custom_extractor
from mimic3d.metrics.detector import (
    DETECTOR_FILES,
    FeatureExtractor,
    find_detector_file,
    load_inception,
)


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("MIMIC3D_CACHE", str(folder))
    return folder


def offline(*args, **kwargs):
    raise urllib.error.URLError("network unreachable")


def test_cache_folder_follows_the_environment(empty_cache, monkeypatch):
    assert cache_dir() == empty_cache
    monkeypatch.delenv("MIMIC3D_CACHE")
    assert cache_dir().parts[-2:] == (".cache", "mimic3d")


def test_offline_error_says_which_file_to_place_where(empty_cache, monkeypatch):
    monkeypatch.setattr(pretrained.urllib.request, "urlopen", offline)
    with pytest.raises(FileNotFoundError) as err:
        load_inception()
    message = str(err.value)
    assert "download failed" in message and "network unreachable" in message
    assert str(empty_cache) in message
    for entry in DETECTOR_FILES:
        assert str(empty_cache / entry.filename) in message and entry.url in message
    assert "load_inception(path)" in message and "--detector" not in message  # the caller's own way
    assert not any(empty_cache.iterdir())  # no partial downloads left behind

    with pytest.raises(FileNotFoundError, match="downloads disabled"):
        find_detector_file(allow_download=False)


def test_download_with_a_wrong_checksum_is_discarded(empty_cache, monkeypatch):
    def fake_urlopen(url, timeout):
        if url.endswith(".pt"):
            raise urllib.error.URLError("gone")
        return io.BytesIO(b"not the published weights")

    monkeypatch.setattr(pretrained.urllib.request, "urlopen", fake_urlopen)
    with pytest.raises(FileNotFoundError, match=r"size mismatch for \S+6726825d.pth \(downloaded\)"):
        find_detector_file()
    assert not any(empty_cache.iterdir())


def test_download_lands_in_the_cache(empty_cache, monkeypatch):
    payload = b"scripted detector bytes"
    monkeypatch.setattr(pretrained.urllib.request, "urlopen", lambda url, timeout: io.BytesIO(payload))
    path = find_detector_file()
    assert path == empty_cache / DETECTOR_FILES[0].filename and path.read_bytes() == payload
    assert find_detector_file(allow_download=False) == path  # found in the cache from now on
    assert file_sha256(path) == hashlib.sha256(payload).hexdigest()


def test_official_names_are_checked_against_their_published_size_and_hash(tmp_path):
    impostor = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    torch.save({"x": torch.zeros(1)}, impostor)
    with pytest.raises(ValueError, match="size mismatch .*the published pt_inception"):
        load_inception(impostor)
    impostor.write_bytes(bytes(DETECTOR_FILES[1].size))  # right size, wrong content
    expected = DETECTOR_FILES[1].sha256
    with pytest.raises(ValueError, match=f"checksum mismatch .*6726825d.pth: expected sha256 {expected}"):
        load_inception(impostor)


class NoFlag(torch.nn.Module):
    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return img.float().mean(dim=(2, 3))


class WrongWidth(torch.nn.Module):
    def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        return img.float().mean(dim=(2, 3))


@pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:DeprecationWarning")
def test_torchscript_files_must_follow_the_detector_convention(tmp_path):
    for module, message in ((NoFlag(), "calling convention"), (WrongWidth(), r"returned shape \[1, 3\]")):
        path = tmp_path / f"{type(module).__name__}.pt"
        torch.jit.save(torch.jit.script(module), str(path))
        with pytest.raises(ValueError, match=message):
            load_inception(path)
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes((tmp_path / "NoFlag.pt").read_bytes()[:-200])
    with pytest.raises(ValueError, match="damaged.pt"):
        load_inception(damaged)


def test_explicit_path_must_exist(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.pt does not exist"):
        load_inception(tmp_path / "nothere.pt")


def test_extractor_validates_inputs_and_outputs():
    calls = []

    def features(images):
        calls.append(images.shape)
        return images.float().mean(dim=(2, 3))

    extractor = FeatureExtractor(features, "channel-mean", feature_dim=3)
    gray = torch.full((2, 1, 4, 4), 7, dtype=torch.uint8)
    assert torch.equal(extractor(gray), torch.full((2, 3), 7.0))  # grayscale is repeated to RGB
    assert calls[-1] == (2, 3, 4, 4)
    with pytest.raises(ValueError, match="uint8 tensor"):
        extractor(torch.zeros(2, 3, 4, 4))
    with pytest.raises(ValueError, match="1 or 3 channels"):
        extractor(torch.zeros(2, 4, 4, 4, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"returned shape \[2, 3\], expected \[2, 5\]"):
        FeatureExtractor(features, "wrong", feature_dim=5)(gray)
    with pytest.raises(ValueError, match="name"):
        FeatureExtractor(features, "bad[name]")
    custom = custom_extractor(features, "channel-mean")
    assert not custom.standard
    assert custom.info == {"name": "channel-mean", "standard": False, "form": "custom", "fingerprint": None}
