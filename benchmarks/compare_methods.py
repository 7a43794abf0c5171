"""EG3D, Mimic3D and EpiGRAF side by side at the same CPU-time budget (the README's methods table).

Each tiny heads preset trains in its own process with one torch thread until the process has used
``--cpu-seconds`` of CPU time (user + sys, ``resource.getrusage``; robust to other load on a shared
machine, unlike wall time), so kimg follows from each method's own CPU sec/kimg. Then its final
images are scored: SWD (x1e3, average of the pyramid levels, ``--metric-images`` generated vs as many
real images) and the reprojection PSNR (two views of a subject warped onto each other through the
rendered depth; higher = more 3D-consistent). Final images are the 2D branch for EG3D, the 3D branch
for Mimic3D (its 2D branch is scored too) and EpiGRAF's direct render. Peak memory is the training
process's RSS high-water mark before scoring. Results go to ``OUTDIR/<preset>/summary.json`` and a
Markdown table is printed.

examples:
  python -m benchmarks.compare_methods --cpu-seconds 360 --outdir compare-runs
  nice python -m benchmarks.compare_methods --cpu-seconds 30 --images 64 --presets tiny-epigraf-heads
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

METHODS = {  # preset: (method, branches scored, branch of its final images)
    "tiny-eg3d-heads": ("EG3D", ("2d",), "2d"),
    "tiny-mimic3d-heads": ("Mimic3D", ("2d", "3d"), "3d"),
    "tiny-epigraf-heads": ("EpiGRAF", ("3d",), "3d"),
}


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def train_and_score(preset: str, data: Path, budget: float, outdir: Path, metric_images: int) -> dict:
    """Train ``preset`` for ``budget`` CPU seconds in this process, score it, write summary.json."""
    import torch

    torch.set_num_threads(1)
    from mimic3d.training.loop import Trainer
    from mimic3d.training.presets import load_config
    from mimic3d.training.report import Report, write_metrics, write_multiview, write_samples

    overrides = [f"data.path={data}", "run.total_kimg=100000", "run.video_frames=0", "loss.lpips=untrained"]
    config, _ = load_config(preset, overrides)
    trainer = Trainer(config, outdir / "run", progress_bar=False)
    start_cpu, start_wall = _cpu_seconds(), time.time()
    while _cpu_seconds() - start_cpu < budget:
        trainer.train_step()
    train_cpu, train_wall = _cpu_seconds() - start_cpu, time.time() - start_wall
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    snapshot = trainer.save()
    trainer.monitor.close()
    _, branches, _ = METHODS[preset]
    G = trainer.nets.G_ema.eval().requires_grad_(False)
    report = Report(outdir / "report")
    report.folder.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        write_samples(G, trainer.dataset, report, branches=branches)
        write_multiview(G, report, branches)
    write_metrics(G, trainer.dataset, report, metric_images, branches)
    kimg = trainer.cur_nimg / 1000
    summary = {
        "preset": preset,
        "budget_cpu_s": budget,
        "kimg": kimg,
        "steps": trainer.step,
        "train_cpu_s": train_cpu,
        "train_wall_s": train_wall,
        "cpu_s_per_kimg": train_cpu / kimg,
        "peak_rss_mib": peak_mib,
        "snapshot": str(snapshot),
        "metrics": report.metrics,
    }
    (outdir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def table(summaries: list[dict]) -> str:
    """The README's Markdown table from the runs' summaries."""
    lines = [
        "| method (preset) | kimg in budget | CPU sec/kimg | peak memory | SWD x1e3 (lower is better) "
        "| reprojection PSNR (dB) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in summaries:
        method, branches, final = METHODS[s["preset"]]
        metrics = s["metrics"]
        swd = f"{metrics[f'{final}/swd_x1e3_avg']:.1f}"
        psnr = f"{metrics[f'{final}/reprojection_psnr']:.1f}"
        if len(branches) > 1:
            other = next(b for b in branches if b != final)
            swd += f" ({other}: {metrics[f'{other}/swd_x1e3_avg']:.1f})"
            psnr += f" ({other}: {metrics[f'{other}/reprojection_psnr']:.1f})"
        lines.append(
            f"| {method} (`{s['preset']}`) | {s['kimg']:.1f} | {s['cpu_s_per_kimg']:.0f} | "
            f"{s['peak_rss_mib']:.0f} MiB | {swd} | {psnr} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.compare_methods",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--cpu-seconds", type=float, default=360.0, help="CPU budget per method (360)")
    parser.add_argument("--outdir", type=Path, default=Path("compare-runs"), help="output folder")
    parser.add_argument("--data", type=Path, default=None, help="heads dataset (default: synthesise one)")
    parser.add_argument("--images", type=int, default=800, help="images to synthesise (default: 800)")
    parser.add_argument("--metric-images", type=int, default=256, help="images per SWD estimate (256)")
    parser.add_argument(
        "--presets", default=",".join(METHODS), help=f"comma-separated, from {','.join(METHODS)}"
    )
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # the child process's preset
    args = parser.parse_args(argv)
    args.presets = [p for p in args.presets.split(",") if p]
    unknown = sorted(set(args.presets) - set(METHODS))
    if unknown or not args.presets:
        parser.error(f"--presets: unknown or no preset(s) {unknown}; expected some of {','.join(METHODS)}")
    if not args.cpu_seconds > 0 or args.images < 8 or args.metric_images < 8:
        parser.error("--cpu-seconds must be > 0, --images and --metric-images at least 8")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.one is not None:
        train_and_score(args.one, args.data, args.cpu_seconds, args.outdir / args.one, args.metric_images)
        return 0
    args.outdir.mkdir(parents=True, exist_ok=True)
    data = args.data
    if data is None:
        from mimic3d.data.synth import synth_dataset

        data = args.outdir / f"heads32-{args.images}-seed0.zip"
        if not data.exists():
            synth_dataset(str(data), "heads", args.images, 32, seed=0, workers=1, progress=False)
    summaries = []
    for preset in args.presets:  # one fresh process each: its own peak memory, one thread
        command = [sys.executable, "-m", "benchmarks.compare_methods", "--one", preset, "--data", str(data)]
        command += ["--cpu-seconds", str(args.cpu_seconds), "--outdir", str(args.outdir)]
        command += ["--metric-images", str(args.metric_images)]
        print(f"training {preset} for {args.cpu_seconds:g} CPU seconds ...", file=sys.stderr, flush=True)
        subprocess.run(command, check=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
        summaries.append(json.loads((args.outdir / preset / "summary.json").read_text(encoding="utf-8")))
    print(table(summaries))
    return 0


if __name__ == "__main__":
    sys.exit(main())
