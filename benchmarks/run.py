"""``make bench``: run every benchmark module and append a dated table to BENCHMARKS.md.

Usage: python -m benchmarks.run [--only render,...] [--no-write]
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import sys
from pathlib import Path

from benchmarks.common import machine_description, matmul_gflops

SUITES = ["render", "generator"]
RESULTS_FILE = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"


def format_table(rows: list[dict]) -> str:
    lines = ["| benchmark | value | unit | notes |", "| --- | ---: | --- | --- |"]
    for row in rows:
        value = row["value"]
        shown = f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"
        lines.append(f"| {row['name']} | {shown} | {row['unit']} | {row.get('notes', '')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", default=",".join(SUITES), help=f"comma-separated suites from {SUITES}")
    parser.add_argument("--no-write", action="store_true", help="print the table without appending it")
    args = parser.parse_args(argv)
    suites = [s for s in args.only.split(",") if s]
    unknown = sorted(set(suites) - set(SUITES))
    if unknown:
        parser.error(f"unknown suite(s) {unknown}; expected some of {SUITES}")

    gflops = matmul_gflops()
    rows = [{"name": "matmul fp32 1024^3 (compute ceiling)", "value": gflops, "unit": "GFLOP/s", "notes": ""}]
    for suite in suites:
        module = importlib.import_module(f"benchmarks.bench_{suite}")
        print(f"running {suite} benchmarks ...", file=sys.stderr)
        rows.extend(module.run())

    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    section = (
        f"\n## {stamp}\n\n- machine: {machine_description()}\n"
        f"- command: `make bench` (python -m benchmarks.run {' '.join(argv or sys.argv[1:])})\n\n"
        f"{format_table(rows)}\n"
    )
    print(section)
    if not args.no_write:
        if not RESULTS_FILE.exists():
            RESULTS_FILE.write_text("# Benchmarks\n\nAppended by `make bench`; newest last.\n")
        with RESULTS_FILE.open("a") as f:
            f.write(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
