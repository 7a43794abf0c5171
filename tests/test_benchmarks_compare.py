"""The side-by-side comparison script (benchmarks.compare_methods): its table, its CPU budget, bad flags."""

from __future__ import annotations

import pytest
from training_support import write_random_dataset

from benchmarks.compare_methods import METHODS, parse_args, table, train_and_score


def _summary(preset, kimg, cpu, mib, metrics):
    return {"preset": preset, "kimg": kimg, "cpu_s_per_kimg": cpu, "peak_rss_mib": mib, "metrics": metrics}


def test_table_reports_each_method_on_its_final_images():
    rows = table(
        [
            _summary(
                "tiny-eg3d-heads", 10.25, 34.6, 521.0, {"2d/swd_x1e3_avg": 50.0, "2d/reprojection_psnr": 20.0}
            ),
            _summary(
                "tiny-mimic3d-heads",
                4.0,
                90.0,
                718.4,
                {
                    "2d/swd_x1e3_avg": 60.0,
                    "2d/reprojection_psnr": 21.0,
                    "3d/swd_x1e3_avg": 55.5,
                    "3d/reprojection_psnr": 30.25,
                },
            ),
        ]
    ).splitlines()
    assert rows[2] == "| EG3D (`tiny-eg3d-heads`) | 10.2 | 35 | 521 MiB | 50.0 | 20.0 |"
    assert (
        rows[3]
        == "| Mimic3D (`tiny-mimic3d-heads`) | 4.0 | 90 | 718 MiB | 55.5 (2d: 60.0) | 30.2 (2d: 21.0) |"
    )
    assert {final for _, _, final in METHODS.values()} == {"2d", "3d"}


def test_a_run_stops_at_its_cpu_budget(tmp_path):
    data = write_random_dataset(tmp_path / "data", count=16)
    summary = train_and_score("tiny-epigraf-heads", data, 1.0, tmp_path / "run", metric_images=8)
    assert summary["train_cpu_s"] >= 1.0 and summary["steps"] >= 1
    assert summary["kimg"] == summary["steps"] * 16 / 1000
    assert set(summary["metrics"]) >= {"3d/swd_x1e3_avg", "3d/reprojection_psnr"}
    assert (tmp_path / "run" / "summary.json").is_file() and (
        tmp_path / "run" / "report" / "samples.png"
    ).is_file()


@pytest.mark.parametrize("argv", [["--presets", "tiny-nerf"], ["--cpu-seconds", "0"], ["--images", "2"]])
def test_bad_flags_name_the_flag(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv)
    assert exit_info.value.code == 2
    assert argv[0] in capsys.readouterr().err
