"""Built-in model names: resolved by the one checkpoint resolver, checked by SHA-256, shadowed by a
file of the same name, kept as names in run.init_from, and shipped as package data."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import mimic3d
from mimic3d.checkpoints import builtin
from mimic3d.checkpoints.builtin import BUILTIN_MODELS, BuiltinModel, builtin_file, builtin_names
from mimic3d.checkpoints.pretrained import file_sha256
from mimic3d.checkpoints.resolve import resolve_checkpoint
from mimic3d.cli.main import main
from mimic3d.models import TriplaneGenerator, generator_preset
from mimic3d.training.presets import load_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def fake_builtin(tmp_path, monkeypatch) -> dict:
    """A registry holding one tiny random model ``tinyname`` in a temporary models folder."""
    torch.manual_seed(0)
    G = TriplaneGenerator(generator_preset("tiny-mimic3d")).eval()
    folder = tmp_path / "models"
    folder.mkdir()
    path = mimic3d.save(folder / "tiny.safetensors", G)
    model = BuiltinModel("tinyname", "tiny.safetensors", file_sha256(path), "a test model")
    monkeypatch.setattr(builtin, "models_folder", lambda: folder)
    monkeypatch.setitem(BUILTIN_MODELS, "tinyname", model)
    return {"G": G, "path": path, "model": model}


def test_a_builtin_name_loads_its_file_through_the_resolver(fake_builtin, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    location = resolve_checkpoint("tinyname")
    assert location.path == fake_builtin["path"] and location.builtin == "tinyname"
    # Results about a shipped model go to the current folder, not into the installed package.
    assert location.results_dir == tmp_path
    G = mimic3d.load("tinyname")
    reference = fake_builtin["G"].state_dict()
    assert all(torch.equal(G.state_dict()[k], v) for k, v in reference.items())


def test_a_file_or_folder_of_the_same_name_wins(fake_builtin, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    other = TriplaneGenerator(generator_preset("tiny-eg3d")).eval()
    mimic3d.save(tmp_path / "tinyname", other)  # a checkpoint folder called like the built-in model
    assert resolve_checkpoint("tinyname").path == Path("tinyname")
    assert mimic3d.load("tinyname").config.plane_convention == "eg3d"
    # A path that only looks like the name is a path.
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        resolve_checkpoint(os.path.join("sub", "tinyname"))


def test_a_damaged_or_missing_file_is_an_error_naming_it(fake_builtin, monkeypatch):
    path = fake_builtin["path"]
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # one flipped byte in the last weight
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"model 'tinyname': .*tiny.safetensors has sha256 .*expected"):
        mimic3d.load("tinyname")
    path.unlink()
    with pytest.raises(FileNotFoundError, match="is missing from this installation"):
        builtin_file("tinyname")
    with pytest.raises(ValueError, match=r"unknown built-in model 'nope'; expected one of \["):
        builtin_file("nope")


def test_commands_accept_the_name_and_list_the_names_when_a_path_is_missing(
    fake_builtin, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    argv = ["generate", "tinyname", "--seeds", "0", "--views", "0", "--no-normals", "--outdir", "out"]
    assert main(argv) == 0 and (tmp_path / "out" / "seed0000.png").is_file()
    assert main(["planes", "missing-model", "--outdir", "out"]) == 2
    err = capsys.readouterr().err
    assert "checkpoint not found: missing-model (built-in models:" in err and "tinyname" in err


def test_run_init_from_keeps_a_builtin_name_and_makes_paths_absolute(fake_builtin, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config, _ = load_config("tiny-mimic3d-heads", ["run.init_from=tinyname", "data.path=data.zip"])
    assert config.run.init_from == "tinyname"
    assert config.data.path == str(tmp_path / "data.zip")
    (tmp_path / "tinyname").mkdir()  # now a folder has the name: it is a path again
    config, _ = load_config("tiny-mimic3d-heads", ["run.init_from=tinyname"])
    assert config.run.init_from == str(tmp_path / "tinyname")


def test_every_registered_model_has_its_recorded_hash():
    assert builtin_names() == sorted(BUILTIN_MODELS) and "heads64" in builtin_names()
    for name, model in BUILTIN_MODELS.items():
        assert replace(model, name=name) == model
        path = builtin.models_folder() / model.filename
        assert path.parent == ROOT / "mimic3d" / "checkpoints" / builtin.MODELS_FOLDER
        assert file_sha256(path) == model.sha256, name


def test_a_non_editable_install_holds_the_model_files(tmp_path):
    # Build a wheel from a copy of the sources (the build writes next to them) and list it.
    source = tmp_path / "src"
    shutil.copytree(ROOT / "mimic3d", source / "mimic3d", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    command = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index"]
    subprocess.run([*command, "-w", str(tmp_path / "dist"), str(source)], check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("mimic3d-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for model in BUILTIN_MODELS.values():
        assert f"mimic3d/checkpoints/{builtin.MODELS_FOLDER}/{model.filename}" in names
