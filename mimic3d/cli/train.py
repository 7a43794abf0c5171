"""``mimic3d train``: train EG3D / Mimic3D from a preset with ``key=value`` overrides, or resume a run.

Examples::

    mimic3d train eg3d-ffhq512 data.path=~/datasets/FFHQ_512.zip
    mimic3d train mimic3d-ffhq512-stage2 data.path=... run.init_from=training-runs/00000-stage1
    mimic3d train --resume latest                      # newest run under --outdir
    torchrun --nproc_per_node 8 -m mimic3d.cli.main train eg3d-ffhq512 data.path=...
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mimic3d.training.config import TrainConfig
from mimic3d.training.distributed import broadcast_object, setup_processes, teardown_processes
from mimic3d.training.loop import Trainer, TrainingDiverged
from mimic3d.training.presets import (
    ABLATIONS,
    apply_overrides,
    config_to_yaml,
    load_config,
    preset_dict,
    preset_names,
)
from mimic3d.training.rundir import latest_run_dir, new_run_dir, remove_unused_run_dir
from mimic3d.training.snapshot import STATE_JSON, resolve_snapshot

EXIT_DIVERGED = 1
EXIT_INTERRUPTED = 130


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        description="Train a tri-plane GAN. PRESET is a shipped preset name (--list-presets) or a YAML "
        "file; KEY=VALUE pairs override any config field by its dotted path (loss.r1_gamma=5, "
        "data.path=ffhq.zip, schedule.gpc_prob=null). Runs go to OUTDIR/NNNNN-NAME/. Under torchrun the "
        "global batch run.batch_size is split over the processes.",
        epilog="Exit status: 0 finished, 130 stopped by Ctrl-C/SIGTERM (snapshot saved), "
        "1 a loss became NaN/Inf (last good snapshot kept), 2 bad configuration.",
    )
    parser.add_argument("preset", nargs="?", help="preset name or YAML file (not needed with --resume PATH)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    parser.add_argument(
        "--outdir", default="training-runs", help="parent folder of runs (default: training-runs)"
    )
    parser.add_argument("--name", default=None, help="run name (default: the preset name)")
    parser.add_argument(
        "--resume",
        default=None,
        metavar="latest|PATH",
        help="continue a run exactly: 'latest' (newest run under --outdir, of PRESET/--name if given), "
        "a run folder, or a snapshot folder",
    )
    parser.add_argument(
        "--ablation", choices=sorted(ABLATIONS), default=None, help="Mimic3D ablation setting (paper Table 2)"
    )
    parser.add_argument(
        "--max-steps", type=int, default=None, help="stop (with a snapshot) after this many steps"
    )
    parser.add_argument("--list-presets", action="store_true", help="list the presets and exit")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (log lines only)")
    parser.set_defaults(func=run_train)


def list_presets() -> None:
    for name in preset_names():
        print(f"{name:30s} {preset_dict(name).get('description', '')}")


def _split_preset(args: argparse.Namespace) -> tuple[str | None, list[str]]:
    """A KEY=VALUE given where the preset goes (``--resume X key=value``) is an override."""
    if args.preset is not None and "=" in args.preset:
        return None, [args.preset, *args.overrides]
    return args.preset, list(args.overrides)


def resolve_resume(args: argparse.Namespace, preset: str | None) -> tuple[Path, Path]:
    """(snapshot folder, run folder) that ``--resume`` names."""
    if args.resume == "latest":
        run_dir = latest_run_dir(args.outdir, args.name or preset)
        return resolve_snapshot(run_dir)
    return resolve_snapshot(args.resume)


def resumed_config(snapshot: Path, overrides: list[str]) -> TrainConfig:
    """The config a snapshot was trained with, plus overrides (e.g. a longer run.total_kimg)."""
    import json

    record = json.loads((snapshot / STATE_JSON).read_text(encoding="utf-8"))
    data = apply_overrides(record["extra"]["config"], overrides)
    return TrainConfig.from_dict(data, where=f"config of {snapshot}")


def run_train(args: argparse.Namespace) -> int:
    if args.list_presets:
        list_presets()
        return 0
    preset, overrides = _split_preset(args)
    snapshot = run_dir = None
    if args.resume is not None:
        snapshot, run_dir = resolve_resume(args, preset)
        config = resumed_config(snapshot, overrides)
    elif preset is None:
        raise ValueError("give a PRESET (see --list-presets) or --resume latest|PATH")
    else:
        config, _ = load_config(preset, overrides, args.ablation)
    if args.print_config:
        print(config_to_yaml(config), end="")
        return 0
    name = None if snapshot is not None else args.name or Path(preset).stem
    return launch_run(args, config, snapshot, run_dir, name)


def launch_run(
    args: argparse.Namespace,
    config: TrainConfig,
    snapshot: Path | None,
    run_dir: Path | None,
    name: str | None,
    command: str = "train",
) -> int:
    """Train ``config`` in a new run folder ``name`` under ``args.outdir`` or, with ``snapshot``, continue
    the run in ``run_dir``; the exit status of ``mimic3d <command>`` (see the epilog)."""
    process = setup_processes(config.run.device)
    try:
        if snapshot is None:
            run_dir = broadcast_object(new_run_dir(args.outdir, name) if process.is_main else None)
        try:
            trainer = Trainer(
                config, run_dir, resume=snapshot, progress_bar=not args.no_progress, process=process
            )
        except Exception:
            if snapshot is None and process.is_main:
                remove_unused_run_dir(run_dir)
            raise
        try:
            result = trainer.run(max_steps=args.max_steps)
        except TrainingDiverged as err:
            print(f"mimic3d {command}: {err}", file=sys.stderr)
            return EXIT_DIVERGED
        if process.is_main:
            print(f"{result.status}: run folder {run_dir}, snapshot {result.snapshot}")
            if result.status == "interrupted":
                print(f"resume with: mimic3d {command} --resume {run_dir}")
        return EXIT_INTERRUPTED if result.status == "interrupted" else 0
    finally:
        teardown_processes()
