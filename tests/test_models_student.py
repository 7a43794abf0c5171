"""The distilled student: the teacher's API and outputs, its statistics, checkpoints, and the tools on it."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import torch
from distill_support import tiny_student, tiny_teacher
from training_support import write_random_dataset

import mimic3d
from mimic3d.camera import PRESETS, sample_labels
from mimic3d.cli.main import main
from mimic3d.export import read_video
from mimic3d.models import generator_preset
from mimic3d.models.student import (
    NO_3D,
    StudentConfig,
    StudentGenerator,
    student_config,
    student_layer_index,
    teacher_targets,
)
from mimic3d.tools.epi import seed_epis
from mimic3d.tools.latents import seed_ws
from mimic3d.tools.viewpoints import orbit_labels

torch.set_num_threads(1)
IMAGE, RENDER, FEATURES = 32, 16, 8  # the tiny-eg3d teacher's sizes


@pytest.fixture(scope="module")
def models():
    teacher = tiny_teacher()
    return teacher, tiny_student(teacher)


@pytest.fixture(scope="module")
def checkpoint(models, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("student") / "student.safetensors"
    return str(mimic3d.save(path, models[1]))


def _inputs(n: int = 3, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, 16, generator=generator), sample_labels(PRESETS["ffhq"], n, generator=generator)


def test_outputs_have_the_teachers_names_and_shapes(models):
    teacher, student = models
    z, c = _inputs()
    with torch.no_grad():
        expected = teacher(z, c, noise_mode="const", perturb=False)
        out = student(z, c)
    assert set(out) == set(expected) == {"image", "image_raw", "image_depth", "feature_image"}
    for key in out:
        assert out[key].shape == expected[key].shape, key
    assert out["image"].shape == (3, 3, IMAGE, IMAGE) and out["feature_image"].shape == (
        3,
        FEATURES,
        RENDER,
        RENDER,
    )
    assert torch.equal(out["image_raw"], out["feature_image"][:, :3])  # the LR image is the first 3 channels


def test_mapping_is_the_teachers_and_frozen(models):
    teacher, student = models
    z, c = _inputs()
    assert torch.equal(student.mapping(z, c, truncation_psi=0.6), teacher.mapping(z, c, truncation_psi=0.6))
    assert student.num_ws == teacher.num_ws
    before = student.teacher_mapping.w_avg.clone()
    student.mapping(z, c, update_emas=True)  # accepted for the API; the teacher's w_avg stays
    assert torch.equal(student.teacher_mapping.w_avg, before)


def test_copied_super_resolution_reproduces_the_teacher_from_its_features(models):
    # The SR is driven by the teacher's ws, as in the teacher: same features in, same image out.
    teacher, student = models
    z, c = _inputs()
    with torch.no_grad():
        ws = teacher.mapping(z, c)
        target = teacher.synthesis(ws, c, noise_mode="const", perturb=False)
        image = student.superresolution(target["image_raw"], target["feature_image"], ws)
    assert torch.equal(image, target["image"])


def test_output_statistics_start_at_the_teachers(models):
    # The fresh student's outputs are fitted to the teacher's per-channel statistics on 16 calibration
    # renders (student_from_teacher's first 16 samples); on 16 other samples they agree up to sampling
    # spread, where the unfitted network's outputs are several times too spread.
    teacher, student = models
    z, c = _inputs(16, seed=1)
    with torch.no_grad():
        ws = teacher.mapping(z, c)
        target = teacher_targets(teacher, ws, c, "2d", RENDER)
        out = student.synthesis(ws, c)
        raw = student.feature_synthesis(student.student_ws(ws, c), noise_mode="const")
    spread = torch.cat([target["feature_image"], target["image_depth"]], 1).std(dim=(0, 2, 3))
    fitted = torch.cat([out["feature_image"], out["image_depth"]], 1)
    ratio = fitted.std(dim=(0, 2, 3)) / spread
    assert ratio.min() > 0.5 and ratio.max() < 2, ratio
    offset = (
        fitted.mean(dim=(0, 2, 3))
        - torch.cat([target["feature_image"], target["image_depth"]], 1).mean(dim=(0, 2, 3))
    ).abs()
    assert (offset < spread).all(), offset / spread
    assert (raw.std(dim=(0, 2, 3)) / spread).min() > 2  # what the fit corrects


def test_truncation_and_style_mixing_reach_the_student(models):
    teacher, student = models
    z, c = _inputs(1)
    full, truncated = student(z, c)["image"], student(z, c, truncation_psi=0.5)["image"]
    assert (full - truncated).abs().max() > 1e-3
    ws = teacher.mapping(z, c)
    other = teacher.mapping(torch.randn(1, 16), c)
    mixed = ws.clone()
    mixed[:, 3:] = other[:, 3:]  # fine layers from another subject
    with torch.no_grad():
        base, mix = student.synthesis(ws, c)["image_raw"], student.synthesis(mixed, c)["image_raw"]
    assert (base - mix).abs().max() > 1e-4
    assert student_layer_index(14, 10) == [0, 1, 3, 4, 6, 7, 9, 10, 12, 13]
    assert student_layer_index(6, 6) == list(range(6)) and student_layer_index(6, 1) == [0]


def test_camera_changes_the_view(models):
    _, student = models
    z, _ = _inputs(1)
    views = orbit_labels([1.2, 1.9], np.pi / 2, PRESETS["ffhq"])
    images = student(z.expand(2, -1), views)["image"]
    assert (images[0] - images[1]).abs().max() > 1e-3


def test_bad_inputs_name_the_argument(models):
    _, student = models
    z, c = _inputs(2)
    ws = student.mapping(z, c)
    with pytest.raises(ValueError, match="branch.*no 3D representation"):
        student.synthesis(ws, c, branch="3d")
    with pytest.raises(ValueError, match="neural_rendering_resolution"):
        student.synthesis(ws, c, neural_rendering_resolution=8)
    with pytest.raises(ValueError, match="ws: expected teacher ws"):
        student.synthesis(ws[:, :2], c)
    with pytest.raises(ValueError, match="c: batch size"):
        student.synthesis(ws, c[:1])
    for method in ("planes", "render", "render_patch", "render_scaled_patch", "sample_density"):
        with pytest.raises(ValueError, match=NO_3D):
            getattr(student, method)(ws)


def test_config_follows_the_teacher_and_refuses_bad_fields():
    eg3d = student_config(generator_preset("eg3d-afhq512", neural_rendering_resolution=128))
    assert (eg3d.teacher_branch, eg3d.neural_rendering_resolution, eg3d.superresolution) == (
        "2d",
        128,
        "hybrid8xdc",
    )
    epigraf = student_config(generator_preset("epigraf-ffhq512"))  # no SR: EG3D's, rendering at 64
    assert (epigraf.teacher_branch, epigraf.neural_rendering_resolution, epigraf.superresolution) == (
        "3d",
        64,
        "hybrid8xdc",
    )
    assert student_config(generator_preset("mimic3d-ffhq512-stage2"), "3d").sr_channels == (256, 128)
    with pytest.raises(ValueError, match="teacher_branch: a teacher without super-resolution"):
        student_config(generator_preset("epigraf-ffhq512"), "2d")
    with pytest.raises(ValueError, match="neural_rendering_resolution"):
        student_config(generator_preset("tiny-eg3d"), neural_rendering_resolution=24)
    with pytest.raises(ValueError, match="superresolution"):
        student_config(generator_preset("tiny-eg3d"), superresolution="hybrid3x")
    with pytest.raises(ValueError, match="config: expected a StudentConfig"):
        StudentGenerator(generator_preset("tiny-eg3d"))
    config = student_config(generator_preset("tiny-eg3d"))
    assert StudentConfig.from_dict(config.to_dict()) == config


def test_portable_round_trip_is_exact_and_load_returns_a_student(models, checkpoint):
    _, student = models
    loaded = mimic3d.load(checkpoint)
    assert isinstance(loaded, StudentGenerator) and loaded.config == student.config
    z, c = _inputs()
    assert torch.equal(loaded(z, c)["image"], student(z, c)["image"])


def _png(path) -> np.ndarray:
    return np.asarray(PIL.Image.open(path).convert("RGB"))


def test_generate_video_and_epi_work_on_a_student(checkpoint, tmp_path):
    assert main(["generate", checkpoint, "--seeds", "0", "--branch", "both", "--outdir", str(tmp_path)]) == 0
    assert _png(tmp_path / "seed0000.png").shape == (3 * IMAGE, 3 * IMAGE, 3)  # image, depth, normal rows
    video = tmp_path / "v.mp4"
    options = ["--seeds", "0,1", "--frames", "3", "--depth", "--output", str(video)]
    assert main(["video", checkpoint, *options, "--outdir", str(tmp_path)]) == 0
    frames, _ = read_video(video)
    assert frames.shape[:3] == (3, IMAGE, 4 * IMAGE)  # two cells of image + depth
    student = mimic3d.load(checkpoint)
    ws = seed_ws(student, [0], PRESETS["ffhq"])
    epis = seed_epis(student, ws, orbit_labels([1.4, 1.5, 1.6], np.pi / 2, PRESETS["ffhq"]), student.branches)
    assert list(epis) == ["2d"] and epis["2d"].shape == (3, IMAGE, 3)


def test_metrics_command_evaluates_a_student(checkpoint, tmp_path, capsys):
    data = write_random_dataset(tmp_path / "data", count=8)
    args = ["metrics", checkpoint, "--data", str(data), "--metrics", "swd16k", "--run-dir", str(tmp_path)]
    assert main([*args, "--num-gen", "8", "--max-real", "8", "--workers", "0", "--device", "cpu"]) == 0
    assert "swd" in capsys.readouterr().out


@pytest.mark.parametrize(
    "command", [["mesh"], ["planes"], ["generate", "--branch", "3d"], ["epi", "--branch", "3d"]]
)
def test_3d_tools_refuse_a_student_in_one_line(checkpoint, tmp_path, capsys, command):
    rc = main([command[0], checkpoint, *command[1:], "--outdir", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and NO_3D in err
