"""Named evaluation protocols: what a metric name promises (counts, real set, detector).

Names and settings follow StyleGAN2-ADA/EG3D's ``metric_main.py`` (``fid50k_full``, ``kid50k_full``,
``fid50k``, ``kid50k``), EpiGRAF's (``fid2k_full``: 2048 fakes), GRAM's (``fid5k_5k``) and ProGAN's
(``fid10k``, ``swd16k``). "full" means every image of the dataset as given (StyleGAN caps KID's
real set at 1M features); the real set is never mirrored on top of what the dataset holds
(``xflip=False``: EG3D's FFHQ already stores the mirrored copies as images).

Metrics computed with another feature network than the standard Inception are recorded under
``<protocol>_custom[<network name>]`` so that nobody compares them with published numbers.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from mimic3d.metrics.detector import DETECTOR_NAME

METRIC_KINDS = ("fid", "kid", "swd")


@dataclass(frozen=True)
class MetricProtocol:
    """One named protocol.

    Attributes:
        name: the name results are recorded under (``fid50k_full``).
        kind: ``"fid"``, ``"kid"`` or ``"swd"``.
        num_gen: generated images.
        max_real: real images used, the first ones of the dataset; None: all of them.
        mirror: add x-flipped copies of the real images.
        detector: feature network the numbers are defined with (None for the weight-free SWD).
        num_subsets, max_subset_size: KID's subset sampling.
    """

    name: str
    kind: str
    num_gen: int
    max_real: int | None
    mirror: bool = False
    detector: str | None = DETECTOR_NAME
    num_subsets: int = 100
    max_subset_size: int = 1000

    def __post_init__(self) -> None:
        if self.kind not in METRIC_KINDS:
            raise ValueError(f"protocol {self.name!r}: kind must be one of {METRIC_KINDS}, got {self.kind!r}")
        if self.num_gen < 2 or (self.max_real is not None and self.max_real < 2):
            raise ValueError(f"protocol {self.name!r}: num_gen and max_real must be at least 2")

    @property
    def real_set(self) -> str:
        """``"full"`` for every dataset image (up to KID's 1M cap), else the number of real images."""
        return "full" if self.max_real is None or self.max_real >= 1_000_000 else str(self.max_real)

    def result_name(self, standard_detector: bool, detector_name: str) -> str:
        """Name of the recorded result: the protocol name, or ``<name>_custom[<detector>]``."""
        if self.detector is None or standard_detector:
            return self.name
        return f"{self.name}_custom[{detector_name}]"

    def with_counts(self, num_gen: int | None = None, max_real: int | None = None) -> MetricProtocol:
        """This protocol with fewer (or more) images, for quick runs, renamed so that its results
        never pass for the full protocol's: ``fid50k_full`` with 1000 fakes is ``fid50k_full_gen1000``,
        with 500 real images too ``fid50k_full_gen1000_real500``."""
        name = self.name
        if num_gen is not None and num_gen != self.num_gen:
            name += f"_gen{num_gen}"
        if max_real is not None and max_real != self.max_real:
            name += f"_real{max_real}"
        return dataclasses.replace(self, name=name, num_gen=num_gen or self.num_gen,
                                   max_real=max_real or self.max_real)

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "real_set": self.real_set}


_KID_FULL = 1_000_000  # StyleGAN keeps at most this many real features for KID

PROTOCOLS: dict[str, MetricProtocol] = {
    p.name: p
    for p in (
        MetricProtocol("fid50k_full", "fid", num_gen=50_000, max_real=None),
        MetricProtocol("kid50k_full", "kid", num_gen=50_000, max_real=_KID_FULL),
        MetricProtocol("fid50k", "fid", num_gen=50_000, max_real=50_000),
        MetricProtocol("kid50k", "kid", num_gen=50_000, max_real=50_000),
        MetricProtocol("fid10k_full", "fid", num_gen=10_000, max_real=None),
        MetricProtocol("fid10k", "fid", num_gen=10_000, max_real=10_000),
        MetricProtocol("fid5k_5k", "fid", num_gen=5_000, max_real=5_000),
        MetricProtocol("fid2k_full", "fid", num_gen=2_048, max_real=None),
        MetricProtocol("kid2k_full", "kid", num_gen=2_048, max_real=_KID_FULL),
        MetricProtocol("swd16k", "swd", num_gen=16_384, max_real=16_384, detector=None),
    )
}


def get_protocol(name: str) -> MetricProtocol:
    """The registered protocol ``name``; ValueError listing the known ones otherwise."""
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise ValueError(f"unknown metric {name!r}; known metrics: {', '.join(PROTOCOLS)}") from None
