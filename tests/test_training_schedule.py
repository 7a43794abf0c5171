"""Schedule wiring (values at known steps), lazy-regularisation phases, the guarded optimiser step, EMA."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mimic3d.losses import blur_images
from mimic3d.models.discriminator import resize_raw_image
from mimic3d.training.loss import Chunk, TriplaneGANLoss
from mimic3d.training.optimization import GRAD_CLAMP, Phase, build_phases, optimizer_step, update_ema
from mimic3d.training.patches import crop_windows, random_windows
from mimic3d.training.presets import load_config
from mimic3d.training.schedule import Progress, progress_at


def test_eg3d_schedules_at_known_steps():
    config, _ = load_config("eg3d-ffhq512")
    start = progress_at(config, 0)
    assert (start.blur_sigma, start.swap_prob, start.neural_rendering_resolution) == (10.0, 1.0, 64)
    assert start.ema_beta == 0.0  # ramp-up: the first EMA step copies G
    mid = progress_at(config, 100_000)
    assert mid.blur_sigma == pytest.approx(5.0)
    assert mid.swap_prob == pytest.approx(0.95)
    # EMA half-life min(10 kimg, 5% of images shown) = 5000 images at 100 kimg.
    assert mid.ema_beta == pytest.approx(0.5 ** (32 / 5000))
    late = progress_at(config, 1_500_000)
    assert (late.blur_sigma, late.swap_prob) == (0.0, 0.5)
    assert late.ema_beta == pytest.approx(0.5 ** (32 / 10_000))


def test_durations_scale_with_the_batch_like_eg3d():
    config, _ = load_config("eg3d-ffhq512", ["run.batch_size=8"])
    assert (config.blur_fade_kimg, config.ema_kimg) == (50.0, 2.5)
    assert progress_at(config, 25_000).blur_sigma == pytest.approx(5.0)
    assert progress_at(config, 1_000_000).ema_beta == pytest.approx(0.5 ** (8 / 2500))
    fixed, _ = load_config("eg3d-ffhq512", ["run.batch_size=8", "schedule.scale_with_batch=false"])
    assert progress_at(fixed, 100_000).blur_sigma == pytest.approx(5.0)


def test_rendering_resolution_fade_and_disabled_conditioning():
    afhq, _ = load_config("eg3d-afhq512")
    assert progress_at(afhq, 0).neural_rendering_resolution == 64
    assert progress_at(afhq, 500_000).neural_rendering_resolution == 96
    assert progress_at(afhq, 2_000_000).neural_rendering_resolution == 128
    assert progress_at(afhq, 500_000).swap_prob == pytest.approx(0.9)  # 1 -> 0.8 over 1000 kimg
    cars, _ = load_config("eg3d-shapenet128")
    assert progress_at(cars, 0).swap_prob is None


def test_stage2_resume_schedule_has_no_fades():
    config, _ = load_config("mimic3d-ffhq512-stage2", ["run.init_from=x"])
    start = progress_at(config, 0)
    assert (start.blur_sigma, start.swap_prob) == (0.0, 0.5)
    assert start.ema_beta == pytest.approx(0.5 ** (32 / 10_000))  # no ramp-up


def _nets():
    torch.manual_seed(0)
    return nn.Linear(3, 2), nn.Linear(3, 1), nn.Linear(3, 1)


def test_lazy_regularisation_scales_learning_rates_and_betas():
    config, _ = load_config("mimic3d-ffhq512-stage2", ["run.init_from=x"])
    G, D, D_patch = _nets()
    phases = build_phases(config, G, D, D_patch)
    assert [(p.name, p.interval) for p in phases] == [
        ("Gmain", 1),
        ("Greg", 4),
        ("Dmain", 1),
        ("Dreg", 16),
        ("Dpatch_main", 1),
        ("Dpatch_reg", 16),
    ]
    by_name = {p.name: p for p in phases}
    assert by_name["Gmain"].optimizer is by_name["Greg"].optimizer
    group = by_name["Gmain"].optimizer.param_groups[0]
    assert group["lr"] == pytest.approx(0.0025 * 4 / 5)
    assert group["betas"] == pytest.approx((0.0, 0.99 ** (4 / 5)))
    d_group = by_name["Dreg"].optimizer.param_groups[0]
    assert d_group["lr"] == pytest.approx(0.002 * 16 / 17)
    assert d_group["betas"][1] == pytest.approx(0.99 ** (16 / 17))


def test_regulariser_with_zero_weight_has_no_phase_and_no_scaling():
    config, _ = load_config("eg3d-ffhq512", ["loss.density_reg=0", "loss.r1_interval=null"])
    G, D, D_patch = _nets()
    phases = build_phases(config, G, D, D_patch)
    assert [(p.name, p.interval) for p in phases] == [("Gmain", 1), ("Dmain", 1), ("Dreg", 1)]
    assert phases[0].optimizer.param_groups[0]["lr"] == pytest.approx(0.0025)
    assert phases[1].optimizer.param_groups[0]["lr"] == pytest.approx(0.002)  # R1 every step, unscaled


def test_zero_r1_weight_keeps_the_lazy_scaling_of_d_as_the_official_loop():
    # The official loop builds D's (and D^3D's) lazy-regularised Adam from D_reg_interval alone;
    # the loss then skips R1 when gamma is 0, so the scaling stays. G's follows density_reg (above).
    config, _ = load_config(
        "mimic3d-ffhq512-stage2", ["run.init_from=x", "loss.r1_gamma=0", "loss.patch_r1_gamma=0"]
    )
    G, D, D_patch = _nets()
    phases = build_phases(config, G, D, D_patch)
    assert [p.name for p in phases] == ["Gmain", "Greg", "Dmain", "Dpatch_main"]
    for phase in phases[2:]:
        group = phase.optimizer.param_groups[0]
        assert group["lr"] == pytest.approx(0.002 * 16 / 17)
        assert group["betas"] == pytest.approx((0.0, 0.99 ** (16 / 17)))


def test_optimizer_step_averages_chunks_and_zeroes_non_finite_gradients():
    param = nn.Parameter(torch.zeros(4))
    module = nn.Module()
    module.weight = param
    phase = Phase("Dmain", "D", module, torch.optim.SGD([param], lr=1.0), 1)
    param.grad = torch.tensor([math.nan, math.inf, -math.inf, 4.0])
    optimizer_step(phase, num_chunks=2)
    expected = torch.tensor([0.0, -GRAD_CLAMP, GRAD_CLAMP, -2.0])  # averaged, then clamped (EG3D order)
    assert torch.equal(param.detach(), expected)
    assert param.grad is None


def test_ema_interpolates_parameters_and_copies_buffers():
    torch.manual_seed(0)
    G, G_ema = nn.BatchNorm1d(3), nn.BatchNorm1d(3)
    with torch.no_grad():
        G.weight.fill_(2.0)
        G_ema.weight.fill_(1.0)
        G.running_mean.fill_(7.0)
    update_ema(G_ema, G, beta=0.25)
    assert torch.allclose(G_ema.weight, torch.full([3], 0.25 * 1.0 + 0.75 * 2.0))
    assert torch.equal(G_ema.running_mean, torch.full([3], 7.0))
    update_ema(G_ema, G, beta=0.0)
    assert torch.equal(G_ema.weight, G.weight)


def test_patch_windows_match_slicing_and_stay_inside():
    images = torch.randn(3, 2, 10, 10)
    top, left = torch.tensor([0, 3, 6]), torch.tensor([6, 0, 2])
    windows = crop_windows(images, top, left, 4)
    for i in range(3):
        assert torch.equal(windows[i], images[i, :, top[i] : top[i] + 4, left[i] : left[i] + 4])
    torch.manual_seed(1)
    top, left = random_windows(500, 10, 4, torch.device("cpu"))
    assert int(top.min()) == 0 and int(top.max()) == 6 and int(left.min()) == 0 and int(left.max()) == 6


class _RecordingG:
    """Stands in for the generator: records what the loss passes to mapping and synthesis."""

    config = None

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def mapping(self, z, c, update_emas=False):
        self.calls.append(("mapping", c))
        return torch.zeros(z.shape[0], 3, 4)

    def synthesis(self, ws, c, branch, noise_mode, neural_rendering_resolution, planes=None):
        self.calls.append(("synthesis", neural_rendering_resolution))
        n = ws.shape[0]
        return {"image": torch.zeros(n, 3, 32, 32), "image_raw": torch.zeros(n, 3, 16, 16)}


def _loss_with_recorders():
    config, _ = load_config("eg3d-ffhq512")
    seen = []

    def D(images, c):
        seen.append({k: v.detach().clone() for k, v in images.items()})
        return torch.zeros(images["image"].shape[0], 1)

    G = _RecordingG()
    return TriplaneGANLoss(config, G, D), G, seen


def test_blur_reaches_the_d_inputs_as_in_eg3d():
    loss, _, seen = _loss_with_recorders()
    torch.manual_seed(0)
    image, raw = torch.randn(2, 3, 32, 32), torch.randn(2, 3, 16, 16)
    loss.run_D({"image": image, "image_raw": raw}, torch.zeros(2, 25), sigma=2.0)
    assert torch.allclose(seen[0]["image"], blur_images(image, 2.0))
    assert torch.equal(seen[0]["image_raw"], raw)  # fakes' raw render is not blurred (official)
    progress = Progress(0, blur_sigma=2.0, swap_prob=1.0, neural_rendering_resolution=16, ema_beta=0.0)
    real = loss.real_pair(image, progress)
    assert torch.allclose(real["image_raw"], blur_images(resize_raw_image(image, 16), 2.0))
    assert not torch.allclose(seen[0]["image"], image)


def test_pose_swap_and_rendering_resolution_reach_the_generator():
    loss, G, _ = _loss_with_recorders()
    c = torch.arange(3 * 25, dtype=torch.float32).reshape(3, 25)
    chunk = Chunk(torch.zeros(3, 3, 32, 32), c, torch.zeros(3, 8), c)
    always = Progress(0, blur_sigma=0.0, swap_prob=1.0, neural_rendering_resolution=24, ema_beta=0.0)
    loss._mapping(chunk, always)
    assert torch.equal(G.calls[-1][1], torch.roll(c, 1, dims=0))
    never = Progress(0, blur_sigma=0.0, swap_prob=0.0, neural_rendering_resolution=24, ema_beta=0.0)
    loss._mapping(chunk, never)
    assert torch.equal(G.calls[-1][1], c)
    disabled = Progress(0, blur_sigma=0.0, swap_prob=None, neural_rendering_resolution=24, ema_beta=0.0)
    loss._mapping(chunk, disabled)
    assert torch.equal(G.calls[-1][1], torch.zeros_like(c))
    loss._render_2d(torch.zeros(3, 3, 4), c, always)
    assert G.calls[-1] == ("synthesis", 24)
