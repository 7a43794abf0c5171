"""``mimic3d demo``: the shipped model's pictures first, then a tiny Mimic3D trained on the CPU.

Step 1, in seconds: the built-in ``heads64`` model (a Mimic3D trained on the procedural heads,
docs/models.md) writes multi-view grids of both branches, an orbit video of the 3D branch at 128^2,
a mesh, an EPI image and its reprojection consistency to ``--outdir``/heads64, with the metrics
recorded when it was trained. Step 2 (skipped with ``--no-training``): render a small procedural
``heads`` (or ``cars``) dataset (``mimic3d dataset synth``), train the ``tiny-mimic3d-heads`` preset
(both branches from scratch; ``--preset`` picks the cars, EG3D or EpiGRAF variants) for a fixed time
budget, then write the same report for it (the trained branches) plus sample grids with the
dataset's cameras, SWD and the run's TensorBoard logs. Everything lands in ``--outdir``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from mimic3d.checkpoints.builtin import builtin_file
from mimic3d.checkpoints.portable import load_checkpoint
from mimic3d.checkpoints.pretrained import resolve_weight_files
from mimic3d.cli.arguments import integer, path, positive_int, positive_number
from mimic3d.data.synth import synth_dataset
from mimic3d.losses.lpips import LPIPS_VGG_WEIGHTS, VGG16_WEIGHTS
from mimic3d.runtime import busy_machine_threads
from mimic3d.training.loop import Trainer
from mimic3d.training.presets import load_config
from mimic3d.training.report import Report, write_metrics_file, write_model_report, write_report
from mimic3d.training.rundir import new_run_dir

DEMO_PRESETS = (
    "tiny-mimic3d-heads",
    "tiny-mimic3d-cars",
    "tiny-eg3d-heads",
    "tiny-epigraf-heads",
    "tiny-epigraf-cars",
)
RESOLUTION = 32
DEMO_MINUTES = 7.0  # the training budget README.md, docs/training.md and `mimic3d --help` quote
MIN_IMAGES = 8
SHIPPED_MODEL = "heads64"
SHIPPED_MESH_RESOLUTION = 128
# Step 1 must take seconds on one CPU core: its orbit video shows one seed with the samples per ray
# the model was trained with (a 128^2 3D-branch frame costs ~0.35 s on one core, twice that at 2x).
SHIPPED_VIDEO_SEEDS = (0,)
SHIPPED_VIDEO_DEPTH_MULTIPLIER = 1.0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        description=f"Show the shipped {SHIPPED_MODEL} model first (multi-view grids of both branches, "
        "3D-branch orbit video at 128^2, mesh, EPI image, metrics; seconds), then render a synthetic heads "
        "dataset, train a tiny Mimic3D end to end (or the --preset variant: cars, EG3D, EpiGRAF) for "
        "--minutes, and write the same report for it (plus samples with the dataset's cameras, SWD and "
        "TensorBoard logs). Runs offline; LPIPS uses its official weights when present, else random ones.",
    )
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="training config overrides")
    parser.add_argument(
        "--outdir", type=path, default="demo-output", help="output folder (default: demo-output)"
    )
    parser.add_argument(
        "--minutes",
        type=positive_number,
        default=DEMO_MINUTES,
        help=f"training time budget (default: {DEMO_MINUTES:g})",
    )
    parser.add_argument(
        "--images", type=integer(MIN_IMAGES), default=800, help="synthetic images to render (default: 800)"
    )
    parser.add_argument(
        "--preset", choices=DEMO_PRESETS, default=DEMO_PRESETS[0], help="tiny preset to train"
    )
    parser.add_argument(
        "--weights-dir", type=path, default=None, help="folder with the LPIPS weight files (optional)"
    )
    parser.add_argument(
        "--video-frames", type=positive_int, default=36, help="frames of the report video (default: 36)"
    )
    parser.add_argument(
        "--metric-images", type=positive_int, default=256, help="images per SWD estimate (default: 256)"
    )
    parser.add_argument("--seed", type=integer(0), default=0, help="random seed of data and training")
    parser.add_argument(
        "--no-training",
        action="store_true",
        help=f"only show the shipped {SHIPPED_MODEL} model (step 1), no dataset and no training",
    )
    parser.add_argument(
        "--no-shipped-model",
        action="store_true",
        help=f"skip step 1 (the shipped {SHIPPED_MODEL} model): only train and report",
    )
    parser.set_defaults(func=run_demo)


def _say(message: str) -> None:
    print(f"[demo] {message}", file=sys.stderr, flush=True)


def choose_lpips(weights_dir: str | None) -> str:
    """ "pretrained" when both LPIPS files are already on disk (no download), else "untrained"."""
    try:
        resolve_weight_files([VGG16_WEIGHTS, LPIPS_VGG_WEIGHTS], weights_dir, download=False)
        return "pretrained"
    except (FileNotFoundError, ValueError):
        return "untrained"


def make_dataset(outdir: Path, kind: str, count: int, seed: int) -> Path:
    path = outdir / f"{kind}{RESOLUTION}-{count}-seed{seed}.zip"
    if path.is_file():
        _say(f"dataset {path} exists; reusing it")
        return path
    _say(f"rendering {count} synthetic {kind} at {RESOLUTION}x{RESOLUTION} -> {path}")
    stats = synth_dataset(
        str(path), kind, count, RESOLUTION, seed=seed, preview=str(outdir / f"{kind}_preview.png")
    )
    _say(f"dataset done in {stats.seconds:.0f} s ({stats.images_per_second:.1f} images/s)")
    return path


def show_shipped_model(outdir: Path, video_frames: int) -> Report:
    """Step 1: the built-in model's report in ``outdir / SHIPPED_MODEL``, with its recorded metrics."""
    networks, metadata = load_checkpoint(builtin_file(SHIPPED_MODEL), names=["G_ema"])
    report = write_model_report(
        networks["G_ema"],
        outdir / SHIPPED_MODEL,
        video_frames,
        SHIPPED_MESH_RESOLUTION,
        video_seeds=SHIPPED_VIDEO_SEEDS,
        video_depth_multiplier=SHIPPED_VIDEO_DEPTH_MULTIPLIER,
    )
    recorded = metadata.get("metrics", {})
    report.metrics.update({f"recorded/{key}": float(value) for key, value in recorded.items()})
    report.notes.append(
        f"{SHIPPED_MODEL}: {metadata.get('summary', 'the shipped model')}; 'recorded/' metrics were measured "
        "when it was shipped (docs/models.md), the others just now"
    )
    write_metrics_file(report)  # with the recorded metrics
    return report


def run_demo(args: argparse.Namespace) -> int:
    if args.no_training and args.no_shipped_model:
        raise ValueError("--no-training and --no-shipped-model: nothing left to do; give at most one")
    start = time.monotonic()
    threads = busy_machine_threads()
    if threads is not None:
        # The demo's pictures and its short run need no bit-exact thread count; speed matters.
        _say(
            f"other work holds cores: using the {threads} idle one(s) instead of torch's "
            f"{torch.get_num_threads()} threads (OMP_NUM_THREADS overrides)"
        )
        torch.set_num_threads(threads)
    outdir = Path(args.outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    if not args.no_shipped_model:
        _say(f"step 1: the shipped {SHIPPED_MODEL} model (docs/models.md) -> {outdir / SHIPPED_MODEL}")
        shipped = show_shipped_model(outdir, args.video_frames)
        seconds = time.monotonic() - start
        summary = _summary(shipped, f"the shipped {SHIPPED_MODEL} model, shown in {seconds:.0f} s")
        (shipped.folder / "README.txt").write_text(summary, encoding="utf-8")
        print(summary, flush=True)
    if args.no_training:
        return 0
    _say("step 2: a tiny Mimic3D trained here, from scratch")
    kind = "cars" if "cars" in args.preset else "heads"
    data = make_dataset(outdir, kind, args.images, args.seed)

    lpips = choose_lpips(args.weights_dir)
    overrides = [f"data.path={data}", f"loss.lpips={lpips}", f"run.seed={args.seed}"]
    if args.weights_dir is not None:
        overrides.append(f"loss.lpips_weights_dir={args.weights_dir}")
    config, _ = load_config(args.preset, [*overrides, *args.overrides])
    if lpips == "untrained" and config.loss.imitation_weight > 0:
        _say("!!! LPIPS weights not found: training with loss.lpips=untrained (a random-feature distance).")
        _say("!!! The imitation loss is then NOT the paper's perceptual loss; see docs/losses.md.")
    run_dir = new_run_dir(outdir / "runs", args.preset)
    threads = torch.get_num_threads()
    _say(f"training {args.preset} for {args.minutes:g} min on {threads} CPU thread(s) in {run_dir}")
    trainer = Trainer(config, run_dir, progress_bar=True)
    result = trainer.run(deadline=time.monotonic() + args.minutes * 60)
    _say(f"training {result.status} after {result.step} steps ({result.cur_nimg / 1000:.2f} kimg)")

    _say("writing the report (samples, video, mesh, metrics)")
    report = write_report(
        trainer.nets.G_ema,
        trainer.dataset,
        outdir / "report",
        args.video_frames,
        args.metric_images,
        # EpiGRAF has only the direct render; EG3D's report also shows its untrained full-resolution one.
        trainer.branches if config.patch_wise else ("2d", "3d"),
    )
    report.files["snapshot"] = result.snapshot
    report.files["tensorboard logs"] = run_dir
    minutes = (time.monotonic() - start) / 60
    summary = _summary(report, f"mimic3d demo finished in {minutes:.1f} min (LPIPS: {lpips})")
    summary += f"\n  tensorboard --logdir {run_dir}\n"
    (report.folder / "README.txt").write_text(summary, encoding="utf-8")
    print(summary)
    return 0


def _summary(report: Report, title: str) -> str:
    lines = [title, ""]
    lines += [f"  {name:18s} {path}" for name, path in report.files.items()]
    lines += [f"  note: {note}" for note in report.notes]
    lines += ["", "metrics (SWD x1e3: lower is better; reprojection PSNR: higher = more 3D-consistent):"]
    lines += [f"  {name:40s} {value:.4f}" for name, value in sorted(report.metrics.items())]
    return "\n".join(lines) + "\n"
