"""The whole generator under ``torch.autocast`` (the opt-in mixed-precision mode), against float32.

On CPU autocast runs convolutions and matmuls in bfloat16 or float16; the mapping, the tri-plane
lookup, the rays and the compositing stay in float32 and every output comes back in float32.
"""

from __future__ import annotations

import pytest
import torch

from mimic3d.camera import PRESETS
from mimic3d.models import TriplaneGenerator, generator_preset
from mimic3d.runtime import ACCELERATOR_PATHS, CPU_PATHS, autocast, forced_kernel_paths
from mimic3d.tools.viewpoints import view_labels

# Unit roundoff of each reduced type (half its machine epsilon).
UNIT_ROUNDOFF = {"bf16": 2.0**-9, "fp16": 2.0**-11}


@pytest.fixture(scope="module", params=["tiny-eg3d", "tiny-mimic3d"])
def generator(request):
    torch.manual_seed(0)
    G = TriplaneGenerator(generator_preset(request.param)).eval().requires_grad_(False)
    z = torch.randn(2, G.config.z_dim)
    c = view_labels([0.3, -0.2], -0.1, PRESETS["ffhq"], "cpu")
    return G, G.mapping(z, c), c


# The CPU's kernel paths in both reduced types, and the official (CUDA) paths in bfloat16.
@pytest.mark.parametrize(
    ("precision", "paths"), [("bf16", CPU_PATHS), ("fp16", CPU_PATHS), ("bf16", ACCELERATOR_PATHS)]
)
@pytest.mark.parametrize("branch", ["2d", "3d"])
def test_generator_under_autocast_matches_float32(generator, precision: str, paths, branch: str) -> None:
    G, ws, c = generator
    with forced_kernel_paths(paths):
        expected = G.synthesis(ws, c, branch=branch, noise_mode="const", perturb=False)
        with autocast("cpu", precision):
            got = G.synthesis(ws, c, branch=branch, noise_mode="const", perturb=False)
            assert G.mapping(torch.zeros(1, G.config.z_dim), c[:1]).dtype == torch.float32
    u = UNIT_ROUNDOFF[precision]
    for key in ("image", "image_raw", "image_depth"):
        assert got[key].dtype == torch.float32 and got[key].shape == expected[key].shape
        error = (got[key] - expected[key]).abs()
        scale = expected[key].abs().max()
        # Each of the ~10-20 reduced-precision layers rounds to u relative; errors partly cancel
        # (mean ~ a few u of the output scale) and add up along the worst path (max ~ 16 u).
        assert error.mean() <= 4 * u * scale, (key, error.mean(), scale)
        assert error.max() <= 16 * u * scale, (key, error.max(), scale)
        # The layers really ran in the reduced type (an exact match would mean autocast did nothing).
        assert error.max() > 0.01 * u * scale


def test_unknown_precision_is_named() -> None:
    with pytest.raises(ValueError, match="precision"):
        autocast("cpu", "fp8")
