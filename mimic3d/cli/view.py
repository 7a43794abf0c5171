"""``mimic3d view``: an interactive viewer of a generator in the browser (needs ``mimic3d[viewer]``)."""

from __future__ import annotations

import argparse
import time

from mimic3d.camera import PRESETS
from mimic3d.tools.parsing import parse_seeds
from mimic3d.tools.rendering import load_generator, resolve_device


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "view",
        description="Serve an interactive viewer of the generator on http://HOST:PORT: the camera follows "
        "the browser's orbit/pan/zoom (converted exactly to the EG3D camera); panels choose the seed, "
        "truncation, branch, what to show, resolution, camera trajectories, interpolation and style "
        "mixing; buttons save the frame (PNG), the camera (25-float label) and the mesh into --outdir. "
        "Needs viser: pip install 'mimic3d[viewer]'. Stop with Ctrl-C.",
    )
    parser.add_argument(
        "network",
        help="checkpoint: a mimic3d folder or .safetensors file, or an official EG3D/Mimic3D .pkl",
    )
    parser.add_argument("--port", type=int, default=8080, help="port (default: 8080; 0: any free port)")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: 127.0.0.1, this machine only; 0.0.0.0: every network, "
        "with no password; over SSH prefer `ssh -L 8080:127.0.0.1:8080`)",
    )
    parser.add_argument(
        "--device", default="auto", help="auto, cpu, cuda or mps (default: auto = the fastest available)"
    )
    parser.add_argument("--outdir", default="out", help="where the save buttons write (default: out)")
    parser.add_argument("--seed", type=int, default=0, help="initial seed (default: 0)")
    parser.add_argument("--trunc", type=float, default=0.7, help="initial truncation psi (default: 0.7)")
    parser.add_argument(
        "--camera",
        default=None,
        metavar="PRESET",
        help=f"camera preset {sorted(PRESETS)} (default: from the model's rendering settings)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from mimic3d.viewer.app import Viewer, import_viser, is_loopback

    import_viser()  # a missing extra fails before the model loads
    parse_seeds([args.seed], "--seed")
    if not 0.0 <= args.trunc <= 1.0:
        raise ValueError(f"--trunc: expected a truncation psi in [0, 1], got {args.trunc}")
    G = load_generator(args.network, resolve_device(args.device))
    settings = dataclasses.replace(Viewer.default_settings(G), seed=args.seed, truncation_psi=args.trunc)
    viewer = Viewer(G, args.host, args.port, args.outdir, settings, args.camera)
    if not is_loopback(args.host):
        print(
            f"mimic3d view: listening on {args.host}, not only this machine: anyone who can reach it on "
            f"port {viewer.server.get_port()} can use the viewer and its save buttons (no password)"
        )
    print(f"mimic3d view: serving {args.network} at {viewer.url} (Ctrl-C to stop)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("mimic3d view: stopping")
    finally:
        viewer.close()
    return 0
