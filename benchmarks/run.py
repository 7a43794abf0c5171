"""``make bench``: run the benchmark suites and append a dated table to BENCHMARKS.md.

Every table starts and ends with the device's measured fp32 matmul rate (the compute ceiling, and
a check that the machine's load did not change during the run), and names the machine. Timings
synchronise on the device; peak memory is CUDA's max_memory_allocated on a GPU and the process's
RSS high-water mark on CPU (see benchmarks/common.py).

examples:
  python -m benchmarks.run                          # every suite on CUDA if available, else CPU
  python -m benchmarks.run --only render,generator --device cpu
  python -m benchmarks.run --quick --no-write       # tiny presets, about a minute
  python -m benchmarks.run --only memory --memory-budget-gb 4
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import sys
import time
from pathlib import Path

import torch

from benchmarks.common import BenchSettings, machine_description, matmul_gflops, matmul_size, resolve_device
from mimic3d.runtime import apply_backend_policy, tune_cpu_allocator, tuning_requested

SUITES = {
    "render": "volume renderer samples/s (forward, forward+backward, Mimic3D patch) and peak memory",
    "generator": "generator forward images/s and peak memory per preset, branch and render resolution",
    "training": "seconds per training step, sec/kimg and peak memory per preset family",
    "memory": "largest inference batch within --memory-budget-gb (each probe a fresh process)",
    "distill": "distilled student vs its teacher: images/s, peak memory and max batch, side by side",
    "viewer": "mimic3d view's seconds per frame: demo and ffhq512-size models, 64^2..256^2, both branches",
    "inversion": "seconds per inversion step (W+ latent, pivotal tuning) and peak memory",
}
RESULTS_FILE = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"


def format_table(rows: list[dict]) -> str:
    """Markdown table of ``{"name", "value", "unit", "notes"}`` rows, values to 3 significant digits."""
    lines = ["| benchmark | value | unit | notes |", "| --- | ---: | --- | --- |"]
    for row in rows:
        value = row["value"]
        shown = f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"
        lines.append(f"| {row['name']} | {shown} | {row['unit']} | {row.get('notes', '')} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=__doc__,
        epilog="suites:\n" + "\n".join(f"  {name:10s} {what}" for name, what in SUITES.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--only",
        default=",".join(SUITES),
        metavar="SUITES",
        help=f"comma-separated suites to run, from {','.join(SUITES)} (default: all)",
    )
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default=None,
        help="where models run (default: cuda if torch sees a GPU, else cpu)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny presets and sizes: a smoke run of every path"
    )
    parser.add_argument(
        "--memory-budget-gb",
        type=float,
        default=None,
        metavar="GIB",
        help="budget of the memory suite's batch search (default: the GPU's memory; 8 GiB on CPU)",
    )
    parser.add_argument(
        "--search-seconds",
        type=float,
        default=None,
        metavar="S",
        help="wall-clock allowance of each batch search (default: 180 on CPU, unlimited on a GPU)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="torch CPU threads, also in the memory suite's child processes (default: torch's choice)",
    )
    parser.add_argument(
        "--tf32",
        action="store_true",
        help="allow TF32 matmuls/convolutions on GPUs (default: off, EG3D's official numerics)",
    )
    parser.add_argument("--no-write", action="store_true", help="print the table without appending it")
    parser.add_argument("--output", type=Path, default=RESULTS_FILE, help="file the table is appended to")
    args = parser.parse_args(argv)
    args.suites = [s for s in args.only.split(",") if s]
    unknown = sorted(set(args.suites) - set(SUITES))
    if unknown or not args.suites:
        parser.error(f"--only: unknown or no suite(s) {unknown}; expected some of {','.join(SUITES)}")
    for name in ("memory_budget_gb", "search_seconds", "threads"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            parser.error(f"--{name.replace('_', '-')}: expected a positive number, got {value}")
    try:
        args.device = resolve_device(args.device)
    except ValueError as err:
        parser.error(str(err))
    return args


def _matmul_row(rate: float, device: str, when: str, size: int) -> dict:
    return {
        "name": f"matmul fp32 {size}^3 (compute ceiling), {when}",
        "value": rate,
        "unit": "GFLOP/s",
        "notes": f"{device}, same process",
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    malloc_tuned = tuning_requested() and tune_cpu_allocator()  # as the mimic3d command does
    backend = apply_backend_policy(tf32=args.tf32)  # as training and the tools do
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = args.device
    size = matmul_size(device)
    start_rate = matmul_gflops(size, device=device)
    settings = BenchSettings(
        device=device,
        quick=args.quick,
        matmul_gflops=start_rate,
        memory_budget_mib=None if args.memory_budget_gb is None else args.memory_budget_gb * 1024,
        search_seconds=args.search_seconds,
    )
    rows = [_matmul_row(start_rate, device.type, "start", size)]
    durations = []
    for suite in args.suites:
        print(
            f"running {suite} benchmarks on {device.type}{' (quick)' if args.quick else ''} ...",
            file=sys.stderr,
        )
        started = time.perf_counter()
        rows.extend(importlib.import_module(f"benchmarks.bench_{suite}").run(settings))
        durations.append(f"{suite} {time.perf_counter() - started:.0f} s")
    rows.append(_matmul_row(matmul_gflops(size, device=device), device.type, "end", size))

    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    command = " ".join(sys.argv[1:] if argv is None else argv)
    section = (
        f"\n## {stamp} ({device.type}{', quick' if args.quick else ''})\n\n"
        f"- machine: {machine_description(device)}; glibc malloc thresholds raised: "
        f"{'yes' if malloc_tuned else 'no'} (mimic3d.runtime); GPU TF32 "
        f"{'on' if backend.matmul_tf32 else 'off'}\n"
        f"- command: `python -m benchmarks.run {command}`\n"
        f"- wall time: {', '.join(durations)}\n\n"
        f"{format_table(rows)}\n"
    )
    print(section)
    if not args.no_write:
        if not args.output.exists():
            args.output.write_text("# Benchmarks\n\nAppended by `make bench`; newest last.\n")
        with args.output.open("a") as f:
            f.write(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
