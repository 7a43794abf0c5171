"""The benchmark suite's pieces: table format, memory and time measurement, the max-batch search and
an end-to-end ``--quick`` training run."""

from __future__ import annotations

import math
import re
import time
from types import SimpleNamespace

import pytest
import torch

import benchmarks.probe_batch
from benchmarks.batch_search import linear_prediction, search_max_batch
from benchmarks.bench_memory import ProbeClock, SearchTarget, run_probe
from benchmarks.bench_training import regularizer_period
from benchmarks.common import MIB, measure_peak_memory, timeit
from benchmarks.probe_batch import probe
from benchmarks.run import SUITES, format_table, main, parse_args


def test_format_table_rows_and_number_formats():
    rows = [
        {"name": "a", "value": 12345.6, "unit": "samples/s", "notes": "n1"},
        {"name": "b", "value": 0.0123456, "unit": "s"},
        {"name": "c", "value": 999.4, "unit": "MiB", "notes": ""},
    ]
    lines = format_table(rows).splitlines()
    assert lines[:2] == ["| benchmark | value | unit | notes |", "| --- | ---: | --- | --- |"]
    assert lines[2:] == ["| a | 12,346 | samples/s | n1 |", "| b | 0.0123 | s |  |", "| c | 999 | MiB |  |"]


def test_timeit_counts_warmups_and_returns_the_median():
    calls = []
    durations = iter([0.0, 0.09, 0.01, 0.05])  # the first is the warm-up, never timed

    def fn() -> None:
        calls.append(1)
        time.sleep(next(durations))

    median = timeit(fn, repeat=3, warmup=1)
    assert len(calls) == 4
    assert 0.05 <= median < 0.09


def _allocate(mib: int) -> torch.Tensor:
    return torch.ones(mib * MIB // 4)  # float32, every page written


def test_measure_peak_memory_cpu_sees_an_allocation_of_known_size():
    with measure_peak_memory("cpu") as big:
        block = _allocate(160)
        del block
    assert 150 <= big.above_baseline_mib <= 200, big
    # A smaller block right after: the high-water mark was reset, so the earlier peak does not show.
    with measure_peak_memory("cpu") as small:
        block = _allocate(48)
        del block
    if small.method.startswith("RSS high-water mark"):
        assert 40 <= small.above_baseline_mib <= 80, small
    with measure_peak_memory("cpu") as nothing:
        pass
    assert nothing.above_baseline_mib < 16


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_measure_peak_memory_cuda_sees_an_allocation_of_known_size():
    with measure_peak_memory("cuda") as memory:
        block = torch.ones(64 * MIB // 4, device="cuda")
        del block
    assert 63.9 <= memory.above_baseline_mib <= 66, memory


def _brute_force(peak_of, budget: float, limit: int) -> int:
    return max((b for b in range(1, limit + 1) if peak_of(b) <= budget), default=0)


COSTS = {
    "linear": lambda b: 100 + 30 * b,
    "quadratic": lambda b: 100 + 10 * b + 0.5 * b * b,
    "steps": lambda b: 200 + 64 * math.ceil(b / 4),
    "out of memory above 37": lambda b: 300 + b if b <= 37 else math.inf,
}


@pytest.mark.parametrize("name", sorted(COSTS))
@pytest.mark.parametrize("budget", [95.0, 131.0, 1000.0, 2500.0])
def test_search_max_batch_matches_brute_force(name, budget):
    cost = COSTS[name]
    calls = []

    def peak_of(batch: int) -> float:
        calls.append(batch)
        return cost(batch)

    found = search_max_batch(peak_of, budget, max_probes=30, max_batch=500)
    expected = _brute_force(cost, budget, 500)
    assert found.batch == expected
    assert found.exact and found.over == expected + 1 and found.stopped == "exact"
    assert list(found.probes) == calls and len(set(calls)) == len(calls)
    assert all((cost(b) <= budget) == (b <= expected) for b in calls)


def test_search_max_batch_pins_a_linear_cost_in_four_probes():
    found = search_max_batch(lambda b: 100 + 30 * b, 1000.0)
    assert found.batch == 30 and found.exact
    assert list(found.probes) == [1, 2, 30, 31]


def test_search_max_batch_when_nothing_fits():
    found = search_max_batch(lambda b: 500.0 * b, 100.0)
    assert (found.batch, found.over, found.exact, list(found.probes)) == (0, 1, True, [1])


def test_search_max_batch_stops_at_the_probe_limit_with_a_lower_bound():
    cost = COSTS["quadratic"]
    found = search_max_batch(cost, 1000.0, max_probes=3)
    assert len(found.probes) == 3 and found.stopped == "probes"
    assert 1 <= found.batch <= _brute_force(cost, 1000.0, 500)
    assert cost(found.batch) <= 1000.0


def test_search_max_batch_respects_can_probe_and_max_batch():
    asked = []

    def can_probe(batch: int) -> bool:
        asked.append(batch)
        return batch <= 2

    found = search_max_batch(lambda b: 100 + 30 * b, 1000.0, can_probe=can_probe)
    assert found.stopped == "declined" and found.batch == 2 and list(found.probes) == [1, 2]
    assert asked == [1, 2, 30] and found.predicted == 30

    flat = search_max_batch(lambda b: 100.0, 1000.0, max_probes=10, max_batch=64)
    assert flat.batch == 64 and flat.stopped == "limit" and not flat.exact
    assert list(flat.probes) == [1, 2, 4, 8, 16, 32, 64]  # a flat cost doubles


def test_search_max_batch_rejects_bad_limits():
    with pytest.raises(ValueError, match="max_probes"):
        search_max_batch(lambda b: 1.0, 10.0, max_probes=0)
    with pytest.raises(ValueError, match="max_batch"):
        search_max_batch(lambda b: 1.0, 10.0, max_batch=0)


def test_linear_prediction_uses_the_two_largest_fitting_probes():
    assert linear_prediction({1: 130.0, 2: 160.0}, 1000.0) == 30
    assert linear_prediction({1: 130.0, 4: 220.0, 8: math.inf}, 1000.0) == 30
    assert linear_prediction({1: 130.0}, 1000.0) is None
    assert linear_prediction({1: 130.0, 2: 130.0}, 1000.0) is None


def test_regularizer_period_is_the_lcm_of_the_phase_intervals():
    phases = [SimpleNamespace(interval=i) for i in (1, 4, 1, 16, 1, 6)]
    assert regularizer_period(SimpleNamespace(phases=phases)) == 48


def test_probe_reports_the_whole_process_peak_of_one_forward():
    result = probe("tiny-mimic3d", "3d", 16, 2, "cpu")
    assert result["failed"] is None and result["batch"] == 2
    assert result["forward_seconds"] > 0
    assert result["peak_mib"] > 50  # the interpreter and torch alone are more than that


def test_probe_turns_out_of_memory_into_a_failed_probe(monkeypatch):
    def failing_call(message: str):
        def call() -> None:
            raise RuntimeError(message)

        return lambda *args: call

    oom = "DefaultCPUAllocator: not enough memory: you tried to allocate 123 bytes"
    monkeypatch.setattr(benchmarks.probe_batch, "forward_call", failing_call(oom))
    result = probe("tiny-mimic3d", "2d", 16, 2, "cpu")
    assert result["failed"] == oom and math.isnan(result["forward_seconds"])
    monkeypatch.setattr(benchmarks.probe_batch, "forward_call", failing_call("shape mismatch"))
    with pytest.raises(RuntimeError, match="shape mismatch"):
        probe("tiny-mimic3d", "2d", 16, 2, "cpu")


def test_probe_of_a_student_runs_the_students_forward():
    result = probe("tiny-eg3d", "2d", 16, 2, "cpu", student=True)
    assert result["failed"] is None and result["forward_seconds"] > 0
    assert (
        SearchTarget("tiny-eg3d", "2d", 16, student=True).describe()
        == "student of tiny-eg3d, features 16 + SR"
    )


def test_run_probe_in_a_child_process():
    result = run_probe(SearchTarget("tiny-mimic3d", "2d", 16), 3, "cpu", timeout=120)
    assert result["batch"] == 3 and result["failed"] is None
    assert result["peak_mib"] > 50 and 0 < result["forward_seconds"] < result["wall"]


def test_probe_clock_predicts_from_the_slowest_probe_so_far():
    clock = ProbeClock(allowance=10.0)
    assert clock.can_probe(1000)  # nothing measured yet: the first probe always runs
    clock.record(1, wall=3.0, forward=1.0)
    clock.record(2, wall=3.5, forward=1.5)
    assert clock.predicted(5) == pytest.approx(2.0 + 5 * 1.0)
    assert clock.can_probe(5) and not clock.can_probe(9)
    assert ProbeClock(allowance=None).can_probe(10**6)


def test_parse_args_lists_and_checks_suites(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    help_text = capsys.readouterr().out
    assert all(name in help_text for name in SUITES)
    with pytest.raises(SystemExit):
        parse_args(["--only", "render,nonsense"])
    assert "nonsense" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args(["--memory-budget-gb", "0"])
    args = parse_args(["--only", "training,memory", "--device", "cpu"])
    assert args.suites == ["training", "memory"] and args.device == torch.device("cpu")


def test_quick_training_suite_end_to_end(tmp_path):
    output = tmp_path / "BENCH.md"
    assert main(["--only", "training", "--quick", "--device", "cpu", "--output", str(output)]) == 0
    text = output.read_text()
    assert text.startswith("# Benchmarks") and "(cpu, quick)" in text
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    by_unit: dict[str, list[tuple[str, float]]] = {}
    for name, value, unit, _notes in rows[1:]:
        by_unit.setdefault(unit, []).append((name.strip("| "), float(value.replace(",", ""))))
    assert [name for name, _ in by_unit["GFLOP/s"]] == [
        "matmul fp32 1024^3 (compute ceiling), start",
        "matmul fp32 1024^3 (compute ceiling), end",
    ]
    steps = by_unit["s/step"]
    families = [re.match(r"train (.+?):", name).group(1) for name, _ in steps]
    assert families == ["eg3d", "mimic3d stage 1", "mimic3d stage 2", "mimic3d e2e", "epigraf"]
    for (_, per_step), (_, per_kimg) in zip(steps, by_unit["s/kimg"]):
        assert per_step > 0
        assert per_kimg == pytest.approx(per_step / 4 * 1000, rel=0.01)  # batch 4, 3 significant digits
    assert all(mib > 0 for _, mib in by_unit["MiB"])
