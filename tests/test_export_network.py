"""Exported graphs equal PyTorch (ONNX through onnxruntime, TorchScript), and the numpy-only example runs."""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from distill_support import tiny_student, tiny_teacher

import mimic3d
from mimic3d.camera import PRESETS, sample_labels
from mimic3d.cli.main import main
from mimic3d.export.network import export_network
from mimic3d.nn.resample import _transposed_conv, transposed_conv_direct
from mimic3d.tools.viewpoints import orbit_labels

onnxruntime = pytest.importorskip("onnxruntime")
torch.set_num_threads(1)
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "onnx_multiview.py"
# The bound for onnxruntime vs PyTorch on [-1, 1] images: ~1000 float32 eps. onnxruntime's
# convolutions sum in another order than PyTorch's over up to 32 * 9 = 288 products per output, through
# ~12 layers and the unfused modulated convolution (the model runs it fused): ~1e-6 measured.
ONNX_TOLERANCE = 1e-4
# Traced TorchScript runs PyTorch's own kernels on the same (unfused) graph: rounding differences only
# from op fusion, a few eps of O(1) values.
TORCHSCRIPT_TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def models():
    teacher = tiny_teacher()
    return teacher, tiny_student(teacher)


@pytest.fixture(scope="module")
def exported(models, tmp_path_factory) -> Path:
    stem = tmp_path_factory.mktemp("export") / "student"
    report = export_network(models[1], stem, format="onnx", dynamic_batch=True, batch=2)
    assert [g.variant for g in report.graphs] == ["z", "ws", "mapping"]
    assert all(g.max_abs_diff <= ONNX_TOLERANCE for g in report.graphs)  # the export-time check ran
    return stem


def _run(path: Path, **feeds: np.ndarray) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


def test_onnx_graphs_equal_the_model_at_another_batch_size(models, exported):
    _, student = models
    generator = torch.Generator().manual_seed(7)
    z = torch.randn(3, student.z_dim, generator=generator)
    c = sample_labels(PRESETS["ffhq"], 3, generator=generator)
    psi = torch.tensor([0.6])
    frontal = PRESETS["ffhq"].frontal_label()[None].expand(3, -1)
    with torch.no_grad():
        ws = student.mapping(z, frontal, truncation_psi=0.6)
        expected = student.synthesis(ws, c)["image"].numpy()  # the model itself: fused modulation, eval mode
    feeds = {"z": z.numpy(), "c": c.numpy(), "truncation_psi": psi.numpy()}
    assert np.abs(_run(exported.with_suffix(".onnx"), **feeds) - expected).max() <= ONNX_TOLERANCE
    mapped = _run(exported.with_name("student-mapping.onnx"), **{**feeds, "c": frontal.numpy()})
    assert np.abs(mapped - ws.numpy()).max() <= ONNX_TOLERANCE
    image = _run(exported.with_name("student-ws.onnx"), ws=ws.numpy(), c=c.numpy())
    assert image.shape == (3, 3, 32, 32) and np.abs(image - expected).max() <= ONNX_TOLERANCE


def test_torchscript_graphs_equal_the_model(models, tmp_path):
    teacher, student = models
    for name, G in (("student", student), ("teacher", teacher)):  # a tri-plane generator's 2D branch too
        export_network(G, tmp_path / name, format="torchscript", variants=("ws",))
        traced = torch.jit.load(str(tmp_path / f"{name}-ws.pt"))
        z, c = torch.randn(1, G.z_dim), sample_labels(PRESETS["ffhq"], 1)
        with torch.no_grad():
            ws = G.mapping(z, c)
            expected = G.synthesis(ws, c, noise_mode="const", perturb=False)["image"]
            assert (traced(ws, c) - expected).abs().max() <= TORCHSCRIPT_TOLERANCE, name


def test_onnx_names_the_operators_a_volume_renderer_needs(models, tmp_path, capsys):
    teacher = mimic3d.save(tmp_path / "teacher.safetensors", models[0])
    assert main(["export", str(teacher), "--variants", "ws", "--out", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("mimic3d export: error:")
    for operator in ("aten::cumprod", "aten::searchsorted", "aten::sort", "--format torchscript"):
        assert operator in err


def test_traced_transposed_convolution_equals_the_polyphase_one():
    generator = torch.Generator().manual_seed(0)
    for groups in (1, 3):
        x = torch.randn(2, 6, 5, 7, generator=generator)
        kernel = torch.randn(9, 6 // groups, 3, 3, generator=generator)
        # Sums of <= 2 * 2 * 6 products of O(1) values: a few eps times their magnitude.
        expected = _transposed_conv(x, kernel, 2, groups)
        assert torch.allclose(transposed_conv_direct(x, kernel, 2, groups), expected, rtol=1e-5, atol=1e-5)


def _example_module():
    spec = importlib.util.spec_from_file_location("onnx_multiview", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_cameras_are_mimic3ds():
    example = _example_module()
    preset = PRESETS["ffhq"]
    for yaw, pitch in ((math.pi / 2, math.pi / 2), (1.1, 1.8), (2.2, 0.5)):
        expected = orbit_labels([yaw], pitch, preset)[0].numpy()
        actual = example.orbit_label(yaw, pitch, preset.radius, list(preset.pivot), preset.focal)
        # float64 here, float32 in mimic3d: rotations O(1) and translations O(radius 2.7) through a
        # few products and normalisations, ~1e-6; a wrong axis or sign is O(0.1).
        assert np.allclose(actual, expected, rtol=1e-6, atol=1e-5), (yaw, pitch)


def test_example_renders_a_strip_without_torch(exported, tmp_path):
    blocker = tmp_path / "no_torch" / "torch"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('the example must not import torch')\n")
    out = tmp_path / "strip.png"
    command = [
        sys.executable,
        str(EXAMPLE),
        str(exported.with_suffix(".onnx")),
        "--seeds",
        "0,1",
        "--views",
        "3",
    ]
    env = {"PYTHONPATH": str(blocker.parent), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([*command, "--out", str(out)], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert "ms per image (onnxruntime)" in result.stdout and "PyTorch" in result.stdout
    import PIL.Image

    strip = np.asarray(PIL.Image.open(out).convert("RGB"))
    assert strip.shape == (2 * 32, 3 * 32, 3) and strip.std() > 0
