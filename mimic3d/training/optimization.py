"""Optimisers, phases with lazy regularisation, the guarded optimiser step and the generator EMA."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mimic3d.losses import lazy_regularization
from mimic3d.training.config import TrainConfig
from mimic3d.training.distributed import all_reduce_

# EG3D clamps infinite gradient entries to this magnitude (NaNs become 0).
GRAD_CLAMP = 1e5


@dataclass
class Phase:
    """One optimisation phase: ``name`` (see ``loss.PHASES``) updates ``module`` every ``interval``
    steps with ``optimizer``, its loss multiplied by ``interval`` (lazy regularisation), once
    ``start_nimg`` images have been shown (a curriculum's later stage)."""

    name: str
    network: str
    module: nn.Module
    optimizer: torch.optim.Optimizer
    interval: int
    start_nimg: int = 0

    def due(self, step: int, cur_nimg: int) -> bool:
        """Whether the phase runs at this step."""
        return step % self.interval == 0 and cur_nimg >= self.start_nimg


def _network_phases(
    network: str,
    module: nn.Module,
    lr: float,
    config: TrainConfig,
    main: str,
    reg: str,
    reg_active: bool,
    lazy_interval: int | None,
) -> list[Phase]:
    """Main phase (every step) and, if ``reg_active``, the regulariser phase (every
    ``lazy_interval``). Adam's lr and betas are scaled for ``lazy_interval`` (None: unscaled)."""
    optim = config.optim
    scaled_lr, betas = lazy_regularization(lr, optim.betas, lazy_interval)
    optimizer = make_adam(module, scaled_lr, betas, optim.eps)
    phases = [Phase(main, network, module, optimizer, 1)]
    if reg_active:
        phases.append(Phase(reg, network, module, optimizer, lazy_interval or 1))
    return phases


def make_adam(module: nn.Module, lr: float, betas: tuple[float, float], eps: float) -> torch.optim.Optimizer:
    """Adam over ``module``'s parameters: the fused kernel on CUDA (one launch per step instead of
    several per parameter), the default implementation elsewhere or where fusing is not supported."""
    params = list(module.parameters())
    on_cuda = bool(params) and all(p.device.type == "cuda" for p in params)
    if on_cuda:
        try:
            return torch.optim.Adam(params, lr=lr, betas=betas, eps=eps, fused=True)
        except (RuntimeError, TypeError, ValueError):  # older torch, or a dtype the kernel lacks
            pass
    return torch.optim.Adam(params, lr=lr, betas=betas, eps=eps)


def build_phases(config: TrainConfig, G: nn.Module, D: nn.Module, D_patch: nn.Module | None) -> list[Phase]:
    """EG3D's phase list: Gmain, Greg, Dmain, Dreg, then Mimic3D's Dpatch_main, Dpatch_reg (EpiGRAF:
    Gmain, Dmain, Dreg, with D its patch discriminator).

    A regulariser with weight 0 has no phase. Lazy scaling follows the official training scripts:
    G's only while the density regulariser is on (train.py sets G_reg_interval only then); D's and
    D^3D's always (their reg intervals are always set, so an R1 weight of 0 still scales their Adam).
    Distillation: the student's ``Gmain``, then EG3D's ``Dmain`` / ``Dreg`` from
    ``distill.adversarial_kimg`` (none without that stage).
    """
    loss, optim = config.loss, config.optim
    if config.distilling:
        phases = _network_phases("G", G, optim.g_lr, config, "Gmain", "Greg", False, None)
        start = config.distill.adversarial_nimg
        if start is None:
            return phases
        d_phases = _network_phases(
            "D", D, optim.d_lr, config, "Dmain", "Dreg", loss.r1_gamma > 0, loss.r1_interval
        )
        for phase in d_phases:
            phase.start_nimg = start
        return phases + d_phases
    density_on = loss.density_reg > 0
    phases = _network_phases(
        "G",
        G,
        optim.g_lr,
        config,
        "Gmain",
        "Greg",
        density_on,
        loss.density_reg_interval if density_on else None,
    )
    # EpiGRAF's train.py sets D_reg_interval only when gamma > 0 (EG3D's always).
    d_lazy = loss.r1_interval if loss.r1_gamma > 0 or not config.patch_wise else None
    phases += _network_phases("D", D, optim.d_lr, config, "Dmain", "Dreg", loss.r1_gamma > 0, d_lazy)
    if D_patch is not None and loss.patch_gan > 0:
        phases += _network_phases(
            "D_patch",
            D_patch,
            optim.patch_d_lr,
            config,
            "Dpatch_main",
            "Dpatch_reg",
            loss.patch_r1_gamma > 0,
            loss.patch_r1_interval,
        )
    return phases


def optimizer_step(phase: Phase, num_chunks: int) -> None:
    """Average the accumulated gradients over all ``num_chunks`` chunks of every process, zero
    non-finite entries (NaN -> 0, +-inf -> +-1e5, as EG3D), step, and clear the gradients."""
    params = [p for p in phase.module.parameters() if p.numel() > 0 and p.grad is not None]
    if params:
        flat = torch.cat([p.grad.flatten() for p in params])
        all_reduce_(flat)
        flat /= num_chunks
        torch.nan_to_num(flat, nan=0.0, posinf=GRAD_CLAMP, neginf=-GRAD_CLAMP, out=flat)
        for param, grad in zip(params, flat.split([p.numel() for p in params])):
            param.grad = grad.reshape(param.shape)
    phase.optimizer.step()
    phase.optimizer.zero_grad(set_to_none=True)


@torch.no_grad()
def update_ema(G_ema: nn.Module, G: nn.Module, beta: float) -> None:
    """G_ema <- lerp(G, G_ema, beta) for parameters; buffers (w_avg, label std, noise) are copied.

    One ``torch._foreach`` kernel per group of tensors instead of two per parameter: G_ema's
    parameters are overwritten with lerp(G, G_ema, beta), the same arithmetic as
    ``p.lerp(p_ema, beta)``.
    """
    ema_params, params = list(G_ema.parameters()), list(G.parameters())
    if ema_params:
        # lerp(G, G_ema, beta) = G + beta (G_ema - G): computed into a copy of G, then stored.
        mixed = torch._foreach_lerp([p.detach() for p in params], ema_params, beta)
        torch._foreach_copy_(ema_params, mixed)
    ema_buffers, buffers = list(G_ema.buffers()), list(G.buffers())
    if ema_buffers:
        torch._foreach_copy_(ema_buffers, buffers)
