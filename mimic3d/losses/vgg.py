"""VGG16 convolutional trunk (torchvision's ``vgg16().features`` layout) returning LPIPS taps.

Layer indices, and therefore state-dict keys ``features.{i}.weight`` / ``features.{i}.bias``, are
those of torchvision's VGG16, so its ImageNet checkpoint ``vgg16-397923af.pth`` loads directly.
Only layers 0..29 exist: the last max-pool (30) and the classifier feed nothing LPIPS reads.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

# Output channels of the convolutions in each of the five stages (torchvision's configuration "D");
# a 2x2 max-pool separates consecutive stages.
VGG16_STAGES: tuple[tuple[int, ...], ...] = (
    (64, 64),
    (128, 128),
    (256, 256, 256),
    (512, 512, 512),
    (512, 512, 512),
)
# Outputs of relu1_2, relu2_2, relu3_3, relu4_3, relu5_3.
TAP_INDICES: tuple[int, ...] = (3, 8, 15, 22, 29)
TAP_CHANNELS: tuple[int, ...] = (64, 128, 256, 512, 512)


def _build_layers() -> list[nn.Module]:
    layers: list[nn.Module] = []
    in_channels = 3
    for stage, widths in enumerate(VGG16_STAGES):
        if stage > 0:
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        for width in widths:
            layers += [nn.Conv2d(in_channels, width, kernel_size=3, padding=1), nn.ReLU()]
            in_channels = width
    return layers


class VGG16Features(nn.Module):
    """VGG16 ``features[0:30]``: x [N, 3, H, W] -> five taps [N, C_k, H / 2^k, W / 2^k] (k = 0..4)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(*_build_layers())

    def forward(self, x: Tensor) -> list[Tensor]:
        taps = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in TAP_INDICES:
                taps.append(x)
        return taps

    def conv_indices(self) -> list[int]:
        """Indices of the convolution layers (the only ones holding weights)."""
        return [i for i, layer in enumerate(self.features) if isinstance(layer, nn.Conv2d)]

    def load_torchvision_state_dict(
        self, state_dict: Mapping[str, Tensor], source: str = "state dict"
    ) -> None:
        """Copy ``features.{i}.weight/bias`` from a torchvision VGG16 state dict (other keys ignored).

        ValueError names the first missing key or mismatched shape; ``source`` names the file.
        """
        own = self.state_dict()
        for key, target in own.items():
            if key not in state_dict:
                raise ValueError(f"{source}: missing key {key!r}; expected a torchvision VGG16 state dict")
            value = state_dict[key]
            if not isinstance(value, Tensor) or tuple(value.shape) != tuple(target.shape):
                got = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
                raise ValueError(f"{source}: {key!r} has shape {got}, expected {tuple(target.shape)}")
        with torch.no_grad():
            for key, target in own.items():
                target.copy_(state_dict[key])

    def init_random(self, generator: torch.Generator) -> None:
        """torchvision's VGG initialisation (Kaiming-normal fan-out weights, zero biases), seeded."""
        with torch.no_grad():
            for index in self.conv_indices():
                conv = self.features[index]
                fan_out = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]
                conv.weight.normal_(0.0, (2.0 / fan_out) ** 0.5, generator=generator)
                conv.bias.zero_()
