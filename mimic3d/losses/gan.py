"""GAN objectives of EG3D / Mimic3D: non-saturating logistic loss, R1, density regulariser.

All losses are returned per sample ([N] or [N, 1], as the logits) so that the training loop can
log them before taking ``mean() * gain`` (gain = lazy-regularisation interval for R1 and density).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

DensityFn = Callable[[Tensor, Tensor], Tensor]


def generator_logistic_loss(fake_logits: Tensor) -> Tensor:
    """Non-saturating G loss: softplus(-D(G(z))) = -log sigmoid(D(G(z))), same shape as the logits."""
    return F.softplus(-fake_logits)


def discriminator_fake_loss(fake_logits: Tensor) -> Tensor:
    """D loss on generated images: softplus(D(G(z))) = -log(1 - sigmoid(D(G(z))))."""
    return F.softplus(fake_logits)


def discriminator_real_loss(real_logits: Tensor) -> Tensor:
    """D loss on real images: softplus(-D(x)) = -log sigmoid(D(x))."""
    return F.softplus(-real_logits)


def r1_penalty(real_logits: Tensor, inputs: Sequence[Tensor]) -> Tensor:
    """Squared gradient norm of sum(D) w.r.t. every D input, per sample: [N].

    ``inputs`` are the tensors D was evaluated on (each [N, ...], ``requires_grad=True``); EG3D's
    dual discriminator passes (image, image_raw) and the penalty sums both norms. The graph is
    kept (``create_graph``) so the penalty can be back-propagated into D's weights.
    """
    if len(inputs) == 0:
        raise ValueError("r1_penalty needs at least one D input tensor")
    for i, x in enumerate(inputs):
        if not x.requires_grad:
            raise ValueError(f"r1_penalty: D input {i} does not require grad; call .requires_grad_() first")
    grads = torch.autograd.grad(outputs=[real_logits.sum()], inputs=list(inputs), create_graph=True)
    return sum(g.square().flatten(1).sum(dim=1) for g in grads)


def r1_loss(real_logits: Tensor, inputs: Sequence[Tensor], gamma: float) -> Tensor:
    """R1 regulariser gamma / 2 * r1_penalty, per sample [N]."""
    return r1_penalty(real_logits, inputs) * (gamma / 2)


def density_regularization(
    sample_density: DensityFn,
    ws: Tensor,
    num_points: int = 1000,
    offset_std: float = 0.004,
    generator: torch.Generator | None = None,
) -> Tensor:
    """EG3D's density smoothness term: mean |sigma(x) - sigma(x + eps)|, a scalar.

    x is uniform in [-1, 1]^3 (``num_points`` per sample), eps ~ N(0, offset_std^2) per axis.
    ``sample_density(points [N, 2P, 3], ws) -> raw sigma [N, 2P, 1]`` evaluates the generator's
    density for each sample's latent ``ws`` [N, ...]; both point sets go through one call.
    """
    if num_points < 1 or offset_std < 0:
        raise ValueError(
            f"density_regularization needs num_points >= 1 and offset_std >= 0, got "
            f"{num_points} and {offset_std}"
        )
    shape = (ws.shape[0], num_points, 3)
    points = torch.rand(shape, device=ws.device, generator=generator) * 2 - 1
    perturbed = points + torch.randn(shape, device=ws.device, generator=generator) * offset_std
    sigma = sample_density(torch.cat([points, perturbed], dim=1), ws)
    if sigma.shape[:2] != (ws.shape[0], 2 * num_points):
        raise ValueError(
            f"sample_density must return [N, 2P, ...] = [{ws.shape[0]}, {2 * num_points}, ...], "
            f"got {list(sigma.shape)}"
        )
    return F.l1_loss(sigma[:, :num_points], sigma[:, num_points:])
