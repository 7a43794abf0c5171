"""Every training phase and one full step against the official EG3D / Mimic3D code.

Fixtures (tests/fixtures/training/*_phases.json says how they were made): small official-format
networks, fixed inputs, and the official float64 results of each phase (Gmain, Greg, Dmain, Dreg;
Mimic3D stage 2 adds the imitation and patch terms to Gmain, and D_patchmain / D_patchreg) at the
start of training (blur sigma 10, pose swap 1) and mid-schedule (blur 5, swap 0.75, EG3D's
rendering resolution faded 16 -> 24, ADA with every transform drawn), and of one full training
step (every phase, lazy-regularised Adam, EMA with ramp-up, w_avg, the ADA update). We run the
same in float64 on the same random draws (see ``official_training.Tape``) and compare losses and
every gradient tensor by name.
"""

from __future__ import annotations

import math

import pytest
import torch
from official_training import (
    PHASE_NAMES,
    FixedPerceptual,
    Tape,
    assert_matches,
    augment_pipe,
    float64_mode,
    load_fixture,
    networks,
    train_config,
)

from mimic3d.training.augment import AdaptiveProbability
from mimic3d.training.distributed import ProcessInfo
from mimic3d.training.loop import Trainer
from mimic3d.training.loss import Chunk, TriplaneGANLoss
from mimic3d.training.monitor import StatsCollector
from mimic3d.training.networks import Networks
from mimic3d.training.optimization import build_phases
from mimic3d.training.schedule import progress_at

EG3D_PHASES = ["Gmain", "Greg", "Dmain", "Dreg"]
MIMIC3D_PHASES = [*EG3D_PHASES, "D_patchmain", "D_patchreg"]
CASES = [("eg3d", point, phase) for point in ("start", "mid") for phase in EG3D_PHASES] + [
    ("mimic3d", point, phase) for point in ("start", "mid") for phase in MIMIC3D_PHASES
]
# Official report name -> ours, per phase (the per-sample losses and scores).
REPORTS = {
    "Gmain": {"Loss/G/loss": "Loss/G/loss", "Loss/scores/fake": "Loss/scores/fake"},
    "Greg": {},
    "Dmain": {
        "Loss/scores/fake": "Loss/scores/fake",
        "Loss/scores/real": "Loss/scores/real",
        "Loss/D/loss": "Loss/D/loss",
    },
    "Dreg": {"Loss/scores/real": "Loss/scores/real", "Loss/D/reg": "Loss/D/reg"},
    "D_patchmain": {
        "Loss/scores/patch_fake": "Loss/scores/patch_fake",
        "Loss/scores/patch_real": "Loss/scores/patch_real",
        "Loss/D_patch/loss": "Loss/D_patch/loss",
    },
    "D_patchreg": {"Loss/D_patch/reg": "Loss/D_patch/reg"},
}
MIMIC3D_GMAIN = {
    "Loss/G/lpips": "Loss/G/imitation",
    "Loss/G/patch": "Loss/G/patch",
    "Loss/scores/patch_fake": "Loss/scores/patch_fake",
}
# Loss values are float64 on both sides: agreement to float64 rounding of the whole forward pass.
LOSS_RTOL = 1e-9

_FIXTURES: dict = {}


def fixture(method: str):
    if method not in _FIXTURES:
        _FIXTURES[method] = load_fixture(method)
    return _FIXTURES[method]


def network_of(phase: str) -> str:
    return "D_patch" if "patch" in phase else phase[0]


def inputs(fx) -> dict[str, torch.Tensor]:
    return {k: fx.tensors[f"inputs.{k}"].double() for k in ("real_img", "real_c", "gen_z", "gen_c")}


def run_phase(fx, point: str, phase: str):
    """Our phase on the fixture: (stats, gradients by name, unused official draws, networks)."""
    spec = fx.meta["points"][point]
    with float64_mode():
        config = train_config(fx, spec["augment_p"])
        nets = networks(fx, config)
        lpips = FixedPerceptual(fx.weights("perceptual")) if fx.mimic else None
        loss = TriplaneGANLoss(
            config, nets["G"], nets["D"], nets.get("D_patch"), augment_pipe(config), None, lpips
        )
        x = inputs(fx)
        chunk = Chunk(x["real_img"], x["real_c"], x["gen_z"], x["gen_c"])
        module = nets[network_of(phase)]
        module.requires_grad_(True)
        tape = Tape.from_fixture(fx, f"{point}.{phase}")
        with tape.active():
            result = loss.accumulate(
                PHASE_NAMES[phase], chunk, fx.meta["gain"], progress_at(config, spec["cur_nimg"])
            )
        grads = {name: p.grad for name, p in module.named_parameters() if p.grad is not None}
    return result.stats, grads, tape.leftover(), nets


def compare_gradients(fx, point: str, phase: str, grads: dict[str, torch.Tensor]) -> dict[str, float]:
    prefix = f"{point}.{phase}.grad."
    stored = {k[len(prefix) :]: v for k, v in fx.tensors.items() if k.startswith(prefix)}
    assert sorted(grads) == sorted(stored), "gradient names differ from the official phase's"
    scale = max(float(v.double().abs().max()) for v in stored.values())
    return {
        name: assert_matches(ours, stored[name], scale, f"{point} {phase} {name}")
        for name, ours in grads.items()
    }


@pytest.mark.parametrize(("method", "point", "phase"), CASES)
def test_phase_matches_official(method, point, phase):
    fx = fixture(method)
    stats, grads, leftover, nets = run_phase(fx, point, phase)
    assert leftover == [], f"official draws our phase did not use: {leftover}"
    compare_gradients(fx, point, phase, grads)
    names = dict(REPORTS[phase], **(MIMIC3D_GMAIN if fx.mimic and phase == "Gmain" else {}))
    for theirs, ours in names.items():
        reference = fx.report(point, phase, theirs)
        value = stats[ours].reshape(reference.shape)
        assert torch.allclose(value, reference, rtol=LOSS_RTOL, atol=1e-12), (theirs, value, reference)
    if phase == "Greg":
        weight = fx.meta["G_kwargs"]["rendering_kwargs"]["density_reg"]
        reference = fx.report(point, phase, "l1_loss") * weight
        assert torch.allclose(stats["Loss/G/reg"], reference, rtol=LOSS_RTOL, atol=1e-12)
    if phase == "Dmain":  # the pass on fakes tracks w_avg (update_emas)
        w_avg = nets["G"].backbone.mapping.w_avg
        assert torch.allclose(w_avg, fx.tensors[f"{point}.Dmain.w_avg"], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(
    ("method", "phase"), [("eg3d", p) for p in EG3D_PHASES] + [("mimic3d", p) for p in MIMIC3D_PHASES]
)
def test_float32_phase_is_within_the_float32_envelope(method, phase):
    """Our float32 training path (the one users run) against the official float64 result, mid-schedule.

    Float32 gradients of small random networks carry up to ~7e-4 relative L2 of rounding against
    float64 (official code and ours alike, measured on other fixtures; <= 7e-5 on these); 1.5e-3
    over the whole phase is twice that envelope, while a wrong term (R1 on the pre-blur image:
    5e-2) still fails.
    """
    fx = fixture(method)
    spec = fx.meta["points"]["mid"]
    config = train_config(fx, spec["augment_p"])
    nets = {k: v.float() for k, v in networks(fx, config).items()}
    lpips = FixedPerceptual(fx.weights("perceptual")).float() if fx.mimic else None
    loss = TriplaneGANLoss(
        config, nets["G"], nets["D"], nets.get("D_patch"), augment_pipe(config), None, lpips
    )
    x = {k: v.float() for k, v in inputs(fx).items()}
    module = nets[network_of(phase)]
    module.requires_grad_(True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with Tape.from_fixture(fx, f"mid.{phase}").active():
            chunk = Chunk(x["real_img"], x["real_c"], x["gen_z"], x["gen_c"])
            loss.accumulate(PHASE_NAMES[phase], chunk, fx.meta["gain"], progress_at(config, spec["cur_nimg"]))
    finally:
        torch.set_num_threads(threads)
    ours = {name: p.grad for name, p in module.named_parameters() if p.grad is not None}
    stored = fx.grads("mid", phase)
    diff = sum(float((ours[n].double().reshape(v.shape) - v).square().sum()) for n, v in stored.items())
    norm = sum(float(v.square().sum()) for v in stored.values())
    assert (diff / norm) ** 0.5 <= 1.5e-3


def test_r1_on_the_pre_blur_input_is_not_the_official_one():
    """``loss.r1_target=input`` (StyleGAN2-ADA's R1) differs from the official R1 while the blur is on."""
    fx = fixture("eg3d")
    with float64_mode():
        config = train_config(fx, None)
        config.loss.r1_target = "input"
        nets = networks(fx, config)
        loss = TriplaneGANLoss(config, nets["G"], nets["D"])
        x = inputs(fx)
        nets["D"].requires_grad_(True)
        with Tape.from_fixture(fx, "start.Dreg").active():
            stats = loss.accumulate(
                "Dreg", Chunk(x["real_img"], x["real_c"], x["gen_z"], x["gen_c"]), 3.0, progress_at(config, 0)
            ).stats
    official = fx.report("start", "Dreg", "Loss/D/reg")
    gap = float((stats["Loss/D/reg"].reshape(official.shape) - official).abs().max() / official.abs().max())
    assert gap > 1e-3  # a different quantity, not rounding


# ----------------------------------------------------------------------------- one full step


class _Stream:
    def __init__(self, real_img, real_c):
        self.batch = (real_img, real_c)

    def next_batch(self):
        return self.batch


class _Labels:
    """The official step's per-phase generator cameras, in phase order."""

    def __init__(self, cameras: torch.Tensor, batch: int) -> None:
        self.chunks = list(cameras.split(batch))

    def sample(self, batch: int, device=None) -> torch.Tensor:
        return self.chunks.pop(0)


def _trainer(fx, config, nets, G_ema) -> Trainer:
    """A Trainer on the fixture's networks and inputs (no dataset or run folder needed by a step)."""
    step, x = fx.meta["step"], inputs(fx)
    trainer = Trainer.__new__(Trainer)
    trainer.config, trainer.process = config, ProcessInfo(rank=0, world=1, device=torch.device("cpu"))
    trainer.nets = Networks(nets["G"], G_ema, nets["D"], nets.get("D_patch"))
    trainer.augment_pipe = augment_pipe(config)
    trainer.ada = AdaptiveProbability(
        config.augment.target, config.augment.interval, config.augment.speed_kimg
    )
    trainer.lpips = FixedPerceptual(fx.weights("perceptual")) if fx.mimic else None
    trainer.phases = build_phases(config, nets["G"], nets["D"], nets.get("D_patch"))
    trainer.loss = TriplaneGANLoss(
        config, nets["G"], nets["D"], nets.get("D_patch"), trainer.augment_pipe, trainer.ada, trainer.lpips
    )
    trainer.step, trainer.cur_nimg = 0, step["cur_nimg"]
    trainer.batch_gpu, trainer.chunks_local, trainer.chunks_total = step["batch_size"], 1, 1
    trainer.stream = _Stream(x["real_img"], x["real_c"])
    trainer.labels = _Labels(fx.tensors["step.gen_c"].double(), step["batch_size"])
    trainer.stats, trainer._stop_reason = StatsCollector(), None
    return trainer


@pytest.mark.parametrize("method", ["eg3d", "mimic3d"])
def test_full_step_matches_official(method):
    fx = fixture(method)
    step = fx.meta["step"]
    with float64_mode():
        config = train_config(fx, step["augment_p"])
        nets = networks(fx, config)
        G_ema = networks(fx, config)["G"].eval()
        with torch.no_grad():
            for t in list(G_ema.parameters()) + list(G_ema.buffers()):
                if t.is_floating_point() and t.numel() > 0:
                    t.copy_((0.75 * t).half().double())  # the fixture's G_ema: f16(0.75 * G)
        before = {"G": nets["G"], "G_ema": G_ema, "D": nets["D"], "D_patch": nets.get("D_patch")}
        before = {
            n: {k: v.clone() for k, v in m.state_dict().items()} for n, m in before.items() if m is not None
        }
        trainer = _trainer(fx, config, nets, G_ema)
        assert [p.name for p in trainer.phases] == [PHASE_NAMES[p] for p in step["phases"]]
        for phase in trainer.phases:  # Adam's lazy-regularisation scaling as the official loop
            official = step["lazy"][next(k for k, v in PHASE_NAMES.items() if v == phase.name)]
            group = phase.optimizer.param_groups[0]
            assert phase.interval == official["interval"]
            assert group["lr"] == pytest.approx(official["lr"], rel=1e-15)
            assert group["betas"] == pytest.approx(tuple(official["betas"]), rel=1e-15)
        gen_z = fx.tensors["step.gen_z"].double().split(step["batch_size"])
        entries = []
        for index, phase in enumerate(step["phases"]):
            entries.append(("randn", gen_z[index]))
            keys = sorted(k for k in fx.tensors if k.startswith(f"step.{phase}.tape."))
            entries += [(k.rsplit(".", 1)[1], fx.tensors[k]) for k in keys]
        tape = Tape(entries)
        with tape.active():
            trainer.train_step()
        assert tape.leftover() == []
        after = {"G": nets["G"], "G_ema": G_ema, "D": nets["D"], "D_patch": nets.get("D_patch")}
        scale = {
            name: max(
                float(v.double().abs().max())
                for k, v in fx.tensors.items()
                if k.startswith(f"step.delta.{name}.")
            )
            for name in before
        }
        worst = {}
        for name, module in after.items():
            if module is None:
                continue
            for key, value in module.state_dict().items():
                if not value.is_floating_point():
                    continue
                delta = value - before[name][key]
                stored = fx.tensors.get(f"step.delta.{name}.{key}")
                if stored is None:
                    assert f"{name}.{key}" in step["unchanged"], f"{name}.{key} has no official value"
                    assert not delta.any(), f"{name}.{key} changed; the official step left it as it was"
                    continue
                # The update (~lr) is stored as float32 or float64; both steps ran in float64.
                err = assert_matches(delta, stored, scale[name], f"step {name}.{key} update")
                worst[name] = max(worst.get(name, 0.0), err)
        p_after = float(trainer.augment_pipe.p)
        assert math.isclose(p_after, float(fx.tensors["step.after.augment_p"]), rel_tol=1e-12)
