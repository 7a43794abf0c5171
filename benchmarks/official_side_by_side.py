"""Our generator and the official EG3D / Mimic3D one, side by side on the same weights: forward
images/s and peak memory (allocated and reserved on CUDA).

The official code is not part of this repository: point ``--official`` at a checkout of
NVlabs/eg3d's ``eg3d/`` folder or of SeanChenxy/Mimic3D (``benchmarks/gpu_check.sh --prepare``
copies both from local mirrors into an ignored folder). Each case runs in its own process, since
both repositories use the same top-level package names (``training``, ``torch_utils``, ``dnnlib``).
Our weights (random, official state-dict names) are loaded into the official module with
``load_state_dict``; its custom CUDA ops are either compiled (``--official-ops cuda``) or replaced
by their reference PyTorch implementations (``ref``, the default: no compile time); the result
names which ran. Outputs are not compared here (the official renderer draws random depths); the
parity tests do that on fixed inputs.

examples:
  python -m benchmarks.official_side_by_side --case eg3d-ffhq512 --official ~/eg3d/eg3d
  python -m benchmarks.official_side_by_side --case mimic3d-ffhq512 --official ~/Mimic3D --json out.json
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import measure_peak_memory, timeit
from mimic3d.models import GeneratorConfig, TriplaneGenerator, generator_preset
from mimic3d.runtime import apply_backend_policy

SR_CLASSES = {
    "hybrid2x": "SuperresolutionHybrid2X",
    "hybrid4x": "SuperresolutionHybrid4X",
    "hybrid8x": "SuperresolutionHybrid8X",
    "hybrid8xdc": "SuperresolutionHybrid8XDC",
}
CASES = {"eg3d-ffhq512": ("2d",), "mimic3d-ffhq512": ("2d", "3d")}


def official_class_and_kwargs(cfg: GeneratorConfig) -> tuple[str, dict[str, Any]]:
    """The official generator class (module path) and constructor arguments of ``cfg``'s architecture
    (the inverse of the mapping the parity tests use to read official models)."""
    r = cfg.rendering
    rendering = {
        "image_resolution": cfg.img_resolution,
        "disparity_space_sampling": False,
        "clamp_mode": "softplus",
        "superresolution_module": f"training.superresolution.{SR_CLASSES[cfg.superresolution]}",
        "c_gen_conditioning_zero": cfg.c_gen_conditioning_zero,
        "gpc_reg_prob": 0.5,
        "c_scale": cfg.c_scale,
        "superresolution_noise_mode": cfg.sr_noise_mode,
        "density_reg": 0.25,
        "density_reg_p_dist": 0.004,
        "reg_type": "l1",
        "decoder_lr_mul": cfg.decoder_lr_multiplier,
        "sr_antialias": cfg.sr_antialias,
        "depth_resolution": r.num_coarse,
        "depth_resolution_importance": r.num_importance,
        "ray_start": r.ray_start,
        "ray_end": r.ray_end,
        "box_warp": r.box_warp,
        "white_back": r.white_background,
        "avg_camera_radius": 2.7,
        "avg_camera_pivot": [0, 0, 0.2],
    }
    widths = {"channel_base": cfg.channel_base, "channel_max": cfg.channel_max}
    kwargs: dict[str, Any] = {
        "z_dim": cfg.z_dim,
        "w_dim": cfg.w_dim,
        "mapping_kwargs": {"num_layers": cfg.mapping_layers},
        **widths,
        "fused_modconv_default": "inference_only",
        "num_fp16_res": 0,
        "sr_num_fp16_res": cfg.sr_num_fp16_res,
        "sr_kwargs": {**widths, "fused_modconv_default": "inference_only"},
        "conv_clamp": cfg.conv_clamp,
        "c_dim": cfg.c_dim,
        "img_resolution": cfg.img_resolution,
        "img_channels": 3,
        "rendering_kwargs": rendering,
    }
    if not cfg.aware3d:
        return "training.triplane.TriPlaneGenerator", kwargs
    resolutions = [2**i for i in range(2, cfg.triplane_resolution.bit_length())]
    kwargs.update(
        retidx=[-3, -1] if cfg.sr3d else None,
        add_sr_module=False,
        add_block=0,
        triplane_resolution=cfg.triplane_resolution,
        triplane_channels=cfg.triplane_channels,
        triplane_act=None,
        blur_plane=0,
        neural_rendering_resolution=cfg.neural_rendering_resolution,
        decoder_output_dim=cfg.decoder_output_dim,
        depth_guided_sample=0,
        roll_out=None,
        aware3d_res=[res for res in resolutions if res >= cfg.aware3d_min_resolution],
        aware3d_att=False,
    )
    return "training.dual_triplane.DualTriPlaneGenerator", kwargs


def _official_generator(folder: Path, cfg: GeneratorConfig, ops: str) -> tuple[torch.nn.Module, str]:
    sys.path.insert(0, str(folder))
    import importlib

    loaded = []
    for name in ("bias_act", "upfirdn2d", "filtered_lrelu"):
        try:
            module = importlib.import_module(f"torch_utils.ops.{name}")
        except ImportError:
            continue
        if ops == "ref":
            module._init = lambda: False  # the op's reference implementation, no compilation
        loaded.append(module)
    class_path, kwargs = official_class_and_kwargs(cfg)
    module_name, class_name = class_path.rsplit(".", 1)
    G = getattr(importlib.import_module(module_name), class_name)(**kwargs)
    G.neural_rendering_resolution = cfg.neural_rendering_resolution
    compiled = [m.__name__.rsplit(".", 1)[-1] for m in loaded if getattr(m, "_plugin", None) is not None]
    return G, compiled


def official_state(ours: torch.nn.Module, theirs: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Our state dict in the official module's shapes (Mimic3D stores the 4x4 const as [1, C, 4, 4])."""
    shapes = {k: v.shape for k, v in theirs.state_dict().items()}
    state = {}
    for key, value in ours.state_dict().items():
        shape = shapes.get(key)
        state[key] = value.reshape(shape) if shape is not None and shape != value.shape else value
    return state


def run_case(case: str, official: Path, device: torch.device, batch: int, repeat: int, ops: str) -> dict:
    """Ours and theirs on ``case`` (a generator preset), each branch of ``CASES[case]``."""
    apply_backend_policy()
    cfg = generator_preset(case)
    torch.manual_seed(0)
    ours = TriplaneGenerator(cfg).eval().requires_grad_(False).to(device)
    theirs, compiled = _official_generator(official, cfg, ops)
    missing, unexpected = theirs.load_state_dict(official_state(ours, theirs), strict=False)
    theirs = theirs.eval().requires_grad_(False).to(device)
    z = torch.randn(batch, cfg.z_dim, device=device)
    c = torch.zeros(batch, cfg.c_dim, device=device)
    c[:, :16] = torch.tensor([1, 0, 0, 0, 0, -1, 0, 0, 0, 0, -1, 2.7, 0, 0, 0, 1.0]).to(device)
    c[:, 16:] = torch.tensor([4.2647, 0, 0.5, 0, 4.2647, 0.5, 0, 0, 1.0]).to(device)
    result: dict[str, Any] = {
        "case": case,
        "batch": batch,
        "device": str(device),
        "official_ops": (
            f"compiled CUDA ops: {', '.join(compiled)}" if compiled else "reference (PyTorch) ops"
        ),
        "weights": f"{len(missing)} official keys not in ours, {len(unexpected)} of ours not official",
        "branches": {},
    }
    with torch.no_grad():
        ws = ours.mapping(z, c)
        for branch in CASES[case]:
            resolution = cfg.neural_rendering_resolution if branch == "2d" else 128
            # Mimic3D's official synthesis renders P^c alone for the 2D branch (coarse=1), P^c + P^r
            # for the 3D one (coarse=0; its super-resolution then runs on the 3D render too).
            options = ({"coarse": 1 if branch == "2d" else 0}) if cfg.aware3d else {}
            calls = {
                "official": functools.partial(
                    theirs.synthesis,
                    ws,
                    c,
                    neural_rendering_resolution=resolution,
                    noise_mode="const",
                    **options,
                ),
                "mimic3d": functools.partial(
                    ours.synthesis,
                    ws,
                    c,
                    branch=branch,
                    noise_mode="const",
                    neural_rendering_resolution=resolution,
                ),
            }
            row: dict[str, Any] = {}
            for who, fn in calls.items():
                with measure_peak_memory(device) as memory:
                    seconds = timeit(fn, repeat=repeat, warmup=1, device=device)
                row[who] = {
                    "images_per_s": batch / seconds,
                    "seconds": seconds,
                    "peak_allocated_mib": memory.above_baseline_mib,
                    "peak_reserved_mib": memory.reserved_mib,
                }
            row["speed_up"] = row["mimic3d"]["images_per_s"] / row["official"]["images_per_s"]
            result["branches"][f"{branch} at {resolution}"] = row
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.official_side_by_side",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--case", choices=sorted(CASES), required=True, help="generator preset")
    parser.add_argument("--official", type=Path, required=True, help="the official code's folder")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=4, help="batch (default: 4, the paper's per GPU)")
    parser.add_argument("--repeat", type=int, default=3, help="timed forwards, median reported")
    parser.add_argument("--official-ops", choices=("ref", "cuda"), default="ref")
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = parser.parse_args(argv)
    if not (args.official / "training").is_dir():
        parser.error(f"--official: {args.official} has no training/ folder (the official code's root)")
    device = torch.device(args.device)
    result = run_case(args.case, args.official, device, args.batch, args.repeat, args.official_ops)
    text = json.dumps(result, indent=1)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
