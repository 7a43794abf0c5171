"""The networks of a run: built from the config, or started from an earlier run's weights.

Mimic3D stage 2 starts from a stage-1 run: G, G_ema and D are copied from it and the modules that
stage 1 did not have (S^3D inside G, the patch discriminator D^3D) keep their random initialisation.
Any checkpoint ``mimic3d.load_networks`` reads works as the source (a run folder's latest snapshot,
a snapshot folder, a portable checkpoint, an official EG3D/Mimic3D pickle); the log names the
snapshot used, what was copied and what stayed random.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from mimic3d.checkpoints.load import load_networks
from mimic3d.checkpoints.resolve import resolve_checkpoint
from mimic3d.models.discriminator import DualDiscriminator
from mimic3d.models.generator import TriplaneGenerator
from mimic3d.models.patch_discriminator import (
    HyperModulatedPatchDiscriminator,
    HyperModulatedPatchDiscriminatorConfig,
    PatchDiscriminator,
)
from mimic3d.models.student import StudentGenerator
from mimic3d.training.config import TrainConfig
from mimic3d.training.distill import build_student

_MAX_LISTED = 6


@dataclass
class Networks:
    """G (trained), G_ema (its moving average, used for everything shown), D, and D^3D if any.

    D is EG3D's dual discriminator, or EpiGRAF's hyper-modulated patch discriminator when the run
    trains patch-wise; D^3D (Mimic3D) is a plain or a hyper-modulated patch discriminator. A
    distillation run's G is the student (its teacher is not one of the run's networks).
    """

    G: TriplaneGenerator | StudentGenerator
    G_ema: TriplaneGenerator | StudentGenerator
    D: DualDiscriminator | HyperModulatedPatchDiscriminator
    D_patch: PatchDiscriminator | HyperModulatedPatchDiscriminator | None

    def named(self) -> dict[str, nn.Module]:
        """Modules by checkpoint name (``G_ema`` first: the one ``mimic3d.load`` returns)."""
        named = {"G_ema": self.G_ema, "G": self.G, "D": self.D}
        if self.D_patch is not None:
            named["D_patch"] = self.D_patch
        return named


def build_networks(
    config: TrainConfig,
    label_std: torch.Tensor,
    seed: int,
    device: torch.device,
    teacher: TriplaneGenerator | None = None,
    cameras: torch.Tensor | None = None,
) -> Networks:
    """Freshly initialised networks (identical in every process for one seed), gradients off.

    Distillation builds G as a student of ``teacher`` (which keeps its own label std), with input
    statistics from ``cameras`` [K, 25] (the dataset's labels).
    """
    torch.manual_seed(seed)
    if config.distilling:
        if teacher is None or cameras is None:
            raise ValueError("build_networks: distillation needs the teacher and the dataset's cameras")
        G = build_student(config, teacher, cameras)
    else:
        G = TriplaneGenerator(copy.deepcopy(config.generator))
        G.dataset_label_std.copy_(label_std)
    if config.patch_wise:
        D = HyperModulatedPatchDiscriminator(copy.deepcopy(config.hyper_discriminator))
    else:
        D = DualDiscriminator(copy.deepcopy(config.discriminator))
    D_patch = None
    patch_d = config.patch_d_config
    if isinstance(patch_d, HyperModulatedPatchDiscriminatorConfig):
        D_patch = HyperModulatedPatchDiscriminator(copy.deepcopy(patch_d))
    elif patch_d is not None:
        D_patch = PatchDiscriminator(copy.deepcopy(patch_d))
    G_ema = copy.deepcopy(G).eval()
    for module in (G, D, D_patch):
        if module is not None:
            module.train().requires_grad_(False)
    G_ema.requires_grad_(False)
    nets = Networks(
        G.to(device), G_ema.to(device), D.to(device), None if D_patch is None else D_patch.to(device)
    )
    return nets


def compiled_parts(nets: Networks) -> list[nn.Module]:
    """The modules ``run.compile`` compiles: G's synthesis and 3D blocks, super-resolution and decoder
    (the renderer's custom gather stays eager), D and D^3D whole. G_ema stays eager (snapshots only)."""
    G = nets.G
    synthesis = G.backbone.synthesis
    blocks = [m for name, m in synthesis.named_children() if name.startswith("b")]
    parts = [*blocks, G.decoder, nets.D]
    if G.superresolution is not None:
        parts.append(G.superresolution)
    if nets.D_patch is not None:
        parts.append(nets.D_patch)
    return parts


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:_MAX_LISTED])
    return shown + (f" and {len(keys) - _MAX_LISTED} more" if len(keys) > _MAX_LISTED else "")


def copy_matching(target: nn.Module, source: nn.Module, where: str) -> list[str]:
    """Copy every parameter and buffer of ``source`` into ``target``; returns the target keys the
    source lacks (new modules). ValueError when the source has keys the target lacks or shapes differ."""
    target_state, source_state = target.state_dict(), source.state_dict()
    unexpected = sorted(set(source_state) - set(target_state))
    misshaped = [
        f"{k} ({list(source_state[k].shape)} vs {list(target_state[k].shape)})"
        for k in sorted(set(source_state) & set(target_state))
        if source_state[k].shape != target_state[k].shape
    ]
    if unexpected or misshaped:
        problems = []
        if unexpected:
            problems.append(f"keys this run's network lacks: {_listing(unexpected)}")
        if misshaped:
            problems.append(f"different shapes: {_listing(misshaped)}")
        raise ValueError(
            f"run.init_from {where}: does not fit this run's architecture; " + "; ".join(problems)
        )
    with torch.no_grad():
        for key, value in source_state.items():
            target_state[key].copy_(value)
    return sorted(set(target_state) - set(source_state))


@dataclass
class InitReport:
    """What ``init_from_checkpoint`` did: the checkpoint it read (and the networks it holds), per
    network the target keys that stayed randomly initialised, and networks the source lacked."""

    source: Path
    holds: list[str]
    fresh: dict[str, list[str]]
    random_networks: list[str]

    def log_lines(self) -> list[str]:
        lines = [f"starting from {self.source} (it holds {', '.join(self.holds)})"]
        for name, keys in self.fresh.items():
            kept = f"; {len(keys)} tensors stay randomly initialised (new modules)" if keys else ""
            lines.append(f"{name} copied{kept}")
        lines += [
            f"{name} stays randomly initialised: the source has no {name}" for name in self.random_networks
        ]
        return lines


def init_from_checkpoint(nets: Networks, path: str | os.PathLike) -> InitReport:
    """Start ``nets`` from an earlier run (see module docstring). A source without ``G`` starts G
    from its ``G_ema``; a source without ``D`` (or ``D_patch``) leaves that network random."""
    path = resolve_checkpoint(path).path
    source = load_networks(path)
    if "G_ema" not in source:
        raise ValueError(f"run.init_from {path}: holds no G_ema (it has {sorted(source)})")
    theirs, ours = source["G_ema"].config.plane_convention, nets.G.config.plane_convention
    if theirs != ours:
        raise ValueError(
            f"run.init_from {path}: its tri-planes use the {theirs!r} projection, this run's generator "
            f"{ours!r} (generator.rendering.convention)"
        )
    pairs = [("G_ema", nets.G_ema, "G_ema"), ("G", nets.G, "G" if "G" in source else "G_ema")]
    if "D" in source:
        pairs.append(("D", nets.D, "D"))
    if nets.D_patch is not None and "D_patch" in source:
        pairs.append(("D_patch", nets.D_patch, "D_patch"))
    fresh = {
        name: copy_matching(target, source[source_name], f"{path}:{source_name}")
        for name, target, source_name in pairs
    }
    absent = [name for name, module in (("D", nets.D), ("D_patch", nets.D_patch)) if module is not None]
    return InitReport(
        Path(path).absolute(), sorted(source), fresh, [name for name in absent if name not in source]
    )
