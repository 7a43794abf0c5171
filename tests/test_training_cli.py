"""``mimic3d train``: presets, overrides, run folders, resume and Ctrl-C through the command line."""

from __future__ import annotations

import json
import os
import signal

import yaml
from training_support import TINY, tiny_config, write_random_dataset

from mimic3d.cli.main import main
from mimic3d.training.loop import Trainer
from mimic3d.training.presets import preset_names
from mimic3d.training.snapshot import latest_snapshot, load_snapshot


def _tiny_eg3d_args(data) -> list[str]:
    return ["tiny-eg3d-heads", f"data.path={data}", *TINY]


def test_list_and_print_config(capsys):
    assert main(["train", "--list-presets"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in preset_names())
    assert main(["train", "eg3d-afhq512", "loss.r1_gamma=3", "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["loss"]["r1_gamma"] == 3.0 and printed["augment"]["mode"] == "ada"


def test_bad_key_is_a_clear_error(capsys):
    assert main(["train", "eg3d-ffhq512", "loss.gamma=3", "--print-config"]) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'loss.gamma'" in err and "r1_gamma" in err


def test_failed_start_leaves_no_run_folder(tmp_path, capsys):
    outdir = tmp_path / "runs"
    assert main(["train", "eg3d-ffhq512", "--outdir", str(outdir)]) == 2
    assert "data.path" in capsys.readouterr().err
    missing = tmp_path / "missing.zip"
    assert main(["train", "tiny-eg3d-heads", f"data.path={missing}", "--outdir", str(outdir)]) == 2
    assert "missing.zip" in capsys.readouterr().err
    assert not outdir.exists() or not any(outdir.iterdir())


def test_run_folder_and_resume_latest(tmp_path, capsys):
    data = write_random_dataset(tmp_path / "data")
    outdir = tmp_path / "runs"
    args = [*_tiny_eg3d_args(data), "--outdir", str(outdir), "--max-steps", "1", "--no-progress"]
    assert main(["train", *args]) == 0
    run_dir = outdir / "00000-tiny-eg3d-heads"
    for name in ("config.yaml", "log.txt", "stats.jsonl", "latest"):
        assert (run_dir / name).is_file(), name
    assert list(run_dir.glob("events.out.tfevents.*"))
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["data"]["path"] == str(data) and saved["generator"]["aware3d"] is False
    record = json.loads((run_dir / "stats.jsonl").read_text().splitlines()[-1])
    assert record["Progress/kimg"] == 0.004 and "Loss/G/loss" in record and "Timing/sec_per_kimg" in record

    resume = ["--resume", "latest", "--outdir", str(outdir), "--max-steps", "2", "--no-progress"]
    assert main(["train", *resume]) == 0
    assert "resumed from" in (run_dir / "log.txt").read_text()
    _, metadata, state = load_snapshot(latest_snapshot(run_dir))
    assert state.counters["step"] == 2 and metadata["kimg"] == 0.008
    assert not (outdir / "00001-tiny-eg3d-heads").exists()


def test_ctrl_c_finishes_the_step_and_saves(tmp_path):
    data = write_random_dataset(tmp_path / "data")
    config = tiny_config("eg3d", data)
    trainer = Trainer(config, tmp_path / "run", progress_bar=False)
    accumulate = trainer.loss.accumulate
    calls = []

    def interrupt_during_the_first_phase(phase, *args):
        calls.append(phase)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGINT)  # delivered to run()'s handler, not to pytest
        return accumulate(phase, *args)

    trainer.loss.accumulate = interrupt_during_the_first_phase
    result = trainer.run()
    assert (result.status, result.step) == ("interrupted", 1)
    assert calls == ["Gmain", "Greg", "Dmain", "Dreg"]  # the step in flight was completed
    assert latest_snapshot(tmp_path / "run") == result.snapshot
    assert "SIGINT: finishing this step" in (tmp_path / "run" / "log.txt").read_text()
    assert signal.getsignal(signal.SIGINT) is not trainer._request_stop  # handlers restored
