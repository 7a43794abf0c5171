"""``mimic3d doctor``: reports the installation and catches broken numerics against the stored reference."""

from __future__ import annotations

import numpy as np
import torch

from mimic3d.cli.main import main
from mimic3d.render.decoder import TriplaneDecoder
from mimic3d.tools import doctor


def test_doctor_passes_on_a_healthy_installation(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("MIMIC3D_CACHE", str(tmp_path))
    (tmp_path / "lpips_v0.1_vgg.pth").write_bytes(b"x" * 10)
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "all checks passed" in out and "reference render on cpu  ok" in out
    assert torch.__version__ in out
    assert "lpips_v0.1_vgg.pth  present" in out and "vgg16-397923af.pth  missing" in out
    assert "inception-2015-12-05.pt" in out and "torch.compile" in out


def test_reference_generator_is_reproducible_and_not_degenerate():
    first, second = doctor.reference_generator(), doctor.reference_generator()
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b), name
    with np.load(doctor.REFERENCE_FILE) as stored:
        assert set(stored.files) == {
            "image_2d", "depth_2d", "image_3d", "depth_3d", "epigraf_image", "epigraf_depth"
        }  # fmt: skip
        keys = ("image_2d", "image_3d", "depth_3d", "epigraf_image", "epigraf_depth")
        assert all(stored[key].std() > 1e-2 for key in keys)


def test_black_renders_fail_the_check(capsys, monkeypatch):
    def black(self, features):
        colour, sigma = original(self, features)
        return torch.zeros_like(colour), sigma

    original = TriplaneDecoder.forward
    monkeypatch.setattr(TriplaneDecoder, "forward", black)
    check = doctor.check_reference("cpu")
    assert not check.ok and "constant" in check.detail


def test_small_numerical_drift_fails_and_missing_reference_is_reported(monkeypatch, tmp_path):
    def shifted(self, features):
        colour, sigma = original(self, features)
        return colour, sigma + 0.05

    original = TriplaneDecoder.forward
    monkeypatch.setattr(TriplaneDecoder, "forward", shifted)
    check = doctor.check_reference("cpu")
    assert not check.ok and "differs from the reference" in check.detail
    missing = doctor.check_reference("cpu", tmp_path / "none.npz")
    assert not missing.ok and "missing" in missing.detail


def test_write_reference_round_trips(tmp_path):
    path = doctor.write_reference(tmp_path / "ref.npz")
    assert doctor.check_reference("cpu", path).ok
