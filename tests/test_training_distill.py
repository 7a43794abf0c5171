"""NeRF-GAN distillation in the shared Trainer: the student learns its teacher, each loss term has its
documented weight, the adversarial stage starts when configured, and a resumed run is exact."""

from __future__ import annotations

import pytest
import torch
from distill_support import distill_config, save_teacher
from training_support import assert_identical_states, training_state, write_random_dataset

import mimic3d
from mimic3d.cli.main import main
from mimic3d.metrics.correspondence import correspondence_psnr
from mimic3d.metrics.distillation import branch_images, mean_image_psnr
from mimic3d.models.config import generator_preset
from mimic3d.models.generator import TriplaneGenerator
from mimic3d.training.distill_config import DistillConfig
from mimic3d.training.distill_loss import TERM_WEIGHTS
from mimic3d.training.loop import Trainer
from mimic3d.training.loss import Chunk
from mimic3d.training.presets import load_config
from mimic3d.training.schedule import progress_at
from mimic3d.training.snapshot import resolve_snapshot

torch.set_num_threads(1)
DISTILL_PRESETS = [
    "distill-eg3d-ffhq512",
    "distill-eg3d-afhq512",
    "distill-eg3d-shapenet128",
    "distill-mimic3d-ffhq512",
    "tiny-distill-heads",
]
# Reconstruction only (the perceptual terms need LPIPS: their weights are tested below) and the
# learning rate of a short run; 32 held-out (z, c) pairs for the correspondence PSNR.
FAST = ["distill.lpips_lr_weight=0", "distill.lpips_hr_weight=0", "distill.adversarial_kimg=null"]
HELD_OUT = 32


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("distill")
    return {"data": write_random_dataset(root / "data", count=8), "teacher": save_teacher(root)}


def _psnr(trainer, key: str = "image") -> float:
    """Correspondence PSNR (dB) of G_ema against the teacher on the held-out pairs."""
    teacher, student = trainer.teacher, trainer.nets.G_ema
    result = correspondence_psnr(
        branch_images(teacher, "2d", key),
        branch_images(student, "2d", key),
        trainer.labels,
        num_images=HELD_OUT,
        z_dim=teacher.z_dim,
        batch_size=HELD_OUT,
        seed=123,
    )
    return result.psnr_mean


def test_student_learns_its_teacher(files, tmp_path):
    # 200 steps of 4 images from a fresh student, reconstruction terms only. Measured here (held-out
    # pairs): final image 5.8 -> 13.9 dB, LR image 13.1 -> 20.5 dB, where the teacher's mean LR image
    # (the best answer blind to z and c) scores 17.1 dB. Each bound is half the measured gain: a
    # student that learns only the mean image, or none of it (a dropped term, a wrong weight), fails;
    # another CPU's rounding cannot.
    config = distill_config(files["teacher"], files["data"], *FAST, "optim.g_lr=0.01")
    trainer = Trainer(config, tmp_path / "run", progress_bar=False)
    start, start_lr = _psnr(trainer), _psnr(trainer, "image_raw")
    for _ in range(200):
        trainer.train_step()
    end, end_lr = _psnr(trainer), _psnr(trainer, "image_raw")
    rng = torch.Generator().manual_seed(123)  # the held-out pairs of _psnr
    z = torch.randn(HELD_OUT, trainer.teacher.z_dim, generator=rng)
    c = trainer.labels.sample(HELD_OUT, generator=rng)
    baseline = mean_image_psnr(branch_images(trainer.teacher, "2d", "image_raw")(z, c))
    print(
        f"correspondence PSNR: HR {start:.2f} -> {end:.2f} dB, LR {start_lr:.2f} -> {end_lr:.2f} dB "
        f"(mean LR image {baseline:.2f} dB)"
    )
    assert end - start > 4.0 and end_lr - start_lr > 3.6
    assert end_lr > baseline + 1.7


def _chunk(trainer, seed: int = 0) -> Chunk:
    generator = torch.Generator().manual_seed(seed)
    real_img, real_c = trainer.stream.next_batch()
    gen_z = torch.randn([4, trainer.config.generator.z_dim], generator=generator)
    return Chunk(real_img, real_c, gen_z, trainer.labels.sample(4, generator=generator))


def test_documented_weights_and_each_term_weighted(files, tmp_path):
    assert (
        DistillConfig().feature_weight,
        DistillConfig().lpips_lr_weight,
        DistillConfig().lpips_hr_weight,
    ) == (
        1.0,
        1.0,
        1.0,
    )
    assert (DistillConfig().adversarial_weight, DistillConfig().depth_weight) == (0.1, 1.0)
    for name in DISTILL_PRESETS[:4]:
        distill = load_config(name)[0].distill
        weights = [getattr(distill, field) for field in TERM_WEIGHTS.values()]
        assert weights == [1.0, 1.0, 1.0, 1.0] and distill.adversarial_weight == 0.1, name
    # Unusual weights, so that a term summed with the wrong weight shows.
    weights = {"feature_weight": 3.0, "lpips_lr_weight": 0.5, "lpips_hr_weight": 2.0, "depth_weight": 0.25}
    overrides = [f"distill.{k}={v}" for k, v in weights.items()]
    config = distill_config(
        files["teacher"],
        files["data"],
        *overrides,
        "distill.adversarial_weight=0.7",
        "distill.adversarial_kimg=0.008",
    )
    trainer = Trainer(config, tmp_path / "run", progress_bar=False)
    trainer.nets.G.requires_grad_(True)  # as the loop does for the phase's network
    chunk = _chunk(trainer)
    for nimg, adversarial in ((0, False), (8, True)):
        result = trainer.loss.accumulate("Gmain", chunk, 1, progress_at(config, nimg))
        stats = {k: v.double() for k, v in result.stats.items()}
        expected = sum(w * stats[f"Loss/G/{term}"].mean() for term, w in zip(TERM_WEIGHTS, weights.values()))
        assert ("Loss/G/loss" in stats) == adversarial
        if adversarial:
            expected = expected + 0.7 * stats["Loss/G/loss"].mean()
        # A handful of float32 terms of O(1): a few eps of each.
        assert float(result.objective) == pytest.approx(float(expected), rel=1e-6, abs=1e-7)
        assert float(stats["Loss/G/total"][()]) == pytest.approx(float(result.objective), rel=1e-7)
    trainer.nets.G.zero_grad(set_to_none=True)


def test_adversarial_stage_starts_when_configured(files, tmp_path):
    # Stage 2 from 8 images = step 2 at batch 4: D's phases and G's adversarial term start there.
    config = distill_config(
        files["teacher"], files["data"], "distill.adversarial_kimg=0.008", "loss.r1_interval=1", *FAST[:2]
    )
    trainer = Trainer(config, tmp_path / "run", progress_bar=False)
    assert [(p.name, p.start_nimg) for p in trainer.phases] == [("Gmain", 0), ("Dmain", 8), ("Dreg", 8)]
    d_before = [p.detach().clone() for p in trainer.nets.D.parameters()]
    ran = [sorted(trainer.train_step()) for _ in range(2)]
    assert ran == [["Gmain"], ["Gmain"]]
    assert all(torch.equal(a, b) for a, b in zip(d_before, trainer.nets.D.parameters()))
    ran = [sorted(trainer.train_step()) for _ in range(2)]
    assert ran == [["Dmain", "Dreg", "Gmain"], ["Dmain", "Dreg", "Gmain"]]
    assert not all(torch.equal(a, b) for a, b in zip(d_before, trainer.nets.D.parameters()))
    never = distill_config(files["teacher"], files["data"], *FAST)
    assert [p.name for p in Trainer(never, tmp_path / "never", progress_bar=False).phases] == ["Gmain"]


def test_resume_across_the_stage_switch_is_exact(files, tmp_path):
    config = distill_config(
        files["teacher"], files["data"], "distill.adversarial_kimg=0.008", "loss.r1_interval=2", *FAST[:2]
    )
    straight = Trainer(config, tmp_path / "straight", progress_bar=False)
    straight.run(max_steps=4)
    first = Trainer(config, tmp_path / "split", progress_bar=False)
    first.run(max_steps=2)
    snapshot, run_dir = resolve_snapshot(tmp_path / "split")
    second = Trainer(config, run_dir, resume=snapshot, progress_bar=False)
    second.run(max_steps=4)
    assert_identical_states(training_state(second), training_state(straight))


def test_configuration_errors_name_the_field(files, tmp_path):
    with pytest.raises(ValueError, match="distill.teacher: no teacher given"):
        Trainer(load_config("tiny-distill-heads", [f"data.path={files['data']}"])[0], tmp_path / "a")
    replaced = save_teacher(tmp_path, seed=1)
    config = distill_config(replaced, files["data"])
    mimic3d.save(replaced, TriplaneGenerator(generator_preset("tiny-eg3d", neural_rendering_resolution=8)))
    with pytest.raises(ValueError, match="distill.teacher: .* not the architecture"):
        Trainer(config, tmp_path / "b")
    for override, field in (
        ("loss.density_reg=0.25", "loss.density_reg"),
        ("run.init_from=somewhere", "run.init_from"),
        ("distill.teacher_branch=4d", "distill.teacher_branch"),
        ("distill.feature_weight=-1", "distill.feature_weight"),
    ):
        with pytest.raises(ValueError, match=field):
            distill_config(files["teacher"], files["data"], override)


def test_distill_command_trains_resumes_and_evaluates(files, tmp_path, capsys):
    outdir = tmp_path / "runs"
    common = ["--outdir", str(outdir), "--no-progress"]
    args = ["distill", str(files["teacher"]), f"data.path={files['data']}", "run.batch_size=4"]
    args += [
        "run.grid_size=2",
        "run.video_frames=0",
        "distill.eval_images=4",
        "distill.student.channel_max=16",
    ]
    assert main([*args, "--max-steps", "2", *common]) == 0
    run_dir = next(outdir.iterdir())
    assert run_dir.name.endswith("tiny-distill-heads")  # the preset chosen for a 32^2 teacher
    assert "metric correspondence_psnr/2d = " in (run_dir / "log.txt").read_text()  # at the snapshot
    assert main(["distill", "--resume", str(run_dir), "--max-steps", "3", *common]) == 0
    capsys.readouterr()
    picture = tmp_path / "sweep.png"
    assert main(["distill", "--evaluate", str(run_dir), "--num-images", "4", "--picture", str(picture)]) == 0
    report = capsys.readouterr().out
    for key in ("correspondence_psnr", "student_reprojection_psnr", "teacher_reprojection_psnr", "picture"):
        assert f'"{key}"' in report
    assert picture.is_file()
    assert main(["distill"]) == 2
