"""Radiance fields: callables points [N, P, 3] -> (colour [N, P, C], raw sigma [N, P, 1]).

The renderer marches any such callable, so analytic scenes (tests, mesh and metric tools) go through
exactly the same sampler and marcher as tri-plane generators. Raw sigma is the decoder's output
before the marcher's ``softplus(sigma - 1)``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from mimic3d.render.triplane import TriplaneSampler
from mimic3d.runtime import full_precision

Field = Callable[[Tensor], tuple[Tensor, Tensor]]


class TriplaneField:
    """Tri-plane(s) + decoder as a field; features of several tri-planes are summed before decoding.

    planes: [N, 3, C, S, S] or a sequence of them (Mimic3D: coarse 256^2 + residual 512^2);
    decoder: features [..., C] -> (colour, raw sigma), e.g. ``TriplaneDecoder``;
    colour_channels: return only that many colour channels (decoders that take the keyword, like
    ``TriplaneDecoder``, then skip computing the others);
    align_corners: the lookup's grid_sample alignment (EpiGRAF: True).
    """

    def __init__(
        self,
        planes: Tensor | Sequence[Tensor],
        decoder: nn.Module,
        box_warp: float,
        convention: str = "eg3d",
        colour_channels: int | None = None,
        align_corners: bool = False,
    ) -> None:
        self.sampler = TriplaneSampler(planes, box_warp, convention, align_corners)
        self.colour_channels = colour_channels
        # Decoders that cannot skip channels (any callable module) decode all of them; we slice.
        self._decoder_selects = colour_channels is not None and _accepts_colour_channels(decoder)
        expected = getattr(decoder, "n_features", None)
        if expected is not None and expected != self.sampler.channels:
            raise ValueError(
                f"planes: have {self.sampler.channels} channels but the decoder expects {expected}"
            )
        self.decoder = decoder

    def __call__(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """Colour and raw sigma at points [N, P, 3], in float32 also under autocast (the decoder then
        runs in the reduced type; the marcher's weights need float32)."""
        features = self.sampler.mean_features(points)
        if self.colour_channels is None:
            colour, sigma = self.decoder(features)
        elif self._decoder_selects:
            colour, sigma = self.decoder(features, colour_channels=self.colour_channels)
        else:
            colour, sigma = self.decoder(features)
            colour = colour[..., : self.colour_channels]
        return full_precision(colour), full_precision(sigma)

    def density(self, points: Tensor) -> Tensor:
        """Raw sigma only: points [N, P, 3] -> [N, P, 1] float32."""
        features = self.sampler.mean_features(points)
        if hasattr(self.decoder, "density"):
            return full_precision(self.decoder.density(features))
        return full_precision(self.decoder(features)[1])


def _accepts_colour_channels(decoder: Callable) -> bool:
    try:
        return "colour_channels" in inspect.signature(getattr(decoder, "forward", decoder)).parameters
    except (TypeError, ValueError):
        return False


def query_field(
    field: Field, points: Tensor, chunk_points: int, density_only: bool = False
) -> tuple[Tensor, ...]:
    """Evaluate ``field`` on points [N, P, 3] in chunks of ``chunk_points`` points (over the batch).

    Returns (colour [N, P, C], sigma [N, P, 1]), or (sigma,) with ``density_only`` (which uses the
    field's ``density`` method when it has one).
    """
    if points.ndim != 3 or points.shape[-1] != 3:
        raise ValueError(f"points: expected shape [N, P, 3], got {list(points.shape)}")
    if chunk_points < 1:
        raise ValueError(f"chunk_points: expected a positive int, got {chunk_points}")
    step = max(1, chunk_points // max(1, points.shape[0]))
    parts: list[tuple[Tensor, ...]] = []
    for chunk in points.split(step, dim=1):
        if density_only:
            density = getattr(field, "density", None)
            parts.append((density(chunk),) if density is not None else (field(chunk)[1],))
        else:
            parts.append(tuple(field(chunk)))
    return tuple(torch.cat(outputs, 1) for outputs in zip(*parts))
