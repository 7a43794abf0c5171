"""Exporting generators for deployment: ONNX (run with onnxruntime, no PyTorch) and TorchScript.

Three graphs per model, rendering deterministically (constant noise, no ray jitter):

- ``z``: (z [N, z_dim], c [N, 25], truncation_psi [1]) -> image [N, 3, R, R] in [-1, 1], the view from
  camera c of subject z, whose ws are conditioned on the camera preset's frontal camera (as
  ``mimic3d generate`` / ``video`` do: a subject keeps its identity over views); truncation pulls
  every w toward the mapping network's w_avg (no cutoff);
- ``ws``: (ws [N, num_ws, w_dim], c [N, 25]) -> image, for latents computed elsewhere (inversion,
  interpolation, style mixing, another conditioning camera);
- ``mapping``: (z, conditioning camera c, truncation_psi) -> ws [N, num_ws, w_dim], the ws graph's input.

Modulated convolutions run unfused (per-sample scaling around one shared convolution), which is
the same arithmetic as the fused grouped convolution and does not bake the batch size into the
graph, so ``dynamic_batch`` graphs take any N. EG3D's super-resolution enlarges its input with
antialiased bilinear resizing; when enlarging, the antialiasing filter is the plain bilinear one
(they differ by float rounding, 5e-7), and ONNX has no antialiased resize before opset 18 nor an
exporter for PyTorch's, so the exported copy resizes without it.

``export_network`` checks every ONNX graph with onnxruntime against PyTorch on fresh random inputs
(max abs difference <= ``CHECK_TOLERANCE``) and times both. Tri-plane generators (EG3D, Mimic3D,
EpiGRAF) export to TorchScript; to ONNX, their volume renderer needs operators ONNX lacks (the
error names the first one, see ``OnnxExportError``).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from mimic3d.camera import PRESETS, sample_labels
from mimic3d.checkpoints.atomic import atomic_write, write_text_atomic
from mimic3d.models.generator import TriplaneGenerator
from mimic3d.models.student import StudentGenerator
from mimic3d.tools.viewpoints import camera_preset_for

FORMATS = ("onnx", "torchscript")
VARIANTS = ("z", "ws", "mapping")
DEFAULT_OPSET = 17
MIN_OPSET = 11
CHECK_TOLERANCE = 1e-4  # max abs difference of [-1, 1] images, onnxruntime vs PyTorch (float32)
TIMING_REPEATS = 5
# Measured with torch 2.13's ONNX exporter (opset 17): patching each in turn, these three are all
# that stop the volume renderer of EG3D / Mimic3D / EpiGRAF (both branches) from exporting.
RENDERER_BLOCKERS = (
    "the volume renderer needs aten::cumprod (transmittance), aten::searchsorted (importance "
    "sampling) and a stable aten::sort (merging coarse and fine samples), which the ONNX exporter "
    "lacks; --format torchscript exports it"
)


class OnnxExportError(ValueError):
    """The ONNX exporter cannot convert an operator of the model (the message names it)."""


def mapping_network(G: nn.Module) -> nn.Module:
    """The mapping network whose ``w_avg`` truncation pulls toward (the teacher's, for a student)."""
    if isinstance(G, StudentGenerator):
        return G.teacher_mapping
    return G.backbone.mapping


def export_copy(G: nn.Module) -> nn.Module:
    """An eval-mode copy of ``G`` for export: no gradients, and EG3D's super-resolution resizing
    without antialiasing where it only enlarges (see the module docstring)."""
    G = copy.deepcopy(G).eval().requires_grad_(False)
    sr = G.superresolution
    if sr is not None and G.config.neural_rendering_resolution <= sr.input_resolution:
        sr.antialias = False
    return G


def truncated_ws(G: nn.Module, z: Tensor, c: Tensor, truncation_psi: Tensor) -> Tensor:
    """ws of z [N, z_dim] conditioned on c [N, 25], truncated by psi [1] (the mapping network's
    truncation, with psi a graph input instead of a Python number)."""
    ws = G.mapping(z, c)
    return mapping_network(G).w_avg.lerp(ws, truncation_psi.reshape(1, 1, 1))


class LatentGraph(nn.Module):
    """(z [N, z_dim], c [N, 25], truncation_psi [1]) -> image [N, 3, R, R]: the view from camera c of the
    subject z conditioned on ``conditioning`` [25] (the camera preset's frontal camera, as the tools do,
    so that a subject keeps its identity over views)."""

    def __init__(self, G: nn.Module, conditioning: Tensor, branch: str = "2d") -> None:
        super().__init__()
        self.G, self.branch = G, branch
        self.register_buffer("conditioning", conditioning.reshape(1, -1).float())

    def forward(self, z: Tensor, c: Tensor, truncation_psi: Tensor) -> Tensor:
        ws = truncated_ws(self.G, z, self.conditioning.expand(z.shape[0], -1), truncation_psi)
        out = self.G.synthesis(
            ws, c, branch=self.branch, noise_mode="const", perturb=False, fused_modconv=False
        )
        return out["image"]


class WsGraph(nn.Module):
    """(ws [N, num_ws, w_dim], c [N, 25]) -> image [N, 3, R, R]."""

    def __init__(self, G: nn.Module, branch: str = "2d") -> None:
        super().__init__()
        self.G, self.branch = G, branch

    def forward(self, ws: Tensor, c: Tensor) -> Tensor:
        out = self.G.synthesis(
            ws, c, branch=self.branch, noise_mode="const", perturb=False, fused_modconv=False
        )
        return out["image"]


class MappingGraph(nn.Module):
    """(z [N, z_dim], c [N, 25] conditioning camera, truncation_psi [1]) -> ws [N, num_ws, w_dim]."""

    def __init__(self, G: nn.Module) -> None:
        super().__init__()
        self.G = G

    def forward(self, z: Tensor, c: Tensor, truncation_psi: Tensor) -> Tensor:
        return truncated_ws(self.G, z, c, truncation_psi)


def example_inputs(G: nn.Module, variant: str, batch: int, seed: int) -> tuple[Tensor, ...]:
    """Random inputs of a graph: z ~ N(0, I) or ws of such z, FFHQ-like cameras, psi in [0.5, 1]."""
    generator = torch.Generator().manual_seed(seed)
    device = next(G.parameters()).device
    z = torch.randn([batch, G.z_dim], generator=generator).to(device)
    c = sample_labels(PRESETS["ffhq"], batch, generator=generator).to(device)
    if variant != "ws":
        psi = (0.5 + 0.5 * torch.rand([1], generator=generator)).to(device)
        return z, c, psi
    with torch.no_grad():
        return G.mapping(z, c), c


INPUT_NAMES = {"z": ["z", "c", "truncation_psi"], "ws": ["ws", "c"], "mapping": ["z", "c", "truncation_psi"]}
OUTPUT_NAMES = {"z": "image", "ws": "image", "mapping": "ws"}
SUFFIXES = {"z": "", "ws": "-ws", "mapping": "-mapping"}


@dataclass
class GraphReport:
    """One exported graph: its file, the check against PyTorch and the timings (seconds per call)."""

    variant: str
    path: str
    batch: int
    max_abs_diff: float | None = None
    torch_seconds: float | None = None
    runtime_seconds: float | None = None


@dataclass
class ExportReport:
    """What ``export_network`` wrote, with a metadata JSON for deployment (``metadata_path``)."""

    format: str
    graphs: list[GraphReport] = field(default_factory=list)
    metadata_path: str = ""


def _median_seconds(fn: Callable[[], object], repeats: int = TIMING_REPEATS) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _graph(G: nn.Module, variant: str, branch: str, conditioning: Tensor) -> nn.Module:
    if variant == "z":
        return LatentGraph(G, conditioning, branch)
    return WsGraph(G, branch) if variant == "ws" else MappingGraph(G)


def _check_model(G: nn.Module, branch: str) -> None:
    if not isinstance(G, TriplaneGenerator | StudentGenerator):
        raise ValueError(f"export: expected a generator, got {type(G).__name__}")
    if isinstance(G, TriplaneGenerator) and G.config.class_dim:
        raise ValueError("export: class-conditional models (labels) are not exported")
    if isinstance(G, TriplaneGenerator) and G.background is not None:
        raise ValueError("export: models with a sphere background are not exported")
    if branch not in getattr(G, "branches", ("2d", "3d")):
        raise ValueError(f"branch: {branch!r} is not a branch of this model")


@contextlib.contextmanager
def _quiet_output() -> Iterator[None]:
    """Send what the block writes to the process's stdout and stderr (C++ included) nowhere."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(os.devnull, "w") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def export_onnx(
    graph: nn.Module, inputs: tuple[Tensor, ...], path: Path, variant: str, opset: int, dynamic_batch: bool
) -> None:
    """Trace ``graph`` on ``inputs`` into an ONNX file; ``OnnxExportError`` names an unsupported operator."""
    names, output = INPUT_NAMES[variant], OUTPUT_NAMES[variant]
    axes = (
        {name: {0: "batch"} for name in [*names, output] if name != "truncation_psi"}
        if dynamic_batch
        else None
    )
    buffer = io.BytesIO()
    try:
        # The exporter prints the whole graph on failure; the error below names the operator.
        with warnings.catch_warnings(), torch.no_grad(), _quiet_output():
            warnings.simplefilter("ignore")  # tracer notes on Python-side shape checks
            torch.onnx.export(
                graph,
                inputs,
                buffer,
                dynamo=False,
                opset_version=opset,
                input_names=names,
                output_names=[output],
                dynamic_axes=axes,
            )
    except Exception as err:  # the exporter's errors share no base class
        if "UnsupportedOperator" in type(err).__name__ or "not supported" in str(err):
            first_line = str(err).strip().splitlines()[0]
            raise OnnxExportError(f"export: ONNX cannot express this model: {first_line}") from err
        raise
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(buffer.getvalue()))


def check_onnx(
    path: Path, graph: nn.Module, inputs: tuple[Tensor, ...], variant: str
) -> tuple[float, float, float]:
    """(max abs difference, PyTorch seconds, onnxruntime seconds) of the ONNX file on ``inputs``."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {name: x.detach().cpu().numpy() for name, x in zip(INPUT_NAMES[variant], inputs)}
    with torch.no_grad():
        expected = graph(*inputs).cpu().numpy()
        torch_seconds = _median_seconds(lambda: graph(*inputs))
    output = [OUTPUT_NAMES[variant]]
    actual = session.run(output, feeds)[0]
    runtime_seconds = _median_seconds(lambda: session.run(output, feeds))
    return float(np.abs(actual - expected).max()), torch_seconds, runtime_seconds


def export_torchscript(graph: nn.Module, inputs: tuple[Tensor, ...], path: Path) -> torch.jit.ScriptModule:
    """Trace ``graph`` on ``inputs`` into a TorchScript file (``torch.jit.load`` reads it)."""
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(graph, inputs, check_trace=False)
    atomic_write(path, lambda tmp: torch.jit.save(traced, str(tmp)))
    return traced


def export_metadata(G: nn.Module, branch: str, reports: list[GraphReport]) -> dict:
    """What a deployment needs beside the graphs: sizes, the camera preset (the z graph conditions on
    its frontal camera) and the graphs' inputs."""
    preset = camera_preset_for(G)
    return {
        "format": "mimic3d-export",
        "model": type(G).__name__,
        "branch": branch,
        "z_dim": G.z_dim,
        "w_dim": G.w_dim,
        "num_ws": G.num_ws,
        "c_dim": G.c_dim,
        "img_resolution": G.img_resolution,
        "camera": {
            "name": preset.name,
            "focal": preset.focal,
            "radius": preset.radius,
            "pivot": list(preset.pivot),
        },
        "conditioning": preset.frontal_label().tolist(),
        "inputs": {r.variant: INPUT_NAMES[r.variant] for r in reports},
        "outputs": {r.variant: OUTPUT_NAMES[r.variant] for r in reports},
        "graphs": [asdict(r) for r in reports],
    }


def export_network(
    G: nn.Module,
    out: str | os.PathLike,
    format: str = "onnx",
    variants: tuple[str, ...] = VARIANTS,
    branch: str = "2d",
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = False,
    batch: int = 1,
    check: bool = True,
    seed: int = 0,
) -> ExportReport:
    """Export ``G`` as ``<out>.<ext>`` (variant z), ``<out>-ws.<ext>`` and ``<out>-mapping.<ext>``,
    plus ``<out>.json`` metadata; ONNX graphs are checked with onnxruntime unless ``check`` is False
    (ValueError when a difference exceeds ``CHECK_TOLERANCE``). ``batch``: the traced batch size
    (the only one a graph takes without ``dynamic_batch``)."""
    if format not in FORMATS:
        raise ValueError(f"format: expected one of {FORMATS}, got {format!r}")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        raise ValueError(f"variants: expected some of {VARIANTS}, got {list(variants)}")
    if format == "onnx" and not MIN_OPSET <= opset:
        raise ValueError(f"opset: expected an ONNX opset >= {MIN_OPSET}, got {opset}")
    if batch < 1:
        raise ValueError(f"batch: expected a positive int, got {batch}")
    _check_model(G, branch)
    if format == "onnx" and check:
        try:
            import onnxruntime  # noqa: F401
        except ImportError as err:
            raise ValueError(
                "export: the ONNX check needs onnxruntime (pip install mimic3d[export])"
            ) from err
    model = export_copy(G)
    preset = camera_preset_for(G)
    conditioning = preset.frontal_label().to(next(model.parameters()).device)
    stem = Path(out)
    stem.parent.mkdir(parents=True, exist_ok=True)
    extension = ".onnx" if format == "onnx" else ".pt"
    report = ExportReport(format)
    for variant in variants:
        graph = _graph(model, variant, branch, conditioning)
        inputs = example_inputs(model, variant, batch, seed)
        path = stem.with_name(stem.name + SUFFIXES[variant] + extension)
        entry = GraphReport(variant, str(path), batch)
        if format == "onnx":
            try:
                export_onnx(graph, inputs, path, variant, opset, dynamic_batch)
            except OnnxExportError as err:
                if isinstance(G, TriplaneGenerator):
                    raise OnnxExportError(f"{err} ({RENDERER_BLOCKERS})") from err
                raise
            if check:
                fresh = example_inputs(model, variant, batch + (1 if dynamic_batch else 0), seed + 1)
                entry.max_abs_diff, entry.torch_seconds, entry.runtime_seconds = check_onnx(
                    path, graph, fresh, variant
                )
                if not entry.max_abs_diff <= CHECK_TOLERANCE:
                    raise ValueError(
                        f"export: {path} differs from PyTorch by {entry.max_abs_diff:.3g} "
                        f"(> {CHECK_TOLERANCE:g}) on random inputs"
                    )
        else:
            traced = export_torchscript(graph, inputs, path)
            if check:
                fresh = example_inputs(model, variant, batch, seed + 1)
                with torch.no_grad():
                    expected, actual = graph(*fresh), traced(*fresh)
                entry.max_abs_diff = float((actual - expected).abs().max())
                entry.torch_seconds = _median_seconds(lambda g=graph, x=fresh: g(*x))
                entry.runtime_seconds = _median_seconds(lambda t=traced, x=fresh: t(*x))
        report.graphs.append(entry)
    metadata_path = stem.with_name(stem.name + ".json")
    write_text_atomic(metadata_path, json.dumps(export_metadata(G, branch, report.graphs), indent=2) + "\n")
    report.metadata_path = str(metadata_path)
    return report
