"""LPIPS v0.1 with the VGG16 trunk (Zhang et al. 2018), numerically as in the reference release.

d(x0, x1) = sum_k mean_hw( w_k . (n(f_k(s(x0))) - n(f_k(s(x1))))^2 )
with s the scaling layer ((x - shift) / scale, inputs in [-1, 1]), f_k the k-th VGG16 tap,
n unit-normalisation over channels (x / (||x|| + 1e-10)) and w_k a non-negative 1x1 linear head.

Parameter names follow the reference LPIPS module for the heads (``lin{k}.model.1.weight``) and
buffers (``scaling_layer.shift/scale``), and torchvision for the trunk (``net.features.{i}.*``).
The network is frozen and always in eval mode; gradients flow to the inputs only.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from mimic3d.checkpoints.pretrained import WeightFile, resolve_weight_files
from mimic3d.losses.vgg import TAP_CHANNELS, VGG16Features

log = logging.getLogger(__name__)

VGG16_WEIGHTS = WeightFile(
    filename="vgg16-397923af.pth",
    url="https://download.pytorch.org/models/vgg16-397923af.pth",
    sha256="397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0",
    description="torchvision ImageNet VGG16, 528 MB",
)
# Pinned to the commit that last changed the file, so the URL's content cannot drift.
LPIPS_VGG_WEIGHTS = WeightFile(
    filename="lpips_v0.1_vgg.pth",
    url=(
        "https://raw.githubusercontent.com/richzhang/PerceptualSimilarity/"
        "c33f89e9f46522a584cf41d8880eb0afa982708b/lpips/weights/v0.1/vgg.pth"
    ),
    sha256="a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868",
    description="LPIPS v0.1 linear heads for VGG (weights/v0.1/vgg.pth of the LPIPS release), 7 kB",
)

SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
NORM_EPS = 1e-10


class ScalingLayer(nn.Module):
    """Maps [-1, 1] RGB to the trunk's ImageNet-normalised input: (x - shift) / scale."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("shift", torch.tensor(SHIFT)[None, :, None, None])
        self.register_buffer("scale", torch.tensor(SCALE)[None, :, None, None])

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.shift) / self.scale


class NetLinLayer(nn.Module):
    """1x1 convolution C -> 1 without bias; stored as ``model.1.weight`` [1, C, 1, 1]."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        # Slot 0 held a dropout that is inactive at evaluation; keeping an identity there keeps
        # the release's key ``model.1.weight`` without a dropout that .train() could switch on.
        self.model = nn.Sequential(nn.Identity(), nn.Conv2d(channels, 1, kernel_size=1, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


def normalize_channels(features: Tensor, eps: float = NORM_EPS) -> Tensor:
    """features [N, C, H, W] / (L2 norm over C + eps)."""
    return features / (features.square().sum(dim=1, keepdim=True).sqrt() + eps)


class LPIPS(nn.Module):
    """Perceptual distance between image batches in [-1, 1]: (x0, x1) [N, 3, H, W] -> [N].

    Build with ``LPIPS.pretrained()`` (official weights, downloaded or from a directory),
    ``LPIPS.from_files(vgg_path, lin_path)`` or ``LPIPS.untrained(seed)`` (smoke tests only).
    """

    def __init__(self) -> None:
        super().__init__()
        self.scaling_layer = ScalingLayer()
        self.net = VGG16Features()
        for k, channels in enumerate(TAP_CHANNELS):
            self.add_module(f"lin{k}", NetLinLayer(channels))
        self.is_pretrained = False
        self.requires_grad_(False)
        self.eval()

    @property
    def lins(self) -> list[NetLinLayer]:
        """The five heads ``lin0..lin4`` in tap order."""
        return [getattr(self, f"lin{k}") for k in range(len(TAP_CHANNELS))]

    def train(self, mode: bool = True) -> LPIPS:
        """Always stays in eval mode: LPIPS is a fixed metric, not a trained part of the model."""
        return super().train(False)

    def forward(self, x0: Tensor, x1: Tensor) -> Tensor:
        per_layer = self.per_layer(x0, x1)
        return torch.stack(per_layer, dim=0).sum(dim=0)

    def per_layer(self, x0: Tensor, x1: Tensor) -> list[Tensor]:
        """The five summands of the distance, each [N]."""
        _check_images(x0, x1)
        batch = x0.shape[0]
        # One trunk pass over both batches: same numbers, half the kernel launches.
        taps = self.net(self.scaling_layer(torch.cat([x0, x1], dim=0)))
        f0 = [normalize_channels(tap[:batch]) for tap in taps]
        return self._head_terms(f0, [normalize_channels(tap[batch:]) for tap in taps])

    def features(self, x: Tensor) -> list[Tensor]:
        """The five channel-normalised taps of images x [N, 3, H, W] in [-1, 1], each [N, C_k, H_k, W_k].

        For a fixed image compared many times (an inversion target), compute them once and pass them
        to ``distance_to``: each call then runs the trunk on the other image only.
        """
        _check_images(x, x)
        return [normalize_channels(tap) for tap in self.net(self.scaling_layer(x))]

    def distance_to(self, x: Tensor, features: list[Tensor]) -> Tensor:
        """d(x, y) [N] for images x [N, 3, H, W] and ``features(y)`` (batch N, or 1 to broadcast)."""
        return torch.stack(self._head_terms(self.features(x), features), dim=0).sum(dim=0)

    def _head_terms(self, f0: list[Tensor], f1: list[Tensor]) -> list[Tensor]:
        return [lin((a - b).square()).mean(dim=(1, 2, 3)) for lin, a, b in zip(self.lins, f0, f1)]

    def load_lin_state_dict(self, state_dict: Mapping[str, Tensor], source: str = "state dict") -> None:
        """Copy the five heads from an LPIPS release file (keys ``lin{k}.model.1.weight``)."""
        for k, lin in enumerate(self.lins):
            key = f"lin{k}.model.1.weight"
            target = lin.model[1].weight
            value = state_dict.get(key)
            if value is None:
                raise ValueError(f"{source}: missing key {key!r}; expected LPIPS v0.1 VGG linear weights")
            if not isinstance(value, Tensor) or tuple(value.shape) != tuple(target.shape):
                got = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
                raise ValueError(f"{source}: {key!r} has shape {got}, expected {tuple(target.shape)}")
            with torch.no_grad():
                target.copy_(value)

    @classmethod
    def from_files(cls, vgg_path: str | Path, lin_path: str | Path) -> LPIPS:
        """Load a torchvision-format VGG16 file and an LPIPS linear-head file (no checksum check)."""
        model = cls()
        model.net.load_torchvision_state_dict(_load_state_dict(vgg_path), source=str(vgg_path))
        model.load_lin_state_dict(_load_state_dict(lin_path), source=str(lin_path))
        model.is_pretrained = True
        return model

    @classmethod
    def pretrained(
        cls, weights_dir: str | Path | None = None, download: bool = True, option: str = "weights_dir=DIR"
    ) -> LPIPS:
        """The official LPIPS-VGG v0.1 from ``weights_dir`` or the cache (mimic3d.checkpoints.pretrained);
        ``option`` is how the caller's user sets ``weights_dir``, named when files are missing."""
        vgg_path, lin_path = resolve_weight_files(
            [VGG16_WEIGHTS, LPIPS_VGG_WEIGHTS], weights_dir, download, option
        )
        return cls.from_files(vgg_path, lin_path)

    @classmethod
    def untrained(cls, seed: int = 0) -> LPIPS:
        """Randomly initialised LPIPS for smoke tests: a distance, but NOT a perceptual one."""
        log.warning(
            "!!! LPIPS is UNTRAINED (random VGG16 and random heads, seed %d): the imitation loss is "
            "not perceptual and results are meaningless beyond smoke tests. Train with loss.lpips=pretrained "
            "(LPIPS.pretrained() in Python). !!!",
            seed,
        )
        model = cls()
        generator = torch.Generator().manual_seed(seed)
        model.net.init_random(generator)
        with torch.no_grad():
            # Non-negative heads keep the distance >= 0, as the trained heads are.
            for lin in model.lins:
                weight = lin.model[1].weight
                weight.copy_(torch.rand(weight.shape, generator=generator) / weight.shape[1])
        return model


def build_lpips(
    lpips: str = "pretrained",
    weights_dir: str | Path | None = None,
    download: bool = True,
    seed: int = 0,
    option: str = "loss.lpips_weights_dir=DIR",
) -> LPIPS:
    """Config-level switch (``loss.lpips``): "pretrained" (official weights from ``weights_dir``, set by
    ``option``) or "untrained" (smoke tests)."""
    if lpips == "pretrained":
        return LPIPS.pretrained(weights_dir=weights_dir, download=download, option=option)
    if lpips == "untrained":
        return LPIPS.untrained(seed)
    raise ValueError(f"lpips must be 'pretrained' or 'untrained', got {lpips!r}")


def _load_state_dict(path: str | Path) -> Mapping[str, Tensor]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weight file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling errors have no common base class
        raise ValueError(f"{path}: not a readable PyTorch state dict ({err})") from err
    if not isinstance(state, Mapping):
        raise ValueError(f"{path}: expected a state dict (mapping of tensors), got {type(state).__name__}")
    return state


def _check_images(x0: Tensor, x1: Tensor) -> None:
    if x0.ndim != 4 or x0.shape[1] != 3:
        raise ValueError(f"LPIPS inputs must be [N, 3, H, W] images in [-1, 1], got x0 {list(x0.shape)}")
    if x0.shape != x1.shape:
        raise ValueError(f"LPIPS inputs must have equal shapes, got {list(x0.shape)} and {list(x1.shape)}")
    if min(x0.shape[2:]) < 16:
        raise ValueError(f"LPIPS needs images of at least 16x16 (four 2x poolings), got {list(x0.shape[2:])}")
