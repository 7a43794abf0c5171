"""One checkpoint resolver for every command and API: run folders, snapshots, network folders and
their weight files, single files; results land in the run folder; tools check before they write."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from training_support import TINY, write_random_dataset

import mimic3d
from mimic3d.checkpoints.resolve import resolve_checkpoint
from mimic3d.cli.main import main
from mimic3d.metrics import compute_metric, generator_images, get_protocol
from mimic3d.metrics.correspondence import correspondence_psnr
from mimic3d.models import TriplaneGenerator
from mimic3d.runtime import default_workers
from mimic3d.training.snapshot import latest_snapshot


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("resolve")
    data = write_random_dataset(root / "data")
    argv = ["train", "tiny-eg3d-heads", *TINY, f"data.path={data}", "--outdir", str(root / "runs")]
    assert main([*argv, "--max-steps", "1", "--no-progress"]) == 0
    run_dir = root / "runs" / "00000-tiny-eg3d-heads"
    snapshot = latest_snapshot(run_dir)
    single = mimic3d.save(root / "single.safetensors", mimic3d.load(snapshot))
    return {"root": root, "data": data, "run": run_dir, "snapshot": snapshot, "single": single}


def test_every_form_of_checkpoint_loads_the_same_generator(run):
    snapshot = run["snapshot"]
    reference = mimic3d.load(snapshot).state_dict()
    forms = {
        "run folder": run["run"],
        "snapshot folder": snapshot,
        "network folder": snapshot / "G_ema",
        "network weights": snapshot / "G_ema" / "model.safetensors",
        "single file": run["single"],
    }
    for form, path in forms.items():
        G = mimic3d.load(path)
        assert isinstance(G, TriplaneGenerator) and not G.training, form
        assert all(torch.equal(G.state_dict()[k], v) for k, v in reference.items()), form
    # A network folder is that network, whatever its name.
    G = mimic3d.load(snapshot / "G")
    assert isinstance(G, TriplaneGenerator) and G.training is False
    assert type(mimic3d.load(snapshot / "D")).__name__ == "DualDiscriminator"
    assert set(mimic3d.load_networks(run["run"])) == {"G_ema", "G", "D"}
    # Where results about each form belong: the run folder, else the folder holding the file.
    for path in (run["run"], snapshot, snapshot / "G_ema", snapshot / "G_ema" / "model.safetensors"):
        assert resolve_checkpoint(path).results_dir == run["run"]
    assert resolve_checkpoint(run["single"]).results_dir == run["root"]


def test_every_tool_command_takes_every_form(run, tmp_path, capsys):
    snapshot = run["snapshot"]
    for index, path in enumerate([run["run"], snapshot / "G", snapshot / "G_ema" / "model.safetensors"]):
        out = tmp_path / str(index)
        argv = ["generate", str(path), "--seeds", "0", "--views", "0", "--no-normals", "--outdir", str(out)]
        assert main(argv) == 0 and (out / "seed0000.png").is_file()
    assert main(["planes", str(snapshot / "D"), "--outdir", str(tmp_path)]) == 2
    assert "holds a DualDiscriminator, expected a tri-plane generator" in capsys.readouterr().err
    assert main(["planes", str(run["root"] / "missing"), "--outdir", str(tmp_path)]) == 2
    assert "checkpoint not found" in capsys.readouterr().err


def test_metrics_of_a_snapshot_are_recorded_in_its_run_folder(run, capsys):
    argv = ["metrics", str(run["snapshot"]), "--data", str(run["data"]), "--metrics", "swd16k"]
    argv += ["--num-gen", "8", "--max-real", "8", "--device", "cpu", "--workers", "0"]
    assert main(argv) == 0
    (line,) = (run["run"] / "metric-swd16k_gen8_real8.jsonl").read_text().splitlines()
    assert json.loads(line)["network"] == str(run["snapshot"].absolute())
    assert not list((run["run"] / "snapshots").glob("metric-*"))


def test_mesh_checks_the_level_before_writing_and_picks_one_when_eg3d_misses(run, tmp_path, capsys):
    argv = [
        "mesh",
        str(run["run"]),
        "--resolution",
        "64",
        "--format",
        "npy,mrc,ply",
        "--outdir",
        str(tmp_path),
    ]
    assert main([*argv, "--level", "1e6"]) == 2
    assert "--level: 1e+06 does not cut the density" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # no partial output
    assert main(argv) == 0  # a one-step model's density never reaches EG3D's level 10
    captured = capsys.readouterr()
    assert "EG3D's level 10 does not cut the density" in captured.err and "(automatic)" in captured.out
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".mrc", ".npy", ".ply"]
    volume = np.load(tmp_path / "seed0000.npy")
    assert volume.max() < 10


def test_metric_helpers_take_z_dim_from_the_generator(run):
    G = mimic3d.load(run["snapshot"])
    seen = []
    generate = generator_images(G, "2d", "const")

    class Recorder:
        z_dim = G.z_dim

        def __call__(self, z, c):
            seen.append(z.shape[1])
            return generate(z, c)

    dataset = mimic3d.data.ImageDataset(run["data"])
    labels = dataset.camera_sampler()
    compute_metric(get_protocol("swd16k").with_counts(4, 4), Recorder(), labels, dataset, batch_gen=4)
    assert generate.z_dim == G.z_dim and set(seen) == {G.z_dim} != {512}
    seen.clear()
    correspondence_psnr(Recorder(), Recorder(), labels, num_images=2)
    assert seen == [G.z_dim, G.z_dim]  # one batch through each generator
    with pytest.raises(ValueError, match="z_dim: the generate callable has no z_dim"):
        correspondence_psnr(lambda z, c: z, lambda z, c: z, labels, num_images=2)


def test_default_workers_follow_the_machine(monkeypatch):
    import mimic3d.runtime as runtime

    for cores, expected in ((1, 0), (2, 1), (4, 3), (64, 3)):
        monkeypatch.setattr(runtime, "available_cpus", lambda cores=cores: cores)
        assert default_workers(at_most=3) == expected
