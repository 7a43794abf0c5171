"""``mimic3d distill``: distil a tri-plane generator into a convolutional student, or evaluate one.

Examples::

    mimic3d distill teacher.pkl data.path=~/datasets/FFHQ_512.zip      # preset from the teacher
    mimic3d distill runs/00000-tiny-eg3d-heads tiny-distill-heads data.path=heads32.zip
    mimic3d distill --resume latest
    mimic3d distill --evaluate runs/00001-tiny-distill-heads --picture sweep.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mimic3d.cli.train import launch_run, list_presets, resolve_resume, resumed_config
from mimic3d.training.presets import config_to_yaml, load_config
from mimic3d.training.rundir import CONFIG_FILE


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "distill",
        description="NeRF-GAN distillation (Shahbazi et al. 2023): train a pose-conditioned convolutional "
        "student that renders like TEACHER without volume rendering. TEACHER is any checkpoint mimic3d "
        "reads (run folder, snapshot, .safetensors, official EG3D/Mimic3D/EpiGRAF pickle); PRESET is a "
        "distillation preset (default: the one that fits the teacher; see "
        "--list-presets) and KEY=VALUE pairs override config fields (data.path=..., "
        "distill.adversarial_kimg=500). The run's generator section is the teacher's. With --evaluate, "
        "measure a trained student against its teacher instead.",
        epilog="Exit status as mimic3d train: 0 finished, 130 interrupted (snapshot saved), 1 NaN/Inf loss, "
        "2 bad configuration.",
    )
    parser.add_argument("teacher", nargs="?", help="teacher checkpoint (not needed with --resume/--evaluate)")
    parser.add_argument("rest", nargs="*", metavar="[PRESET] KEY=VALUE", help="preset name, config overrides")
    parser.add_argument(
        "--outdir", default="training-runs", help="parent folder of runs (default: training-runs)"
    )
    parser.add_argument("--name", default=None, help="run name (default: the preset name)")
    parser.add_argument(
        "--resume", default=None, metavar="latest|PATH", help="continue a distillation run exactly"
    )
    parser.add_argument("--max-steps", type=int, default=None, help="stop (with a snapshot) after N steps")
    parser.add_argument("--list-presets", action="store_true", help="list the distillation presets and exit")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (log lines only)")
    evaluation = parser.add_argument_group("evaluation (--evaluate STUDENT)")
    evaluation.add_argument(
        "--evaluate", default=None, metavar="STUDENT", help="a student checkpoint or distillation run folder"
    )
    evaluation.add_argument(
        "--teacher",
        dest="eval_teacher",
        default=None,
        help="its teacher (default: the one it was distilled from)",
    )
    evaluation.add_argument(
        "--num-images", type=int, default=64, help="(z, c) pairs of the correspondence PSNR (default: 64)"
    )
    evaluation.add_argument(
        "--data", default=None, help="dataset whose cameras (and, with --metrics, images) are used"
    )
    evaluation.add_argument(
        "--metrics", default="", help="FID/KID protocols for both models, e.g. fid2k_full (needs --data)"
    )
    evaluation.add_argument("--picture", default=None, metavar="PNG", help="teacher/student sweep picture")
    evaluation.add_argument("--seeds", default="0-2", help="seeds of the picture (default: 0-2)")
    evaluation.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default: auto)")
    parser.set_defaults(func=run)


def _split(args: argparse.Namespace) -> tuple[str | None, list[str]]:
    """(preset or None, overrides) from the positional words after TEACHER."""
    words = list(args.rest)
    if words and "=" not in words[0]:
        return words[0], words[1:]
    return None, words


def run(args: argparse.Namespace) -> int:
    if args.list_presets:
        list_presets(distillation=True)
        return 0
    if args.evaluate is not None:
        return run_evaluation(args)
    if args.resume is not None:
        overrides = [args.teacher, *args.rest] if args.teacher else list(args.rest)
        snapshot, run_dir = resolve_resume(args, None)
        if snapshot is None:  # stopped before its first snapshot: start it over from its config
            config, _ = load_config(str(run_dir / CONFIG_FILE), overrides)
        else:
            config = resumed_config(snapshot, overrides)
        if not config.distilling:
            raise ValueError(f"--resume {args.resume}: not a distillation run (use mimic3d train --resume)")
        return _start(args, config, snapshot, run_dir, None)
    if args.teacher is None:
        raise ValueError("give a TEACHER checkpoint, --resume latest|PATH or --evaluate STUDENT")
    from mimic3d.training.distill import distill_config

    preset, overrides = _split(args)
    config, preset = distill_config(args.teacher, preset, overrides)
    return _start(args, config, None, None, args.name or Path(preset).stem)


def _start(args: argparse.Namespace, config, snapshot, run_dir, name) -> int:
    if args.print_config:
        print(config_to_yaml(config), end="")
        return 0
    return launch_run(args, config, snapshot, run_dir, name, command="distill")


def run_evaluation(args: argparse.Namespace) -> int:
    from mimic3d.tools.distillation import evaluation_report

    report = evaluation_report(
        args.evaluate,
        teacher=args.eval_teacher,
        num_images=args.num_images,
        data=args.data,
        metrics=[name.strip() for name in args.metrics.split(",") if name.strip()],
        picture=args.picture,
        seeds=args.seeds,
        device=args.device,
    )
    print(json.dumps(report, indent=2))
    return 0
