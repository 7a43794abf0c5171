"""Portable checkpoints: bit-exact round trips, clear errors on bad files, nothing ever unpickled."""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from mimic3d.checkpoints import portable
from mimic3d.checkpoints.load import load, load_networks, save
from mimic3d.models import TriplaneGenerator, generator_preset
from mimic3d.models.discriminator import DualDiscriminator, dual_discriminator_preset
from mimic3d.models.patch_discriminator import (
    HyperModulatedPatchDiscriminator,
    hyper_patch_discriminator_preset,
)


def _camera(n: int) -> torch.Tensor:
    c = torch.zeros(n, 25)
    c[:, :16] = torch.tensor([1, 0, 0, 0, 0, -1, 0, 0, 0, 0, -1, 2.7, 0, 0, 0, 1], dtype=torch.float32)
    c[:, 16:] = torch.tensor([4.2647, 0, 0.5, 0, 4.2647, 0.5, 0, 0, 1], dtype=torch.float32)
    return c


@pytest.fixture(scope="module")
def networks() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    G_ema = TriplaneGenerator(generator_preset("tiny-mimic3d"))
    with torch.no_grad():  # buffers off their init values, so that a lost buffer shows
        G_ema.backbone.mapping.w_avg.normal_()
        G_ema.dataset_label_std.uniform_(0.1, 1.0)
    return {
        "G_ema": G_ema,
        "G": TriplaneGenerator(generator_preset("tiny-mimic3d")),
        "D": DualDiscriminator(dual_discriminator_preset("tiny", disc_c_noise=0.5)),
        "D_patch": HyperModulatedPatchDiscriminator(
            hyper_patch_discriminator_preset("tiny", camera_cond=True)
        ),
    }


def _assert_identical(a: torch.nn.Module, b: torch.nn.Module) -> None:
    assert type(a) is type(b) and a.config == b.config
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert sa[key].dtype == sb[key].dtype and torch.equal(sa[key], sb[key]), key


def _save_all(path: Path, nets: dict[str, torch.nn.Module]) -> Path:
    return save(path, nets["G_ema"], nets["D"], G=nets["G"], D_patch=nets["D_patch"], metadata={"kimg": 12})


@pytest.mark.parametrize("name", ["ckpt.safetensors", "ckpt"])
def test_round_trip_is_bit_exact(tmp_path, networks, name):
    path = _save_all(tmp_path / name, networks)
    assert path.is_file() == name.endswith(".safetensors")
    loaded = load_networks(path)
    assert sorted(loaded) == ["D", "D_patch", "G", "G_ema"]
    for key, module in networks.items():
        _assert_identical(module, loaded[key])
    assert portable.load_checkpoint(path, names=["D"])[1] == {"kimg": 12}

    G = load(path)
    assert not G.training and not any(p.requires_grad for p in G.parameters())
    z, c = torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(1)), _camera(2)
    original = networks["G_ema"].eval()
    with torch.no_grad():
        for branch in ("2d", "3d"):
            ours, theirs = (g(z, c, branch=branch, noise_mode="const", perturb=False) for g in (G, original))
            for key in ("image", "image_raw", "image_depth"):
                torch.testing.assert_close(ours[key], theirs[key], rtol=0, atol=0)


def test_folder_layout_and_single_network_folder(tmp_path, networks):
    path = save(tmp_path / "run", networks["G_ema"], networks["D"])
    assert sorted(p.name for p in path.iterdir()) == ["D", "G_ema", "checkpoint.json"]
    assert sorted(p.name for p in (path / "G_ema").iterdir()) == ["config.json", "model.safetensors"]
    spec = json.loads((path / "G_ema" / "config.json").read_text())
    assert spec["class_name"] == "TriplaneGenerator" and spec["config"]["rendering"]["convention"] == "xyz"
    _assert_identical(networks["G_ema"], load(path / "G_ema"))
    with pytest.raises(ValueError, match="no network named"):
        load_networks(path, names=["D_patch"])


def test_missing_and_unknown_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.safetensors"):
        load(tmp_path / "nothing.safetensors")
    (tmp_path / "noise.bin").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ValueError, match="unknown checkpoint format"):
        load(tmp_path / "noise.bin")
    with zipfile.ZipFile(tmp_path / "model.pt", "w") as archive:
        archive.writestr("data.pkl", b"")
    with pytest.raises(ValueError, match="torch.save files are not read"):
        load(tmp_path / "model.pt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not a mimic3d checkpoint folder"):
        load(tmp_path / "empty")
    save_file({"x": torch.zeros(2)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(ValueError, match="format is None, expected 'mimic3d'"):
        load(tmp_path / "foreign.safetensors")


def test_truncated_or_corrupted_files(tmp_path, networks):
    path = save(tmp_path / "ckpt.safetensors", networks["G_ema"])
    data = path.read_bytes()
    for size in (len(data) // 2, 200, 12):
        (tmp_path / "cut.safetensors").write_bytes(data[:size])
        with pytest.raises(ValueError, match="cut.safetensors"):
            load(tmp_path / "cut.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(data[:8] + b"{" + b"\x00" * (len(data) - 9))
    with pytest.raises(ValueError, match="bad.safetensors"):
        load(tmp_path / "bad.safetensors")
    folder = save(tmp_path / "run", networks["G_ema"])
    weights = folder / "G_ema" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ValueError, match="truncated or corrupted"):
        load(folder)
    (folder / "checkpoint.json").write_text("{not json")
    with pytest.raises(ValueError, match="checkpoint.json: not valid JSON"):
        load(folder)


def _edit_spec(folder: Path, edit) -> None:
    config_file = folder / "G_ema" / "config.json"
    spec = json.loads(config_file.read_text())
    edit(spec)
    config_file.write_text(json.dumps(spec))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda s: s["config"].update(sharpness=3),
            r"unknown field\(s\) \['sharpness'\] for GeneratorConfig",
        ),
        (lambda s: s["config"].update(z_dim="big"), r"config\.z_dim: expected an int"),
        (
            lambda s: s["config"]["rendering"].update(ray_start=None),
            r"config\.rendering\.ray_start: expected a number",
        ),
        (
            lambda s: s["config"]["rendering"].update(far=9.0),
            r"unknown field\(s\) \['far'\] for RenderConfig",
        ),
        (lambda s: s["config"].update(sr_channels=[1, 2, 3]), r"config\.sr_channels: expected 2 entries"),
        (lambda s: s["config"].update(superresolution="hybrid3x"), "superresolution"),
        (lambda s: s.update(class_name="os.system"), "unknown network class_name 'os.system'"),
        (lambda s: s.pop("config"), r"expected an object with keys \['class_name', 'config'\]"),
    ],
)
def test_bad_configs_name_the_field(tmp_path, networks, edit, message):
    folder = save(tmp_path / "run", networks["G_ema"])
    _edit_spec(folder, edit)
    with pytest.raises(ValueError, match=message):
        load(folder)


def test_wrong_shapes_and_missing_keys_are_named(tmp_path, networks):
    folder = save(tmp_path / "run", networks["G_ema"])
    weights = folder / "G_ema" / "model.safetensors"
    tensors = load_file(str(weights))
    tensors["decoder.net.0.weight"] = torch.zeros(3, 3)
    del tensors["backbone.mapping.w_avg"]
    tensors["extra.weight"] = torch.zeros(1)
    save_file(tensors, str(weights))
    with pytest.raises(ValueError) as info:
        load(folder)
    message = str(info.value)
    assert "missing keys: backbone.mapping.w_avg" in message
    assert "unexpected keys: extra.weight" in message
    assert "decoder.net.0.weight (file [3, 3], model [64, 8])" in message
    # A config that disagrees with the weights is caught the same way.
    _edit_spec(save(tmp_path / "run2", networks["G_ema"]), lambda s: s["config"].update(channel_max=64))
    with pytest.raises(ValueError, match="wrong shapes: backbone"):
        load(tmp_path / "run2")


def test_loading_never_unpickles(tmp_path, networks, monkeypatch):
    file_path = save(tmp_path / "ckpt.safetensors", networks["G_ema"], networks["D"])
    folder = save(tmp_path / "run", networks["G_ema"], networks["D"])

    def forbidden(*args, **kwargs):
        raise AssertionError("unpickling attempted")

    class ForbiddenUnpickler:
        def __init__(self, *args, **kwargs):
            forbidden()

    for module, name in ((pickle, "load"), (pickle, "loads"), (torch, "load")):
        monkeypatch.setattr(module, name, forbidden)
    monkeypatch.setattr(pickle, "Unpickler", ForbiddenUnpickler)
    monkeypatch.setattr(pickle, "_Unpickler", ForbiddenUnpickler)
    for path in (file_path, folder):
        _assert_identical(networks["D"], load_networks(path)["D"])


def test_writes_are_atomic(tmp_path, networks, monkeypatch):
    path = save(tmp_path / "ckpt.safetensors", networks["D"])
    before = path.read_bytes()

    def failing_save(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(portable, "save_file", failing_save)
    with pytest.raises(OSError, match="disk full"):
        save(path, networks["D_patch"])
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.safetensors"]


def test_save_rejects_what_cannot_be_rebuilt(tmp_path, networks):
    with pytest.raises(ValueError, match="no dataclass `config`"):
        save(tmp_path / "x.safetensors", torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="metadata must be JSON-serialisable"):
        save(tmp_path / "x.safetensors", networks["D"], metadata={"when": object()})
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="not a folder"):
        save(tmp_path / "file", networks["D"])
    assert not (tmp_path / "x.safetensors").exists()
