"""Every shell command and Python snippet in README.md and docs/*.md runs, so the docs cannot go stale.

Each ```bash block is a list of commands and each ```python block a snippet (```text and ```json
blocks are output; an untagged block is an error). A block runs in a folder of its own whose
stand-ins (``STAND_INS``) carry the file names the docs use: every dataset is one tiny synthetic
one, every checkpoint one tiny trained snapshot (official pickles load through the same
``mimic3d.load``; tests/test_checkpoint_portable_official.py covers them). Commands are then scaled
down by ``SUBSTITUTIONS`` (applied in order, each with its reason), or listed in ``NOT_RUNNABLE``
with the reason they cannot run here. Every entry of both tables must still match some command, so
the tables cannot rot either. Python snippets that continue the surrounding text use ``PRELUDE``
names (``G``, a loaded generator, ...).
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import tomllib
import torch
from training_support import TINY, epigraf_tiny_overrides

import mimic3d
from mimic3d.camera import PRESETS, sample_labels, to_angles, to_opengl
from mimic3d.checkpoints.resolve import latest_checkpoint
from mimic3d.cli.demo import DEMO_MINUTES
from mimic3d.cli.main import COMMANDS, main
from mimic3d.data import ImageDataset
from mimic3d.data.synth import synth_dataset
from mimic3d.metrics import generator_images, quantize_images

ROOT = Path(__file__).parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# Paper presets -> the tiny preset of the same family; --name keeps the run folders the docs name.
STAGE1 = (
    "generator.sr3d=false loss.imitation_weight=0 loss.imitation_l1=0 loss.patch_gan=0 "
    "patch_discriminator=null"
)
TINY_PRESET = [
    (r"\beg3d-\w+", "tiny-eg3d-heads"),
    (r"\bmimic3d-\w+-stage1", f"tiny-mimic3d-heads {STAGE1}"),
    (
        r"\bmimic3d-(?:ffhq512-stage2|ffhq256|afhq512|shapenet128)\b",
        "tiny-mimic3d-heads run.init_required=true",
    ),
    (r"\bmimic3d-e2e\b", "tiny-mimic3d-heads"),
    (r"\bepigraf-\w+", "tiny-epigraf-heads"),
    (r"\btiny-mimic3d-heads64\b", "tiny-mimic3d-heads"),  # the shipped model's preset at 64^2
]
TINY_OVERRIDES = " ".join(TINY)
TINY_EPIGRAF_OVERRIDES = " ".join(epigraf_tiny_overrides())  # no dual discriminator to cut down


def _tiny_training(match: re.Match) -> str:
    """A training command on the tiny preset, one step (two when resumed)."""
    head, preset, rest = match.group(1), match.group(2), match.group(3)
    if preset is None or "--list-presets" in rest:
        return match.group(0) + " --max-steps 2 --no-progress" * ("--resume" in rest)
    for pattern, tiny in TINY_PRESET:
        if re.fullmatch(pattern, preset):
            cut = TINY_EPIGRAF_OVERRIDES if "epigraf" in tiny else TINY_OVERRIDES
            return f"{head} {tiny} --name {preset}{rest} {cut} --max-steps 1 --no-progress"
    cut = TINY_EPIGRAF_OVERRIDES if "epigraf" in preset else TINY_OVERRIDES
    return f"{head} {preset}{rest} {cut} --max-steps 1 --no-progress"


@dataclass(frozen=True)
class Rule:
    pattern: str  # regex searched in a command (or snippet)
    replacement: object  # str or function of the match; None for NOT_RUNNABLE entries
    reason: str
    where: str = "bash"  # "bash" or "python"
    document: str | None = None  # only in this file (README.md, training.md, ...)

    def applies(self, where: str, document: Path) -> bool:
        return self.where == where and self.document in (None, document.name)


SUBSTITUTIONS = [
    Rule(r"^\.venv/bin/mimic3d ", "mimic3d ", "the suite runs inside the environment already"),
    Rule(r"^OMP_NUM_THREADS=\d+ ", "", "the suite sets its thread count itself (conftest.py)"),
    Rule(r"--nproc_per_node 8", "--nproc_per_node 2", "2 CPU processes (gloo) instead of 8 GPUs"),
    Rule(
        r"data\.path=\.\.\.", "data.path=~/datasets/FFHQ_512.zip", "'...' stands for the dataset of the block"
    ),
    Rule(
        r"^((?:torchrun .*-m )?mimic3d train)(?: ((?!-)[\w.-]+(?<!=\S)))?((?: .*)?)$",
        _tiny_training,
        "paper presets are 512^2 GPU models: the tiny preset of the same family, named as in the docs, "
        "with the smoke-test sizes, one step",
    ),
    Rule(r"^(mimic3d (?:generate|mesh|epi) .*--seeds) 0-\d+", r"\1 0", "one seed"),
    Rule(r"^(mimic3d (?:video|epi) .*?)(?: --frames \d+|$)", r"\1 --frames 2", "two frames", "bash"),
    Rule(r"^(mimic3d mesh .*?)(?: --resolution \d+|$)", r"\1 --resolution 64", "a 64^3 grid"),
    Rule(r"--mix-layers 7-", "--mix-layers 2-", "the tiny model has 4 ws layers (EG3D's 14)"),
    Rule(r"^(mimic3d dataset build .*--resolution) \d+", r"\1 32", "32^2 images"),
    Rule(r"^(mimic3d dataset synth .*--num) \d+", r"\1 8", "8 images"),
    Rule(r"^(mimic3d dataset synth .*--resolution) \d+", r"\1 32", "at 32^2"),
    Rule(
        r"^(mimic3d metrics .*?)(?: --num-gen \d+|$)",
        r"\1 --num-gen 8 --max-real 8 --workers 0",
        "8 fakes and 8 reals",
    ),
    Rule(r'device="cuda"', 'device="cpu"', "no GPU here", "python"),
    Rule(
        r'compute_metric\("fid50k_full"',
        'compute_metric(get_protocol("swd16k").with_counts(8, 8)',
        "FID needs the Inception file; SWD runs the same compute_metric path with 8 images",
        "python",
    ),
    Rule(
        r"^(mimic3d invert .*)$",
        r"\1 --lpips untrained --steps 2 --pti-steps 1 --frames 2 --mesh-resolution 64",
        "LPIPS weights are a download: untrained LPIPS, two latent steps, one tuning step, a short video",
    ),
    Rule(r"num_frames=120", "num_frames=2", "two frames", "python"),
    Rule(
        r"^(mimic3d distill \S+) (distill-[\w-]+)",
        r"\1 tiny-distill-heads --name \2",
        "the paper presets distil 512^2 teachers on GPUs: the tiny preset, named as in the docs",
    ),
    Rule(
        r"^(mimic3d distill (?!--evaluate|--resume).*)$",
        r"\1 run.batch_size=4 run.grid_size=0 run.video_frames=0 distill.eval_images=0 "
        "distill.lpips_lr_weight=0 --max-steps 1 --no-progress",
        "one step of 4 images; the stand-in teacher renders 8x8 features, below LPIPS's 16x16",
    ),
    Rule(r"^(mimic3d distill --resume.*)$", r"\1 --max-steps 2 --no-progress", "one more step"),
    Rule(r"--num-images 64", "--num-images 4", "4 teacher/student pairs"),
    Rule(
        r'steps=500, pti_steps=350(.*)outdir="out/me"\)',
        'steps=2, pti_steps=1\\1outdir="out/me", lpips="untrained", '
        "outputs=mimic3d.inversion.OutputOptions(frames=2, mesh_resolution=64))",
        "untrained LPIPS (a download otherwise), few steps, a short video",
        "python",
    ),
    Rule(r"resolution=256\)", "resolution=64)", "a 64^3 grid", "python"),
    Rule(r'"yaw-sweep", 128', '"yaw-sweep", 4', "four cameras", "python"),
    Rule(
        r"num_subjects=16, pairs_per_subject=4",
        "num_subjects=2, pairs_per_subject=1",
        "two subjects",
        "python",
    ),
]

NOT_RUNNABLE = [
    Rule(r"^(?:\w+=\S+ )*make test$", None, "runs this test suite itself (plain or under CPU settings)"),
    Rule(
        r"^make demo$",
        None,
        "the same command on a tiny budget is "
        "tests/test_training_report.py::test_demo_writes_a_complete_report",
    ),
    Rule(
        r"^make bench$|^python -m benchmarks\.run",
        None,
        "minutes of benchmarks; tests/test_benchmarks.py runs them small",
    ),
    Rule(
        r"^python3 -m venv|pip install",
        None,
        "creates an environment and installs from PyPI; the suite runs in one",
    ),
    Rule(r"^(mkdir|curl) ", None, "fetches LPIPS weight files from the internet"),
    Rule(r"--nnodes 2", None, "needs two machines"),
    Rule(r"--gpus 8", None, "needs 8 GPUs"),
    Rule(
        r"^mimic3d metrics (?!.*--features).*--metrics (fid|kid)",
        None,
        "needs the Inception file (a download)",
    ),
    Rule(
        r"^torchrun --nproc_per_node 2 ",
        None,
        "the same launch as README.md's torchrun line, which runs (two processes cost ~20 s of CPU each)",
        document="training.md",
    ),
    Rule(r"load_inception\(", None, "needs the Inception file (a download)", "python"),
    Rule(
        r"^mimic3d view ",
        None,
        "serves until Ctrl-C; tests/test_viewer_app.py starts the command, loads the page and stops it, "
        "and tests/test_viewer_browser.py drives the viewer from a headless browser",
    ),
    Rule(r"^ssh ", None, "a tunnel from another machine"),
    Rule(
        r"^bash benchmarks/gpu_check\.sh",
        None,
        "downloads wheels (--prepare) or needs a GPU machine; "
        "MIMIC3D_CUDA_SUITE_DEVICE=cpu dry-runs tests/cuda",
    ),
    Rule(
        r"patches\.distribution=beta patch_discriminator=null",
        None,
        "a stage-2 run needs its stage-1 run; tests/test_training_epigraf.py trains the same options "
        "on the tiny Mimic3D (test_mimic3d_3d_branch_with_beta_patches_and_the_scale_aware_d)",
        document="training.md",
    ),
    Rule(
        r"^python examples/onnx_multiview\.py",
        None,
        "tests/test_export_network.py runs the example on an exported student, with torch blocked",
    ),
    Rule(
        r"^mimic3d demo ",
        None,
        "trains for 7 minutes; "
        "tests/test_training_report.py::test_demo_writes_a_complete_report runs it small",
    ),
]

# Names the docs use for inputs -> what stands in for them (made in a block's folder when the block
# names them and does not write them itself; HOME is the folder's home/).
STAND_INS = {
    "ffhq512.zip": "dataset",
    "ffhq512-epigraf.zip": "dataset",
    "heads.zip": "dataset",
    "data.zip": "dataset",
    "~/datasets/FFHQ_512.zip": "dataset",
    "my_data/": "dataset folder",
    "ffhq512.pkl": "checkpoint",
    "mimic3d-ffhq512.pkl": "checkpoint",
    "shapenet128.pkl": "checkpoint",
    "network-snapshot.pkl": "checkpoint",
    "network-snapshot-001000.pkl": "checkpoint",
    "net.safetensors": "checkpoint",
    "demo-output/runs/00000-tiny-mimic3d-heads": "run",
    "demo-output/runs/00000-tiny-eg3d-heads": "run",
    "demo-output/heads32-800-seed0.zip": "dataset",
    "runs/00001-ffhq": "run folder holding network-snapshot-001000",
    "dino.pt": "features",
    **{name: "photos" for name in ("photos/", "lego/", "cats/", "shots/", "transforms.json", "angles.json")},
    "poses.json": "photos",
    **{name: "aligned" for name in ("photo.png", "dataset.json", "views/")},
}


@dataclass(frozen=True)
class Block:
    document: Path
    line: int
    language: str
    body: str

    @property
    def name(self) -> str:
        return f"{self.document.name}:{self.line}"


def code_blocks() -> list[Block]:
    blocks = []
    for document in DOCUMENTS:
        text = document.read_text(encoding="utf-8")
        for match in re.finditer(r"^```(\w*)\n(.*?)^```$", text, re.S | re.M):
            line = text[: match.start()].count("\n") + 1
            blocks.append(Block(document, line, match.group(1), match.group(2)))
    return blocks


BLOCKS = code_blocks()
RUNNABLE = [b for b in BLOCKS if b.language in ("bash", "python")]


def commands(block: Block) -> list[str]:
    """The block's command lines: continuations joined, comments and blank lines dropped."""
    joined = block.body.replace("\\\n", " ")
    return [
        " ".join(shlex.split(line, comments=True))
        for line in joined.splitlines()
        if line.split("#")[0].strip()
    ]


def scaled(text: str, where: str, document: Path) -> tuple[str, str | None, set[Rule]]:
    """(the command or snippet after the substitutions, the reason it cannot run here or None,
    the rules that matched)."""
    used = set()
    for rule in SUBSTITUTIONS:
        if rule.applies(where, document) and re.search(rule.pattern, text, re.M):
            used.add(rule)
            text = re.sub(rule.pattern, rule.replacement, text, flags=re.M)
    for rule in NOT_RUNNABLE:
        if rule.applies(where, document) and re.search(rule.pattern, text, re.M):
            return text, rule.reason, used | {rule}
    return text, None, used


# ----------------------------------------------------------------------------- stand-ins


class ChannelStats(torch.nn.Module):
    """A feature network for FID on custom features: per-channel mean and spread."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float() / 255
        return torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], dim=1)


def _write_photos(root: Path) -> None:
    """Photo folders with EG3D, Blender, EpiGRAF-angle and OpenGL camera files, as the docs name them."""
    labels = sample_labels(PRESETS["ffhq"], 3, generator=torch.Generator().manual_seed(0))
    rng = np.random.default_rng(0)
    names = [f"img{i}.png" for i in range(3)]
    for folder in ("photos", "lego", "cats", "shots"):
        (root / folder).mkdir()
        for name in names:
            PIL.Image.fromarray(rng.integers(0, 256, (40, 48, 3), np.uint8)).save(root / folder / name)
    cam2world, focal = labels[:, :16].reshape(-1, 4, 4), float(labels[0, 16])
    eg3d = {"labels": [[name, label.tolist()] for name, label in zip(names, labels)]}
    (root / "photos" / "dataset.json").write_text(json.dumps(eg3d))
    opengl = to_opengl(cam2world)
    blender = {
        "camera_angle_x": 2 * math.atan(0.5 / focal),
        "frames": [
            {"file_path": f"./{n[:-4]}", "transform_matrix": m.tolist()} for n, m in zip(names, opengl)
        ],
    }
    for path in (root / "transforms.json", root / "lego" / "transforms.json"):
        path.write_text(json.dumps(blender))
    angles = to_angles(cam2world)[0]
    (root / "angles.json").write_text(json.dumps({"camera_angles": dict(zip(names, angles.tolist()))}))
    poses = [
        [n, torch.cat([m.flatten(), labels[i, 16:]]).tolist()] for i, (n, m) in enumerate(zip(names, opengl))
    ]
    (root / "poses.json").write_text(json.dumps({"labels": poses}))


def _write_aligned(root: Path) -> None:
    """Square images with cameras for ``mimic3d invert``: photo.png with dataset.json, and views/ with
    its transforms.json."""
    labels = sample_labels(PRESETS["ffhq"], 3, generator=torch.Generator().manual_seed(1))
    rng = np.random.default_rng(1)
    (root / "views").mkdir()
    for name in ("photo.png", "views/view0.png", "views/view1.png"):
        PIL.Image.fromarray(rng.integers(0, 256, (32, 32, 3), np.uint8)).save(root / name)
    (root / "dataset.json").write_text(json.dumps({"labels": [["photo.png", labels[0].tolist()]]}))
    opengl, focal = to_opengl(labels[1:, :16].reshape(-1, 4, 4)), float(labels[0, 16])
    frames = [{"file_path": f"view{i}.png", "transform_matrix": m.tolist()} for i, m in enumerate(opengl)]
    blender = {"camera_angle_x": 2 * math.atan(0.5 / focal), "frames": frames}
    (root / "views" / "transforms.json").write_text(json.dumps(blender))


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> dict[str, Path]:
    """One tiny dataset, one tiny trained run, a feature network and photo folders."""
    root = tmp_path_factory.mktemp("docs")
    data = root / "heads32.zip"
    synth_dataset(str(data), "heads", 16, 32, workers=1, progress=False)
    folder = root / "heads32"
    folder.mkdir()
    with __import__("zipfile").ZipFile(data) as archive:
        archive.extractall(folder)
    argv = ["train", "tiny-mimic3d-heads", *TINY, f"data.path={data}", "--outdir", str(root / "runs")]
    assert main([*argv, "--max-steps", "1", "--no-progress"]) == 0
    run = root / "runs" / "00000-tiny-mimic3d-heads"
    single = mimic3d.save(root / "tiny.safetensors", mimic3d.load(run))
    features = root / "features.pt"
    torch.jit.save(torch.jit.script(ChannelStats()), str(features))
    photos = root / "photos-src"
    photos.mkdir()
    _write_photos(photos)
    aligned = root / "aligned"
    aligned.mkdir()
    _write_aligned(aligned)
    return {
        "data": data,
        "data_folder": folder,
        "run": run,
        "single": single,
        "features": features,
        "photos": photos,
        "aligned": aligned,
    }


def _written_by(block: Block) -> set[str]:
    """Names the block's dataset commands write (those get no stand-in)."""
    written = set()
    for command in commands(block):
        words = command.split()
        if words[:3] in (["mimic3d", "dataset", "build"], ["mimic3d", "dataset", "synth"]):
            written.add(words[4] if words[2] == "build" else words[3])
    return written


def populate(folder: Path, block: Block, shared: dict[str, Path]) -> None:
    targets = {
        "dataset": shared["data"],
        "dataset folder": shared["data_folder"],
        "checkpoint": shared["single"],
        "run": shared["run"],
        "features": shared["features"],
    }
    written = _written_by(block)
    for name, kind in STAND_INS.items():
        if name not in block.body or name in written:
            continue
        path = folder / name.replace("~", "home").rstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind in ("photos", "aligned"):
            path.symlink_to(shared[kind] / path.name)
        elif kind.startswith("run folder"):
            path.mkdir()
            (path / "network-snapshot-001000").symlink_to(latest_checkpoint(shared["run"]))
        else:
            path.symlink_to(targets[kind])


def prelude(shared: dict[str, Path]) -> dict:
    from mimic3d.metrics import get_protocol

    G = mimic3d.load(shared["run"])
    reals = ImageDataset(shared["data"])
    z, c = torch.randn(8, G.z_dim), reals.camera_sampler().sample(8)
    with torch.no_grad():
        fakes = quantize_images(generator_images(G, "2d", "const")(z, c))
    return {
        "G": G,
        "my_net": torch.jit.load(str(shared["features"])),
        "real_batches": [torch.stack([reals[i][0] for i in range(8)])],
        "fake_batches": [fakes],
        "get_protocol": get_protocol,
    }


def run_command(command: str, monkeypatch) -> None:
    words = command.split()
    if re.fullmatch(r"[A-Z_]+=\S+", words[0]) and len(words) == 1:
        name, value = words[0].split("=", 1)
        monkeypatch.setenv(name, os.path.expandvars(value))
        return
    if words[0] == "mimic3d":
        try:
            status = main(words[1:])
        except SystemExit as exited:  # --help
            status = exited.code
        assert status == 0, command
        return
    if words[0] == "torchrun":
        torchrun = Path(sys.executable).with_name("torchrun")
        result = subprocess.run([str(torchrun), *words[1:]], capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        return
    raise AssertionError(f"no rule runs or skips this command: {command!r}")


@pytest.mark.parametrize("block", RUNNABLE, ids=[b.name for b in RUNNABLE])
def test_documented_block_runs(block, shared, tmp_path, monkeypatch, capsys):
    populate(tmp_path, block, shared)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MIMIC3D_CACHE", str(tmp_path / "cache"))  # never the user's weight files
    if block.language == "python":
        code, reason, _ = scaled(block.body, "python", block.document)
        if reason is not None:
            pytest.skip(reason)
        exec(compile(code, block.name, "exec"), prelude(shared))
        return
    for command in commands(block):
        command, reason, _ = scaled(command, "bash", block.document)
        if reason is None:
            run_command(command, monkeypatch)
    capsys.readouterr()


def test_every_block_is_tagged_and_every_rule_is_used():
    assert not [b.name for b in BLOCKS if b.language not in ("bash", "python", "text", "json")]
    used = set()
    for block in RUNNABLE:
        for piece in commands(block) if block.language == "bash" else [block.body]:
            used |= scaled(piece, block.language, block.document)[2]
    assert [r.pattern for r in SUBSTITUTIONS + NOT_RUNNABLE if r not in used] == []
    assert all(rule.reason for rule in SUBSTITUTIONS + NOT_RUNNABLE)


def test_readme_lists_the_dependencies_and_one_demo_length():
    with open(ROOT / "pyproject.toml", "rb") as f:
        dependencies = [re.split(r"[<>=]", d)[0] for d in tomllib.load(f)["project"]["dependencies"]]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    listed = re.search(r"The package depends on (.*?) \(`pyproject.toml`\)", readme, re.S).group(1)
    assert sorted(re.split(r",\s*|\s+and\s+", listed.replace("\n", " "))) == sorted(dependencies)
    minutes = f"{DEMO_MINUTES:g}"
    assert f"for about {minutes} minutes (`--minutes`)" in readme
    assert f"{minutes} minutes of training" in (ROOT / "docs" / "training.md").read_text(encoding="utf-8")
    assert f"{minutes} CPU minutes" in COMMANDS["demo"]
