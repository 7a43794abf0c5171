"""``mimic3d mesh``: density volumes and marching-cubes meshes with vertex colours, one per seed."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mimic3d.cli.arguments import number, positive_int
from mimic3d.cli.model_options import add_model_arguments, mapping_options, open_model
from mimic3d.export import FORMATS, MESH_FORMATS, check_format, save_mesh, save_volume
from mimic3d.tools.latents import seed_ws
from mimic3d.tools.mesh import (
    EG3D_BORDER_FRACTION,
    EG3D_LEVEL,
    EPIGRAF_LEVEL,
    MESH_RESOLUTIONS,
    choose_level,
    default_level,
    seed_mesh,
    seed_volume,
)
from mimic3d.tools.parsing import parse_seeds
from mimic3d.tools.rendering import require_3d
from mimic3d.tools.viewpoints import camera_preset_for


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "mesh",
        description="Sample the generator's raw density on a grid over its box, close the border, run "
        "marching cubes and colour the vertices with the decoder's RGB. Writes outdir/seedNNNN.<format> "
        "for each format and prints vertex count, watertightness and bounding box.",
    )
    add_model_arguments(parser, seeds="0")
    parser.add_argument(
        "--resolution",
        type=int,
        choices=MESH_RESOLUTIONS,
        default=256,
        help=f"grid points per axis {MESH_RESOLUTIONS} (default: 256)",
    )
    parser.add_argument(
        "--format",
        default="ply",
        help=f"comma-separated formats among {', '.join(FORMATS)}; npy and mrc are the raw volume "
        "(default: ply)",
    )
    parser.add_argument(
        "--level",
        type=number(),
        default=None,
        help=f"raw-sigma iso level (default: {EG3D_LEVEL:g} as EG3D, {EPIGRAF_LEVEL:g} for EpiGRAF "
        "models as its extract_geometry.py; when that does not cut a seed's density, halfway between "
        "its median and maximum inside the border, and the command says so)",
    )
    parser.add_argument(
        "--border",
        type=number(0.0, 0.49),
        default=EG3D_BORDER_FRACTION,
        help=f"fraction of the box trimmed per side (default: {EG3D_BORDER_FRACTION:.3f} = 30/256, as EG3D)",
    )
    parser.add_argument("--no-colors", action="store_true", help="do not colour the vertices")
    parser.add_argument(
        "--chunk-points",
        type=positive_int,
        default=1 << 18,
        help="density samples per chunk (default: 262144)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    formats = [check_format(name.strip()) for name in args.format.split(",")]
    wants_mesh = any(name in MESH_FORMATS for name in formats)
    G = require_3d(open_model(args), args.network)
    preset = camera_preset_for(G, args.camera)
    box = G.config.rendering.box_warp
    for seed in parse_seeds(args.seeds):
        ws = seed_ws(G, [seed], preset, **mapping_options(args))
        volume, planes = seed_volume(G, ws, args.resolution, args.chunk_points, progress=True)
        stem = Path(args.outdir) / f"seed{seed:04d}"
        if wants_mesh:  # before anything is written: a level that misses the density writes nothing
            official = default_level(G)
            level, automatic = choose_level(volume, args.border, args.level, official)
            if automatic:
                method = "EpiGRAF" if G.config.decoder == "epigraf" else "EG3D"
                print(
                    f"seed {seed}: {method}'s level {official:g} does not cut the density (raw sigma "
                    f"{volume.min():.4g} .. {volume.max():.4g}); meshing at {level:.4g} instead, halfway "
                    "between its median and maximum inside the border (--level LEVEL to choose)",
                    file=sys.stderr,
                )
        for name in formats:
            if name not in MESH_FORMATS:
                path = save_volume(
                    volume, stem.with_suffix(f".{name}"), box / (args.resolution - 1), (-box / 2,) * 3
                )
                span = f"[{volume.min():.4g}, {volume.max():.4g}]"
                print(f"{path}: volume {args.resolution}^3, raw sigma in {span}")
        if wants_mesh:
            mesh, report = seed_mesh(G, planes, volume, level, args.border, colours=not args.no_colors)
            report.automatic_level = automatic
            for name in formats:
                if name in MESH_FORMATS:
                    print(f"{save_mesh(mesh, stem.with_suffix(f'.{name}'))}: {report.describe()}")
    return 0
