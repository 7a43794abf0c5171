"""How every command line is read: intermixed overrides, ``python -m mimic3d``, numbers, paths, and
errors that name the flag the user typed and the full sub-command, in one line with exit status 2."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import yaml

import mimic3d
from mimic3d.cli.main import main
from mimic3d.models import TriplaneGenerator, generator_preset
from mimic3d.training.presets import load_config, read_yaml


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    mimic3d.save(path, TriplaneGenerator(generator_preset("tiny-mimic3d")).eval())
    return str(path)


def _error(capsys, argv: list[str]) -> str:
    """The one-line error of a failing command line (exit status 2, no usage text, no traceback)."""
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    return lines[0]


def _printed_config(capsys, argv: list[str]) -> dict:
    assert main(argv) == 0
    return yaml.safe_load(capsys.readouterr().out)


def test_overrides_may_follow_any_flag(capsys):
    argv = ["train", "tiny-eg3d-heads", "data.path=x.zip", "--max-steps", "2", "run.grid_size=0"]
    config = _printed_config(capsys, [*argv, "--print-config", "loss.r1_gamma=3"])
    assert config["run"]["grid_size"] == 0 and config["loss"]["r1_gamma"] == 3.0
    assert config["data"]["path"] == os.path.abspath("x.zip")
    # Flags first, positionals last; the demo reads its overrides the same way.
    config = _printed_config(
        capsys, ["train", "--print-config", "--outdir", "o", "tiny-eg3d-heads", "run.seed=4"]
    )
    assert config["run"]["seed"] == 4
    config = _printed_config(capsys, ["train", "run.seed=5", "tiny-eg3d-heads", "--print-config"])
    assert config["run"]["seed"] == 5 and config["description"].startswith("tiny EG3D")
    message = _error(capsys, ["train", "tiny-eg3d-heads", "eg3d-ffhq512", "--print-config"])
    assert message.startswith("mimic3d train: error: preset: expected one PRESET")


def test_python_dash_m_is_the_console_script():
    result = subprocess.run(
        [sys.executable, "-m", "mimic3d", "train", "tiny-eg3d-heads", "run.seed=9", "--print-config"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert yaml.safe_load(result.stdout)["run"]["seed"] == 9  # (one interpreter start: ~3 s of imports)


@pytest.mark.parametrize(
    "text, value",
    [
        ("1e-3", 1e-3),
        ("1.0e30", 1e30),
        ("-2E+2", -200.0),
        (".5e1", 5.0),
        ("1_000.5", 1000.5),
        ("inf", float("inf")),
    ],
)
def test_every_python_float_is_a_number(text, value):
    # YAML 1.1 keeps 1e-3 and 1.0e30 as strings; Python's float() reads them, and so do overrides.
    config, _ = load_config("tiny-eg3d-heads", [f"optim.g_lr={text}", f"optim.betas=[0, {text}]"])
    assert config.optim.g_lr == value and config.optim.betas == (0.0, value)


def test_yaml_files_read_numbers_the_same_way(tmp_path):
    path = tmp_path / "my.yaml"
    path.write_text("base: tiny-eg3d-heads\nloss:\n  r1_gamma: 1e-3\n")
    assert read_yaml(path)["loss"]["r1_gamma"] == 1e-3
    config, _ = load_config(str(path))
    assert config.loss.r1_gamma == 1e-3 and config.run.batch_size == 16  # and ints stay ints


def test_a_bad_override_is_blamed_not_the_preset(capsys):
    message = _error(capsys, ["train", "tiny-eg3d-heads", "loss.r1_gamma=abc", "--print-config"])
    assert "override loss.r1_gamma=abc: expected a number" in message and "preset" not in message
    message = _error(capsys, ["train", "tiny-eg3d-heads", "loss.r1_gamma=-1", "--print-config"])
    assert "override loss.r1_gamma=-1: expected a finite number >= 0" in message


def test_home_and_variables_are_expanded_in_config_paths_and_flags(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DATASETS", str(tmp_path / "sets"))
    argv = ["train", "tiny-mimic3d-heads", "data.path=~/datasets/FFHQ_512.zip", "--print-config"]
    argv += ["run.init_from=$DATASETS/run", "loss.lpips_weights_dir=${DATASETS}/w"]
    config = _printed_config(capsys, argv)
    assert config["data"]["path"] == str(tmp_path / "home" / "datasets" / "FFHQ_512.zip")
    assert config["run"]["init_from"] == str(tmp_path / "sets" / "run")
    assert config["loss"]["lpips_weights_dir"] == str(tmp_path / "sets" / "w")
    # Flags too: the dataset command writes where --preview and DEST point after expansion.
    argv = ["dataset", "synth", "~/heads.zip", "--num", "2", "--resolution", "16", "--workers", "1"]
    assert main([*argv, "--preview", "$DATASETS/preview.png"]) == 0
    assert (tmp_path / "home" / "heads.zip").is_file() and (tmp_path / "sets" / "preview.png").is_file()


@pytest.mark.parametrize(
    "argv, start",
    [
        (["generate", "CKPT", "--resolution", "-5"], "mimic3d generate: error: argument --resolution:"),
        (["generate", "CKPT", "--resolution", "0"], "mimic3d generate: error: argument --resolution:"),
        (
            ["generate", "CKPT", "--branch", "3d", "--resolution", "1"],
            "mimic3d generate: error: argument --resolution:",
        ),
        (["generate", "CKPT", "--sample-mult", "0"], "mimic3d generate: error: argument --sample-mult:"),
        (["video", "CKPT", "--sample-mult", "-1"], "mimic3d video: error: argument --sample-mult:"),
        (
            ["video", "CKPT", "--seeds", "0-2", "--grid", "2x2", "--frames", "2"],
            "mimic3d video: error: --seeds:",
        ),
        (
            ["video", "CKPT", "--seeds", "0", "--style-seeds", "1", "--interpolate"],
            "mimic3d video: error: --style-seeds:",
        ),
        (["epi", "CKPT", "--row", "99", "--frames", "2"], "mimic3d epi: error: --row: pixel 99"),
        (["planes", "CKPT", "--size", "100000"], "mimic3d planes: error: argument --size:"),
        (["mesh", "CKPT", "--resolution", "64", "--format", "stl"], "mimic3d mesh: error: --format:"),
        (
            ["dataset", "build", "SRC", "out.zip", "--resolution", "48"],
            "mimic3d dataset build: error: --resolution:",
        ),
        (["dataset", "build", "SRC"], "mimic3d dataset build: error: the following arguments are required"),
        (
            ["dataset", "synth", "x.zip", "--resolution", "65536"],
            "mimic3d dataset synth: error: --resolution:",
        ),
        (["dataset", "frobnicate"], "mimic3d dataset: error: argument <check|build|synth>: invalid choice"),
        (["train", "tiny-eg3d-heads", "--max-steps", "0"], "mimic3d train: error: argument --max-steps:"),
        (
            ["train", "mimic3d-ffhq512-stage1", "--ablation", "B"],
            "mimic3d train: error: --ablation: setting B",
        ),
        (
            ["metrics", "CKPT", "--data", "x.zip", "--workers", "-1"],
            "mimic3d metrics: error: argument --workers:",
        ),
        (["demo", "--images", "3"], "mimic3d demo: error: argument --images:"),
    ],
)
def test_errors_name_the_flag_and_the_full_command(checkpoint, tmp_path, capsys, argv, start):
    argv = [checkpoint if a == "CKPT" else str(tmp_path) if a == "SRC" else a for a in argv]
    assert _error(capsys, [*argv, "--outdir", str(tmp_path)] if argv[0] != "dataset" else argv).startswith(
        start
    )
    assert not list(tmp_path.glob("*.png"))  # nothing was rendered before the error


def test_bad_cuda_device_is_one_line(checkpoint, capsys):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    assert "--device: 'cuda' requested, but this torch build sees no CUDA device" in _error(
        capsys, ["generate", checkpoint, "--device", "cuda"]
    )
    with pytest.raises(ValueError, match="device: 'cuda' requested"):
        mimic3d.load(checkpoint, device="cuda")
