"""``mimic3d export NETWORK --format onnx|torchscript``: deployable graphs of a generator.

Examples::

    mimic3d export student.safetensors --format onnx --dynamic-batch --out exported/student
    python examples/onnx_multiview.py exported/student.onnx --out strip.png   # numpy + onnxruntime only
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mimic3d.export.network import DEFAULT_OPSET, FORMATS, VARIANTS


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        description="Export NETWORK as OUT.onnx / OUT.pt, graph (z, c, truncation_psi) -> image (ws "
        "conditioned on the frontal camera, c the rendering camera), OUT-ws, graph (ws, c) -> image, and "
        "OUT-mapping, graph (z, c, truncation_psi) -> ws, plus OUT.json (sizes, camera preset, checks, "
        "timings). ONNX graphs are checked with onnxruntime against PyTorch on random inputs (max abs "
        "difference <= 1e-4, else exit 2). Distilled students export to both formats; tri-plane "
        "generators to TorchScript (ONNX lacks operators of the volume renderer: the error names them).",
    )
    parser.add_argument(
        "network", help="checkpoint: a mimic3d folder or .safetensors file, or an official EG3D/Mimic3D .pkl"
    )
    parser.add_argument(
        "--format", choices=FORMATS, default="onnx", help="onnx or torchscript (default: onnx)"
    )
    parser.add_argument(
        "--out", default=None, help="output path without extension (default: the network's name, here)"
    )
    parser.add_argument(
        "--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default: {DEFAULT_OPSET})"
    )
    parser.add_argument(
        "--dynamic-batch", action="store_true", help="graphs that take any batch size (default: --batch only)"
    )
    parser.add_argument("--batch", type=int, default=1, help="batch size traced (default: 1)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="z, ws or both: z,ws (default: z,ws)")
    parser.add_argument(
        "--branch", default="2d", help="branch of a tri-plane generator, 2d or 3d (default: 2d)"
    )
    parser.add_argument("--no-check", action="store_true", help="skip the comparison with PyTorch")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mimic3d.export.network import INPUT_NAMES, OUTPUT_NAMES, export_network
    from mimic3d.tools.rendering import load_generator

    variants = tuple(name.strip() for name in args.variants.split(",") if name.strip())
    G = load_generator(args.network)
    out = args.out or Path(args.network).expanduser().name.split(".")[0]
    report = export_network(
        G,
        out,
        format=args.format,
        variants=variants,
        branch=args.branch,
        opset=args.opset,
        dynamic_batch=args.dynamic_batch,
        batch=args.batch,
        check=not args.no_check,
    )
    for graph in report.graphs:
        inputs, output = ", ".join(INPUT_NAMES[graph.variant]), OUTPUT_NAMES[graph.variant]
        line = f"{graph.path}: ({inputs}) -> {output}, batch {graph.batch}"
        line += " or any" if args.dynamic_batch else ""
        if graph.max_abs_diff is not None:
            runtime = "onnxruntime" if report.format == "onnx" else "TorchScript"
            line += (
                f"; max |{runtime} - PyTorch| = {graph.max_abs_diff:.2g}; "
                f"{graph.runtime_seconds * 1000:.1f} ms vs PyTorch "
                f"{graph.torch_seconds * 1000:.1f} ms per call"
            )
        print(line)
    print(report.metadata_path)
    return 0
