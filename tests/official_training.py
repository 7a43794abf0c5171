"""Shared pieces of the training-parity tests (tests/fixtures/training, made by the official code).

Each fixture holds small official-format EG3D / Mimic3D networks (float16-exact weights), fixed
inputs, and what the official ``StyleGAN2Loss.accumulate_gradients`` and training-loop step
produced from them in float64: loss values, every gradient by name, every random draw in order
(the "tape") and the parameters after one full step. The JSON manifest says how they were made.

Here our networks get the same weights, run in float64 (default dtype float64 inside
``float64_mode``) and draw their random numbers from the tape: ``Tape`` stands in for
``torch.rand``, ``torch.randn`` and ``torch.randint`` and serves, per kind and shape, the official
draws in their official order, so both sides see the same pose swaps, density points, patch
windows and augmentation. A draw the official code did not make is an error, and so is one it
made that ours leaves unused.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections import defaultdict, deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import Tensor, nn

from mimic3d.models import GeneratorConfig, TriplaneGenerator
from mimic3d.models.discriminator import DualDiscriminator, DualDiscriminatorConfig
from mimic3d.models.patch_discriminator import PatchDiscriminator, PatchDiscriminatorConfig
from mimic3d.render import RenderConfig
from mimic3d.training.augment import AugmentConfig, AugmentPipe
from mimic3d.training.config import (
    AugmentSection,
    LossConfig,
    OptimConfig,
    RunConfig,
    ScheduleConfig,
    TrainConfig,
)

FIXTURES = Path(__file__).parent / "fixtures" / "training"
# Official phase names -> ours.
PHASE_NAMES = {
    "Gmain": "Gmain",
    "Greg": "Greg",
    "Dmain": "Dmain",
    "Dreg": "Dreg",
    "D_patchmain": "Dpatch_main",
    "D_patchreg": "Dpatch_reg",
}
NETWORK_OF_PHASE = {"G": "G", "D": "D", "D_patch": "D_patch"}


@dataclass
class Fixture:
    method: str
    meta: dict
    tensors: dict[str, Tensor]

    @property
    def mimic(self) -> bool:
        return self.method == "mimic3d"

    def weights(self, network: str) -> dict[str, Tensor]:
        prefix = f"weights.{network}."
        return {k[len(prefix) :]: v.double() for k, v in self.tensors.items() if k.startswith(prefix)}

    def grads(self, point: str, phase: str) -> dict[str, Tensor]:
        prefix = f"{point}.{phase}.grad."
        return {k[len(prefix) :]: v.double() for k, v in self.tensors.items() if k.startswith(prefix)}

    def report(self, point: str, phase: str, name: str, index: int = 0) -> Tensor:
        return self.tensors[f"{point}.{phase}.report.{name}.{index}"].double()


def load_fixture(method: str) -> Fixture:
    meta = json.loads((FIXTURES / f"{method}_phases.json").read_text())
    return Fixture(method, meta, load_file(str(FIXTURES / f"{method}_phases.safetensors")))


@contextlib.contextmanager
def float64_mode() -> Iterator[None]:
    """Default dtype float64 (constants our code creates follow it), one thread (tiny networks)."""
    dtype, threads = torch.get_default_dtype(), torch.get_num_threads()
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_default_dtype(dtype)
        torch.set_num_threads(threads)


# ----------------------------------------------------------------------------- configs and networks


def train_config(fx: Fixture, augment_p: float | None = None) -> TrainConfig:
    """Our config for the fixture's official kwargs (loss, schedule, optimiser, networks)."""
    meta, mimic = fx.meta, fx.mimic
    g, d, loss = meta["G_kwargs"], meta["D_kwargs"], meta["loss_kwargs"]
    rendering = g["rendering_kwargs"]
    generator = GeneratorConfig(
        z_dim=g["z_dim"],
        w_dim=g["w_dim"],
        c_dim=g["c_dim"],
        img_resolution=g["img_resolution"],
        triplane_resolution=g.get("triplane_resolution", meta["triplane_resolution"]),
        triplane_channels=96,
        channel_base=g["channel_base"],
        channel_max=g["channel_max"],
        mapping_layers=g["mapping_kwargs"]["num_layers"],
        conv_clamp=None,
        neural_rendering_resolution=loss["neural_rendering_resolution_initial"],
        superresolution="hybrid2x",
        sr_channels=tuple(meta["sr_channels"]),
        sr_num_fp16_res=0,
        sr_noise_mode=rendering["superresolution_noise_mode"],
        decoder_output_dim=32,
        rendering=RenderConfig.from_eg3d_kwargs(
            rendering, convention="xyz" if mimic else "eg3d", perturb=False
        ),
        aware3d=mimic,
        aware3d_min_resolution=min(g.get("aware3d_res") or [4]),
        sr3d=mimic,
        c_scale=float(rendering["c_scale"]),
    )
    discriminator = DualDiscriminatorConfig(
        img_resolution=d["img_resolution"],
        mapping_layers=d["mapping_kwargs"]["num_layers"],
        **_discriminator_fields(d),
    )
    patch = None
    if mimic:
        p = meta["patch_kwargs"]
        patch = PatchDiscriminatorConfig(patch_resolution=p["img_resolution"], **_discriminator_fields(p))
    step = meta["step"]
    return TrainConfig(
        generator=generator,
        discriminator=discriminator,
        patch_discriminator=patch,
        loss=LossConfig(
            r1_gamma=loss["r1_gamma"],
            r1_interval=step["D_reg_interval"],
            density_reg=rendering["density_reg"],
            density_reg_interval=step["G_reg_interval"],
            density_reg_offset=rendering["density_reg_p_dist"],
            density_reg_points=1000,  # hard-coded in the official loss
            imitation_weight=1.0 if mimic else 0.0,  # Mimic3D adds the LPIPS term with weight 1
            patch_gan=loss.get("patch_gan", 0.0),
            patch_r1_gamma=loss.get("r1_gamma_patch", 1.0),
            patch_r1_interval=step["D_patch_reg_interval"],
            patch_resolution=loss["neural_rendering_resolution_initial"],  # Mimic3D's patch = render size
            lpips="untrained",
            noise_mode="const",
        ),
        optim=OptimConfig(g_lr=step["G_lr"], d_lr=step["D_lr"], patch_d_lr=step["D_lr"]),
        schedule=ScheduleConfig(
            blur_init_sigma=loss["blur_init_sigma"],
            blur_fade_kimg=loss["blur_fade_kimg"],
            gpc_prob=loss["gpc_reg_prob"],
            gpc_fade_kimg=loss["gpc_reg_fade_kimg"],
            nrr_initial=loss["neural_rendering_resolution_initial"],
            nrr_final=loss["neural_rendering_resolution_final"],
            nrr_fade_kimg=loss["neural_rendering_resolution_fade_kimg"],
            ema_kimg=step["ema_kimg"],
            ema_rampup=step["ema_rampup"],
            scale_with_batch=False,  # the official kwargs are already at this batch
        ),
        augment=AugmentSection(
            mode="noaug" if augment_p is None else "ada",
            p=augment_p or 0.0,
            target=step["ada_target"],
            interval=step["ada_interval"],
            speed_kimg=step["ada_kimg"],
            pipe=AugmentConfig(),  # 'bgc', the official AugmentPipe kwargs of the fixture
        ),
        run=RunConfig(batch_size=step["batch_size"], device="cpu"),
    )


def _discriminator_fields(kwargs: dict) -> dict:
    """Fields both our discriminator configs take, from an official discriminator's kwargs."""
    names = ("c_dim", "architecture", "channel_base", "channel_max")
    fields = {name: kwargs[name] for name in names}
    fields.update(
        num_fp16_res=0, conv_clamp=None, mbstd_group_size=kwargs["epilogue_kwargs"]["mbstd_group_size"]
    )
    return fields


def networks(fx: Fixture, config: TrainConfig) -> dict[str, nn.Module]:
    """Our G, D (and D^3D) in float64 with the fixture's official weights, loaded by name."""
    nets: dict[str, nn.Module] = {
        "G": TriplaneGenerator(config.generator),
        "D": DualDiscriminator(config.discriminator),
    }
    if fx.mimic:
        nets["D_patch"] = PatchDiscriminator(config.patch_discriminator)
    for name, net in nets.items():
        net.double().load_state_dict(fx.weights(name), strict=True)
        net.train().requires_grad_(False)
    return nets


class FixedPerceptual(nn.Module):
    """The LPIPS stand-in on both sides (the official LPIPS needs torchvision): conv3x3 3->4 + ReLU
    taps of x and of 2x average-pooled x, unit-normalised over channels, squared difference,
    non-negative 1x1 heads, spatial mean, summed over the two taps: (x0, x1) [N, 3, H, W] -> [N]."""

    def __init__(self, state: dict[str, Tensor]) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.lin0 = nn.Conv2d(4, 1, 1, bias=False)
        self.lin1 = nn.Conv2d(4, 1, 1, bias=False)
        self.double().load_state_dict(state)
        self.requires_grad_(False)

    def forward(self, x0: Tensor, x1: Tensor) -> Tensor:
        total = 0
        for k, lin in enumerate((self.lin0, self.lin1)):
            a, b = (x0, x1) if k == 0 else (F.avg_pool2d(x0, 2), F.avg_pool2d(x1, 2))
            fa, fb = torch.relu(self.conv(a)), torch.relu(self.conv(b))
            fa = fa / (fa.square().sum(1, keepdim=True).sqrt() + 1e-10)
            fb = fb / (fb.square().sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + lin((fa - fb).square()).mean(dim=(1, 2, 3))
        return total


def augment_pipe(config: TrainConfig) -> AugmentPipe | None:
    if config.augment.mode == "noaug":
        return None
    return AugmentPipe(config.augment.pipe, p=config.augment.p)


# ----------------------------------------------------------------------------- random draws


class Tape:
    """Serves recorded draws in place of torch.rand / randn / randint (see the module docstring).

    ``entries`` maps tape keys (``{i}.rand``, ``{i}.randn``, ``{i}.randint{high}``) to values;
    rand/randn queue per shape, randint per upper bound as a stream of scalars (the official code
    draws windows one scalar at a time, ours a [N, 2] tensor: same numbers, same order).
    """

    def __init__(self, entries: list[tuple[str, Tensor]]) -> None:
        self.queues: dict[tuple, deque] = defaultdict(deque)
        for kind, value in entries:
            if kind.startswith("randint"):
                self.queues[("randint", int(kind[len("randint") :]))].append(int(value))
            else:
                self.queues[(kind, tuple(value.shape))].append(value)

    @classmethod
    def from_fixture(cls, fx: Fixture, prefix: str) -> Tape:
        keys = sorted(k for k in fx.tensors if k.startswith(prefix + ".tape."))
        return cls([(k.rsplit(".", 1)[1], fx.tensors[k]) for k in keys])

    def _pop(self, kind: str, size: tuple, dtype: torch.dtype | None) -> Tensor:
        shape = (
            tuple(size[0])
            if len(size) == 1 and isinstance(size[0], (tuple, list, torch.Size))
            else tuple(size)
        )
        queue = self.queues.get((kind, shape))
        if not queue:
            raise AssertionError(f"our code drew torch.{kind}{list(shape)}, which the official phase did not")
        return queue.popleft().to(dtype or torch.get_default_dtype())

    def rand(self, *size, generator=None, device=None, dtype=None, **_) -> Tensor:
        return self._pop("rand", size, dtype)

    def randn(self, *size, generator=None, device=None, dtype=None, **_) -> Tensor:
        return self._pop("randn", size, dtype)

    def randint(self, *args, generator=None, device=None, dtype=None, **kwargs) -> Tensor:
        size = kwargs.get("size", args[-1])
        high = args[-2] if len(args) >= 2 else kwargs["high"]
        queue = self.queues.get(("randint", int(high)))
        count = math.prod(size)
        if not queue or len(queue) < count:
            raise AssertionError(
                f"our code drew torch.randint({high}, {list(size)}) beyond the official draws"
            )
        return torch.tensor([queue.popleft() for _ in range(count)], dtype=torch.int64).reshape(size)

    def leftover(self) -> list[str]:
        return [f"{key[0]}{list(key[1:])} x{len(q)}" for key, q in self.queues.items() if q]

    @contextlib.contextmanager
    def active(self) -> Iterator[Tape]:
        saved = {name: getattr(torch, name) for name in ("rand", "randn", "randint")}
        torch.rand, torch.randn, torch.randint = self.rand, self.randn, self.randint
        try:
            yield self
        finally:
            for name, fn in saved.items():
                setattr(torch, name, fn)


# ----------------------------------------------------------------------------- comparisons


def relative_l2(ours: Tensor, theirs: Tensor) -> float:
    return float((ours - theirs).norm() / theirs.norm().clamp_min(1e-300))


def assert_matches(ours: Tensor, stored: Tensor, scale: float, what: str) -> float:
    """``ours`` (float64) against an official value stored as float64 or float32; returns the
    relative L2 error.

    Two float64 implementations of the same formulas agree here to ~1e-11 relative (summation
    order, fused vs separate ops), so float64 references get rtol 1e-9; a reference stored as
    float32 (the official float64 value rounded, to keep the fixture small) carries up to 2^-24
    relative per entry, so 2^-23. The absolute floor, 1e-12 of the largest entry of the phase
    (``scale``) per sqrt(entry), covers entries that cancel to ~0 (e.g. a bias both density
    samples share), whose float64 rounding is relative to the terms that cancelled.
    """
    theirs = stored.double()
    if theirs.ndim == ours.ndim + 1 and theirs.shape[0] == 1:
        theirs = theirs[0]  # Mimic3D keeps the first block's constant as [1, C, 4, 4]; ours is [C, 4, 4]
    assert ours.shape == theirs.shape, f"{what}: shape {list(ours.shape)} vs official {list(theirs.shape)}"
    rtol = 2.0**-23 if stored.dtype == torch.float32 else 1e-9
    error = float((ours - theirs).norm())
    bound = rtol * float(theirs.norm()) + 1e-12 * scale * theirs.numel() ** 0.5
    assert error <= bound, (
        f"{what}: |ours - official| = {error:.3e} > {bound:.3e} (relative {relative_l2(ours, theirs):.2e})"
    )
    return relative_l2(ours, theirs)
