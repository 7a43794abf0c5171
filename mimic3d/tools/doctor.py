"""``doctor``: what this installation has (versions, devices, fast paths, weight files) and whether its
numerics still work, checked by rendering a fixed tiny generator and comparing with stored pixels.

The reference generators are the "tiny-mimic3d" preset (both branches, 3D-aware stream and 3D
super-resolution) and the "tiny-epigraf-bg" preset (EpiGRAF's integration, plane conventions and
sphere background), with weights drawn per tensor from ``np.random.RandomState(crc32(name))``, so they
do not depend on module construction order or on torch's random streams. Seed 0 is rendered with
truncation 0.7 from a fixed side view on the CPU, deterministically, and compared with
``doctor_reference.npz`` (shipped inside the package). Black, constant, non-finite or shifted renders
all fail the check. Accelerators are compared with a looser tolerance (TF32 convolutions).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import shutil
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mimic3d.camera import PRESETS
from mimic3d.checkpoints.pretrained import WeightFile, cache_dir, verify_file
from mimic3d.models import TriplaneGenerator, generator_preset
from mimic3d.tools.latents import seed_ws
from mimic3d.tools.rendering import render_branch
from mimic3d.tools.viewpoints import camera_preset_for, view_labels

REFERENCE_FILE = Path(__file__).with_name("doctor_reference.npz")
REFERENCE_PRESET = "tiny-mimic3d"
EPIGRAF_REFERENCE_PRESET = "tiny-epigraf-bg"  # its renders are stored as epigraf_image, epigraf_depth
REFERENCE_SEED = 0
REFERENCE_PSI = 0.7
REFERENCE_VIEW = (0.3, -0.1)  # yaw, pitch offsets from frontal (radians)
CPU_TOLERANCE = 2e-3  # max |difference| of images in [-1, 1] and of depths
ACCELERATOR_TOLERANCE = 5e-2
MIN_IMAGE_STD = 1e-3
PACKAGES = (
    "torch", "numpy", "safetensors", "scipy", "pillow", "imageio", "imageio-ffmpeg",
    "scikit-image", "trimesh", "tqdm", "pyyaml",
)  # fmt: skip


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


# ----------------------------------------------------------------------------- reference render


def _reference_values(name: str, shape: Sequence[int]) -> torch.Tensor:
    """Deterministic values for the tensor called ``name``, by what kind of tensor it is."""
    rng = np.random.RandomState(zlib.crc32(name.encode()))
    values = torch.from_numpy(rng.standard_normal(tuple(shape))).float()
    if name.endswith("affine.bias"):
        return 1 + 0.1 * values  # StyleGAN's affine layers start at bias 1
    if name.endswith(("bias", "noise_strength", "w_avg")):
        return 0.1 * values
    return values


def reference_generator(preset: str = REFERENCE_PRESET) -> TriplaneGenerator:
    """The doctor's fixed tiny generator of ``preset``, on the CPU in eval mode."""
    G = TriplaneGenerator(generator_preset(preset)).eval().requires_grad_(False)
    state = G.state_dict()
    for name, tensor in state.items():
        # Filters and the label statistics are fixed constants, not weights.
        if not name.endswith(("resample_filter", "dataset_label_std")):
            tensor.copy_(_reference_values(name, tensor.shape))
    return G


def reference_renders(
    G: TriplaneGenerator, epigraf: TriplaneGenerator | None = None
) -> dict[str, np.ndarray]:
    """The renders the reference file stores: both branches' images and depths of the reference seed,
    and (given the EpiGRAF reference generator) its image and depth from its own cameras."""
    device = next(G.parameters()).device
    preset = PRESETS["ffhq"]
    ws = seed_ws(G, [REFERENCE_SEED], preset, REFERENCE_PSI)
    c = view_labels([REFERENCE_VIEW[0]], REFERENCE_VIEW[1], preset, device)
    renders = {}
    for branch in ("2d", "3d"):
        image, depth = render_branch(G, ws, c, branch)
        renders[f"image_{branch}"] = image[0].float().cpu().numpy()
        renders[f"depth_{branch}"] = depth[0].float().cpu().numpy()
    if epigraf is not None:
        preset = camera_preset_for(epigraf)
        ws = seed_ws(epigraf, [REFERENCE_SEED], preset, REFERENCE_PSI)
        c = view_labels([REFERENCE_VIEW[0]], REFERENCE_VIEW[1], preset, device)
        image, depth = render_branch(epigraf, ws, c, "3d")
        renders["epigraf_image"] = image[0].float().cpu().numpy()
        renders["epigraf_depth"] = depth[0].float().cpu().numpy()
    return renders


def write_reference(path: str | os.PathLike = REFERENCE_FILE) -> Path:
    """Render the reference generators on the CPU and store the result (run after a deliberate change)."""
    path = Path(path)
    renders = reference_renders(reference_generator(), reference_generator(EPIGRAF_REFERENCE_PRESET))
    np.savez_compressed(path, **renders)
    return path


def check_reference(
    device: str | torch.device = "cpu", reference: str | os.PathLike = REFERENCE_FILE
) -> Check:
    """Render the reference generator on ``device`` and compare with the stored renders."""
    device = torch.device(device)
    name = f"reference render on {device}"
    reference = Path(reference)
    if not reference.is_file():
        return Check(name, False, f"reference file {reference} is missing (a broken installation)")
    with np.load(reference) as stored:
        expected = {key: stored[key] for key in stored.files}
    renders = reference_renders(
        reference_generator().to(device), reference_generator(EPIGRAF_REFERENCE_PRESET).to(device)
    )
    tolerance = CPU_TOLERANCE if device.type == "cpu" else ACCELERATOR_TOLERANCE
    worst, problems = 0.0, []
    for key, want in expected.items():
        got = renders.get(key)
        if got is None or got.shape != want.shape:
            problems.append(f"{key} has shape {None if got is None else got.shape}, expected {want.shape}")
            continue
        if not np.isfinite(got).all():
            problems.append(f"{key} has non-finite values")
            continue
        if "image" in key and got.std() < MIN_IMAGE_STD:
            problems.append(f"{key} is constant (value {got.mean():.3f}): a black or blank render")
        difference = float(np.abs(got - want).max())
        worst = max(worst, difference)
        if difference > tolerance:
            problems.append(
                f"{key} differs from the reference by up to {difference:.2e} (tolerance {tolerance:.0e})"
            )
    if problems:
        return Check(name, False, "; ".join(problems))
    return Check(
        name, True, f"matches the reference (max |difference| {worst:.1e}, tolerance {tolerance:.0e})"
    )


# ----------------------------------------------------------------------------- environment


def package_versions() -> list[tuple[str, str]]:
    """(name, version) of Python, mimic3d and its dependencies; "missing" for absent ones."""
    from mimic3d import __version__

    rows = [
        ("python", platform.python_version()),
        ("mimic3d", __version__),
        ("platform", platform.platform()),
    ]
    for package in PACKAGES:
        try:
            rows.append((package, importlib.metadata.version(package)))
        except importlib.metadata.PackageNotFoundError:
            rows.append((package, "missing"))
    return rows


def ffmpeg_status() -> str:
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError) as err:
        return f"missing ({err}); videos cannot be written"


def device_report() -> list[tuple[str, str]]:
    rows = [("cpu threads", str(torch.get_num_threads()))]
    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        rows.append(("cuda", f"{names} (CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()})"))
    else:
        rows.append(("cuda", "not available" + ("" if torch.version.cuda else " (CPU-only torch build)")))
    rows.append(("mps", "available" if torch.backends.mps.is_available() else "not available"))
    return rows


def fast_paths() -> list[tuple[str, str]]:
    """What can speed things up here: torch.compile and its backends, TF32 / bf16, oneDNN."""
    rows = []
    dynamo = hasattr(torch, "compile") and torch._dynamo.is_dynamo_supported()
    compiler = next(
        (c for c in (os.environ.get("CXX"), "c++", "g++", "clang++") if c and shutil.which(c)), None
    )
    if not dynamo:
        rows.append(("torch.compile", f"not supported on Python {platform.python_version()}"))
    else:
        cpu = f"CPU backend needs a C++ compiler: {'found ' + compiler if compiler else 'none found'}"
        triton = importlib.util.find_spec("triton") is not None
        gpu = (
            "; GPU backend: triton " + ("installed" if triton else "missing")
            if torch.cuda.is_available()
            else ""
        )
        rows.append(("torch.compile", f"available ({cpu}{gpu})"))
    if torch.cuda.is_available():
        rows.append(
            (
                "tf32",
                f"matmul {torch.backends.cuda.matmul.allow_tf32}, cuDNN {torch.backends.cudnn.allow_tf32}",
            )
        )
        rows.append(("bf16", "supported" if torch.cuda.is_bf16_supported() else "not supported"))
    rows.append(("oneDNN (mkldnn)", "available" if torch.backends.mkldnn.is_available() else "not available"))
    return rows


def weight_file_status(
    specs: Sequence[WeightFile], folder: Path, verify: bool = False
) -> list[tuple[str, str]]:
    """(file name, status) for each file in ``folder``: present with its size, verified, or missing."""
    rows = []
    for spec in specs:
        path = folder / spec.filename
        if not path.is_file():
            rows.append((spec.filename, f"missing (from {spec.url})"))
            continue
        status = f"present, {path.stat().st_size / 2**20:.1f} MiB"
        if verify:
            try:
                verify_file(path, spec)
                status += ", checksum ok" if spec.sha256 else ", no published checksum"
            except ValueError as err:
                status += f", BAD: {err}"
        rows.append((spec.filename, status))
    return rows


def weight_files(verify: bool = False) -> dict[str, list[tuple[str, str]]]:
    """Status of the LPIPS and FID Inception weight files in the cache folder."""
    from mimic3d.losses.lpips import LPIPS_VGG_WEIGHTS, VGG16_WEIGHTS
    from mimic3d.metrics.detector import DETECTOR_FILES

    folder = cache_dir()
    return {
        f"LPIPS (imitation loss), in {folder}": weight_file_status(
            [VGG16_WEIGHTS, LPIPS_VGG_WEIGHTS], folder, verify
        ),
        f"FID Inception (any one is enough), in {folder}": weight_file_status(DETECTOR_FILES, folder, verify),
    }


def accelerators() -> list[str]:
    """Accelerator devices to run the reference check on besides the CPU."""
    devices = ["cuda"] if torch.cuda.is_available() else []
    return devices + (["mps"] if torch.backends.mps.is_available() else [])


def run_doctor(verify: bool = False, print_fn=print) -> int:
    """Print the full report; 0 when every check passes, 1 otherwise."""

    def section(title: str, rows: Sequence[tuple[str, str]]) -> None:
        print_fn(title)
        width = max((len(key) for key, _ in rows), default=0)
        for key, value in rows:
            print_fn(f"  {key.ljust(width)}  {value}")

    section("versions", package_versions() + [("ffmpeg", ffmpeg_status())])
    section("devices", device_report())
    section("fast paths", fast_paths())
    checks = [check_reference("cpu")] + [check_reference(device) for device in accelerators()]
    section(
        f"numerics ({REFERENCE_PRESET}, {EPIGRAF_REFERENCE_PRESET}, seed {REFERENCE_SEED})",
        [(check.name, ("ok: " if check.ok else "FAILED: ") + check.detail) for check in checks],
    )
    for title, rows in weight_files(verify).items():
        section(f"weights: {title}", rows)
    failed = [check for check in checks if not check.ok]
    print_fn("all checks passed" if not failed else f"{len(failed)} check(s) FAILED")
    return 1 if failed else 0
