"""Suite-wide test settings and shared fixtures.

Most tests run tiny networks where torch's intra-op threading costs more than it gains (and on a
loaded 2-core machine, much more), so each test process computes single-threaded by default;
pytest-xdist spreads test files over the cores instead. ``MIMIC3D_TEST_THREADS=N`` runs every test
(and the training subprocesses it starts) with N intra-op threads, which changes the order of
reductions: the suite's tolerances (``numerics``) must hold for any N. Processes that tests fork
compute single-threaded: GNU OpenMP hangs in the first parallel region of a child forked from a
process whose OpenMP threads already exist.

No test reads anything outside the repository and its temporary folders: the download cache
(``MIMIC3D_CACHE``) points into a fresh temporary folder for the session.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import pytest
import torch
from numerics import suite_threads

torch.set_num_threads(suite_threads())
os.environ["OMP_NUM_THREADS"] = str(suite_threads())  # the training subprocesses that tests start
os.register_at_fork(after_in_child=lambda: torch.set_num_threads(1))
_CACHE = tempfile.mkdtemp(prefix="mimic3d-test-cache-")
os.environ["MIMIC3D_CACHE"] = _CACHE
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)


@pytest.fixture
def tiny_discriminator_kwargs() -> dict:
    """The architecture of the "tiny" dual-discriminator preset as keyword arguments of EG3D's
    ``Discriminator``; tests add the image channels, fp16 and clamping they need."""
    return dict(
        c_dim=25, img_resolution=32, channel_base=256, channel_max=32, epilogue_kwargs={"mbstd_group_size": 2}
    )
