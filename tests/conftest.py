"""Suite-wide test settings and shared fixtures.

Most tests run tiny networks where torch's intra-op threading costs more than it gains (and on a
loaded 2-core machine, much more), so each test process computes single-threaded; pytest-xdist
spreads test files over the cores instead.
"""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture
def tiny_discriminator_kwargs() -> dict:
    """The architecture of the "tiny" dual-discriminator preset as keyword arguments of EG3D's
    ``Discriminator``; tests add the image channels, fp16 and clamping they need."""
    return dict(
        c_dim=25, img_resolution=32, channel_base=256, channel_max=32, epilogue_kwargs={"mbstd_group_size": 2}
    )
