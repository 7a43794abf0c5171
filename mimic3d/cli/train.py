"""``mimic3d train``: train EG3D / Mimic3D from a preset with ``key=value`` overrides, or resume a run.

Examples::

    mimic3d train eg3d-ffhq512 data.path=~/datasets/FFHQ_512.zip
    mimic3d train mimic3d-ffhq512-stage2 data.path=... run.init_from=training-runs/00000-stage1
    mimic3d train --resume latest                      # newest run under --outdir
    torchrun --nproc_per_node 8 -m mimic3d train eg3d-ffhq512 data.path=...

KEY=VALUE overrides may come before or after any flag.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from mimic3d.checkpoints.atomic import write_text_atomic
from mimic3d.cli.arguments import path, positive_int
from mimic3d.training.config import TrainConfig
from mimic3d.training.distributed import broadcast_object, setup_processes, teardown_processes
from mimic3d.training.loop import Trainer, TrainingDiverged
from mimic3d.training.presets import (
    ABLATIONS,
    apply_overrides,
    build_config,
    config_to_yaml,
    load_config,
    preset_dict,
    preset_names,
)
from mimic3d.training.rundir import (
    CONFIG_FILE,
    has_no_snapshot_yet,
    latest_run_dir,
    new_run_dir,
    remove_unused_run_dir,
    restart_run_dir,
    run_name,
)
from mimic3d.training.snapshot import STATE_JSON, resolve_snapshot

EXIT_DIVERGED = 1
EXIT_INTERRUPTED = 130


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        description="Train a tri-plane GAN. PRESET is a shipped preset name (--list-presets) or a YAML "
        "file; KEY=VALUE pairs (before or after any flag) override any config field by its dotted path "
        "(loss.r1_gamma=5, data.path=ffhq.zip, schedule.gpc_prob=null). Runs go to OUTDIR/NNNNN-NAME/. "
        "Under torchrun the global batch run.batch_size is split over the processes.",
        epilog="Exit status: 0 finished, 130 stopped by Ctrl-C/SIGTERM (snapshot saved), "
        "1 a loss became NaN/Inf (last good snapshot kept), 2 bad configuration.",
    )
    parser.add_argument("preset", nargs="?", help="preset name or YAML file (not needed with --resume PATH)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    parser.add_argument(
        "--outdir", type=path, default="training-runs", help="parent folder of runs (default: training-runs)"
    )
    parser.add_argument("--name", default=None, help="run name (default: the preset name)")
    parser.add_argument(
        "--resume",
        type=path,
        default=None,
        metavar="latest|PATH",
        help="continue a run exactly, with its saved config plus any KEY=VALUE: 'latest' (newest run "
        "under --outdir, of PRESET/--name if given), a run folder, or a snapshot folder",
    )
    parser.add_argument(
        "--ablation", choices=sorted(ABLATIONS), default=None, help="Mimic3D ablation setting (paper Table 2)"
    )
    parser.add_argument(
        "--max-steps",
        type=positive_int,
        default=None,
        help="stop (with a snapshot) once the run has trained this many steps in total",
    )
    parser.add_argument("--list-presets", action="store_true", help="list the presets and exit")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (log lines only)")
    parser.add_argument(
        "--tf32",
        action="store_true",
        help="same as run.tf32=true: TF32 matmuls/convolutions on GPUs, faster but ~1e-3 off the official "
        "numerics (default: off, as EG3D)",
    )
    parser.set_defaults(func=run_train)


def list_presets(distillation: bool | None = None) -> None:
    """Print every preset with its description (only the distillation presets, or only the others)."""
    for name in preset_names():
        if distillation is not None and ("distill" in preset_dict(name)) != distillation:
            continue
        print(f"{name:30s} {preset_dict(name).get('description', '')}")


def _split_preset(args: argparse.Namespace) -> tuple[str | None, list[str]]:
    """(PRESET, overrides) from the positionals in any order: the one word without '=' is the preset
    (``data.path=x eg3d-ffhq512`` works too), every KEY=VALUE an override; ``--tf32`` adds
    ``run.tf32=true``."""
    words = [w for w in [args.preset, *args.overrides] if w is not None]
    presets = [w for w in words if "=" not in w]
    if len(presets) > 1:
        raise ValueError(f"preset: expected one PRESET and KEY=VALUE overrides, got {presets}")
    extra = ["run.tf32=true"] if getattr(args, "tf32", False) else []
    return (presets[0] if presets else None), [w for w in words if "=" in w] + extra


def resolve_resume(args: argparse.Namespace, preset: str | None) -> tuple[Path | None, Path]:
    """(snapshot folder, run folder) that ``--resume`` names; no snapshot folder (None) for a run
    that was stopped before its first snapshot (it is started over).

    With a run folder or snapshot, a PRESET (or --name) must be the one the run was started with:
    the run continues with its own saved config, so another preset name is a mistake to report.
    """
    wanted = args.name or (Path(preset).stem if preset is not None else None)
    path = latest_run_dir(args.outdir, wanted) if args.resume == "latest" else Path(args.resume)
    snapshot, run_dir = (None, path) if has_no_snapshot_yet(path) else resolve_snapshot(path)
    if args.resume != "latest" and wanted is not None and wanted != run_name(run_dir):
        raise ValueError(
            f"resume: {run_dir} is a run of {run_name(run_dir)!r}, not {wanted!r}; --resume PATH continues "
            "that run with its saved config, so leave out PRESET (and --name), or use --resume latest "
            f"to continue the newest {wanted!r} run under --outdir"
        )
    return snapshot, run_dir


def resumed_config(snapshot: Path, overrides: list[str]) -> TrainConfig:
    """The config a snapshot was trained with, plus overrides (e.g. a longer run.total_kimg, or
    data.path for a dataset that moved)."""
    import json

    record = json.loads((snapshot / STATE_JSON).read_text(encoding="utf-8"))
    data = apply_overrides(record["extra"]["config"], overrides)
    return build_config(data, overrides, f"config of {snapshot}")


def log_start_failure(run_dir: Path, err: BaseException) -> None:
    """Append an error that stopped a resumed run before training to its log.txt."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    with open(run_dir / "log.txt", "a", encoding="utf-8") as log:
        log.write(f"{stamp} could not resume: {type(err).__name__}: {err}\n")


def run_train(args: argparse.Namespace) -> int:
    if args.list_presets:
        list_presets()
        return 0
    preset, overrides = _split_preset(args)
    snapshot = run_dir = None
    if args.resume is not None:
        if args.ablation is not None:
            raise ValueError(
                "ablation: applies to a new run; a resumed run keeps the config it was started with"
            )
        snapshot, run_dir = resolve_resume(args, preset)
        if snapshot is None:
            config, _ = load_config(str(run_dir / CONFIG_FILE), overrides)
        else:
            config = resumed_config(snapshot, overrides)
    elif preset is None:
        raise ValueError("give a PRESET (see --list-presets) or --resume latest|PATH")
    else:
        config, _ = load_config(preset, overrides, args.ablation)
    if args.print_config:
        print(config_to_yaml(config), end="")
        return 0
    name = None if run_dir is not None else args.name or Path(preset).stem
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
    fresh = run_dir is None
    try:
        if fresh:
            run_dir = broadcast_object(new_run_dir(args.outdir, name) if process.is_main else None)
            if process.is_main:  # from its first instant a run folder says how to start it over
                write_text_atomic(run_dir / CONFIG_FILE, config_to_yaml(config))
        elif snapshot is None and process.is_main:
            print(f"resume: {run_dir} has no snapshot yet (stopped before its first one); starting it over")
            restart_run_dir(run_dir)
        try:
            trainer = Trainer(
                config, run_dir, resume=snapshot, progress_bar=not args.no_progress, process=process
            )
        except Exception as err:
            if process.is_main:
                if fresh:
                    remove_unused_run_dir(run_dir)
                else:
                    log_start_failure(run_dir, err)
            raise
        start_step = trainer.step
        try:
            result = trainer.run(max_steps=args.max_steps)
        except TrainingDiverged as err:
            print(f"mimic3d {command}: {err}", file=sys.stderr)
            return EXIT_DIVERGED
        if process.is_main:
            print(f"{result.status}: run folder {run_dir}, snapshot {result.snapshot}")
            if result.status == "interrupted":
                print(f"resume with: mimic3d {command} --resume {run_dir}")
            if result.step == start_step:
                print(
                    f"nothing to train: the run had already reached {result.status}; add "
                    "run.total_kimg=KIMG (or a larger --max-steps) to continue it"
                )
        return EXIT_INTERRUPTED if result.status == "interrupted" else 0
    finally:
        teardown_processes()
