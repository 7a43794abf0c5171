"""LPIPS-VGG: numerics against a slow per-layer reference, metric properties, weight loading."""

from __future__ import annotations

import hashlib
import io
import logging
import urllib.error
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from numerics import assert_close, fan_in_sum

from mimic3d.checkpoints import pretrained as pretrained_module
from mimic3d.checkpoints.pretrained import WeightFile, file_sha256, resolve_weight_files
from mimic3d.losses import imitation_loss
from mimic3d.losses import lpips as lpips_module
from mimic3d.losses.lpips import LPIPS, build_lpips

SIZE = 32
# (layer index, kind) of torchvision's vgg16().features[0:30], written out independently.
CONV = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
POOL = [4, 9, 16, 23]
TAPS = [3, 8, 15, 22, 29]


@pytest.fixture(scope="module")
def model() -> LPIPS:
    return LPIPS.untrained(seed=1)


def images(seed: int, n: int = 2, size: int = SIZE) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def slow_lpips(state: dict[str, torch.Tensor], x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
    """LPIPS v0.1 from first principles, one image and one layer at a time."""
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)
    out = []
    for i in range(x0.shape[0]):
        feats = []
        for x in (x0[i : i + 1], x1[i : i + 1]):
            h = (x - shift) / scale
            taps = []
            for index in range(30):
                if index in CONV:
                    w, b = state[f"net.features.{index}.weight"], state[f"net.features.{index}.bias"]
                    h = F.conv2d(h, w, b, padding=1)
                elif index in POOL:
                    h = F.max_pool2d(h, 2)
                else:
                    h = torch.clamp(h, min=0)
                if index in TAPS:
                    taps.append(h)
            feats.append(taps)
        total = torch.zeros(())
        for k, (f0, f1) in enumerate(zip(*feats)):
            n0 = f0 / (torch.sqrt((f0**2).sum(dim=1, keepdim=True)) + 1e-10)
            n1 = f1 / (torch.sqrt((f1**2).sum(dim=1, keepdim=True)) + 1e-10)
            w = state[f"lin{k}.model.1.weight"].view(-1)
            weighted = ((n0 - n1) ** 2 * w.view(1, -1, 1, 1)).sum(dim=1)
            total = total + weighted.mean()
        out.append(total)
    return torch.stack(out)


def test_matches_slow_reference(model):
    x0, x1 = images(0), images(1)
    expected = slow_lpips(model.state_dict(), x0, x1)
    # The VGG convolutions (fan_in_sum), then per-tap normalisation and spatial means.
    assert_close(model(x0, x1), expected, terms=fan_in_sum(model) + SIZE**2)


def test_per_layer_sums_to_distance(model):
    x0, x1 = images(2), images(3)
    layers = model.per_layer(x0, x1)
    assert len(layers) == 5 and all(t.shape == (2,) for t in layers)
    assert_close(sum(layers), model(x0, x1), terms=5)


def test_cached_features_give_the_same_distance(model):
    x0, x1 = images(4), images(5)
    features = model.features(x1)
    assert [f.shape[1] for f in features] == [64, 128, 256, 512, 512]
    # Same formula, trunk run on each batch alone instead of both concatenated: float32 blocking only.
    assert_close(model.distance_to(x0, features), model(x0, x1), terms=fan_in_sum(model))
    # A batch of one target broadcasts over the images.
    single = model.distance_to(x0, model.features(x1[:1]))
    assert_close(single, model(x0, x1[:1].expand_as(x0)), terms=fan_in_sum(model))


def test_metric_properties(model):
    x0, x1 = images(4), images(5)
    assert torch.equal(model(x0, x0), torch.zeros(2))  # n0 - n0 is exactly 0
    d01, d10 = model(x0, x1), model(x1, x0)
    assert_close(d01, d10, terms=fan_in_sum(model) + SIZE**2)  # the images swap batch positions
    assert (d01 > 0).all()
    # A small perturbation is closer than an unrelated image.
    near = (x0 + 0.05 * images(6)).clamp(-1, 1)
    assert (model(x0, near) < d01).all()


def test_gradients_reach_inputs_only(model):
    x0 = images(7).requires_grad_()
    x1 = images(8)
    model(x0, x1).sum().backward()
    assert x0.grad is not None and torch.isfinite(x0.grad).all() and x0.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in model.parameters())


def test_gradient_matches_finite_difference():
    model = LPIPS.untrained(seed=2).double()
    x0, x1 = images(9, n=1, size=16).double().requires_grad_(), images(10, n=1, size=16).double()
    (grad,) = torch.autograd.grad(model(x0, x1).sum(), x0)
    direction = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    eps = 1e-6  # small enough not to cross ReLU / max-pool kinks
    with torch.no_grad():
        numeric = (model(x0 + eps * direction, x1) - model(x0 - eps * direction, x1)).sum() / (2 * eps)
    assert torch.allclose((grad * direction).sum(), numeric, rtol=1e-6)


def test_stays_in_eval_mode(model):
    model.train()
    assert not model.training and not any(m.training for m in model.modules())


def test_untrained_is_loud(caplog):
    with caplog.at_level(logging.WARNING, logger="mimic3d.losses.lpips"):
        model = build_lpips("untrained", seed=3)
    assert "UNTRAINED" in caplog.text
    assert not model.is_pretrained
    assert all((lin.model[1].weight >= 0).all() for lin in model.lins)


def test_bad_inputs(model):
    with pytest.raises(ValueError, match="equal shapes"):
        model(images(0), images(0, size=48))
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        model(torch.zeros(1, 1, 32, 32), torch.zeros(1, 1, 32, 32))
    with pytest.raises(ValueError, match="at least 16x16"):
        model(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match="'pretrained' or 'untrained'"):
        build_lpips("alex")


def test_imitation_loss_stops_teacher_gradient(model):
    patch_3d, patch_2d = images(11).requires_grad_(), images(12).requires_grad_()
    loss = imitation_loss(model, patch_3d, patch_2d)
    assert torch.allclose(loss, model(patch_3d, patch_2d))
    loss.sum().backward()
    assert patch_3d.grad is not None and patch_2d.grad is None


# ---------------------------------------------------------------------------------------------
# Weight files


def save_release_files(model: LPIPS, directory: Path) -> tuple[Path, Path]:
    """Write the model's weights in torchvision VGG16 and LPIPS-release key formats."""
    state = model.state_dict()
    vgg = {k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.features.")}
    vgg["classifier.0.weight"] = torch.zeros(4, 4)  # torchvision files carry the classifier too
    lin = {k: v for k, v in state.items() if k.startswith("lin")}
    vgg_path, lin_path = directory / "vgg16-397923af.pth", directory / "lpips_v0.1_vgg.pth"
    torch.save(vgg, vgg_path)
    torch.save(lin, lin_path)
    return vgg_path, lin_path


@pytest.fixture(scope="module")
def release_files(model, tmp_path_factory) -> tuple[Path, Path]:
    return save_release_files(model, tmp_path_factory.mktemp("weights"))


def test_from_files_reproduces_numbers(model, release_files):
    loaded = LPIPS.from_files(*release_files)
    assert loaded.is_pretrained
    x0, x1 = images(13), images(14)
    assert torch.equal(loaded(x0, x1), model(x0, x1))


def test_pretrained_verifies_checksums_and_loads(model, release_files, monkeypatch):
    vgg_path, lin_path = release_files
    for name, path in [("VGG16_WEIGHTS", vgg_path), ("LPIPS_VGG_WEIGHTS", lin_path)]:
        spec = getattr(lpips_module, name)
        monkeypatch.setattr(
            lpips_module, name, WeightFile(spec.filename, spec.url, file_sha256(path), description="test")
        )
    loaded = LPIPS.pretrained(weights_dir=vgg_path.parent, download=False)
    x0, x1 = images(15), images(16)
    assert torch.equal(loaded(x0, x1), model(x0, x1))


def test_official_checksums_reject_other_files(release_files):
    with pytest.raises(ValueError, match="checksum mismatch.*vgg16-397923af.pth"):
        LPIPS.pretrained(weights_dir=release_files[0].parent, download=False)


def test_missing_files_offline_names_files_and_place(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        LPIPS.pretrained(weights_dir=tmp_path, download=False)
    message = str(err.value)
    for spec in (lpips_module.VGG16_WEIGHTS, lpips_module.LPIPS_VGG_WEIGHTS):
        assert str(tmp_path / spec.filename) in message and spec.url in message


def test_failed_download_gives_placement_instructions(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("network unreachable")

    monkeypatch.setattr(pretrained_module.urllib.request, "urlopen", offline)
    with pytest.raises(FileNotFoundError, match="could not download") as err:
        LPIPS.pretrained(weights_dir=tmp_path, download=True)
    assert str(tmp_path / lpips_module.VGG16_WEIGHTS.filename) in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_download_is_verified_and_atomic(tmp_path, monkeypatch):
    payload = b"weights payload"
    monkeypatch.setattr(pretrained_module.urllib.request, "urlopen", lambda url, timeout: io.BytesIO(payload))
    good = WeightFile("good.pth", "https://example.invalid/good.pth", hashlib.sha256(payload).hexdigest())
    (path,) = resolve_weight_files([good], weights_dir=tmp_path, download=True)
    assert path.read_bytes() == payload
    bad = WeightFile("bad.pth", "https://example.invalid/bad.pth", "0" * 64)
    with pytest.raises(ValueError, match="checksum mismatch"):
        resolve_weight_files([bad], weights_dir=tmp_path, download=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.pth"]


def test_bad_state_dicts_name_the_key(model, tmp_path):
    vgg_path, lin_path = save_release_files(model, tmp_path)
    lin = torch.load(lin_path, weights_only=True)
    del lin["lin3.model.1.weight"]
    torch.save(lin, lin_path)
    with pytest.raises(ValueError, match="lin3.model.1.weight"):
        LPIPS.from_files(vgg_path, lin_path)
    vgg = torch.load(vgg_path, weights_only=True)
    vgg["features.10.weight"] = torch.zeros(3, 3, 3, 3)
    torch.save(vgg, vgg_path)
    with pytest.raises(ValueError, match=r"features.10.weight.*\(256, 128, 3, 3\)"):
        LPIPS.from_files(vgg_path, lin_path)
    torch.save([1, 2, 3], vgg_path)
    with pytest.raises(ValueError, match="expected a state dict"):
        LPIPS.from_files(vgg_path, lin_path)
    with pytest.raises(FileNotFoundError, match="nothing.pth"):
        LPIPS.from_files(tmp_path / "nothing.pth", lin_path)
