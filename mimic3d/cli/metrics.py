"""``mimic3d metrics NETWORK --data DATASET --metrics fid50k_full,...``: evaluate a generator.

StyleGAN2-ADA / EG3D's protocol (docs/metrics.md): fakes from z ~ N(0, I) without truncation,
rendered from cameras drawn from the dataset's labels, quantised to uint8 like StyleGAN; real
statistics cached per dataset state; ``--gpus N`` splits the work over N processes. Every result is
printed as a JSON line and appended to ``<run-dir>/metric-<name>.jsonl`` (default run dir: the run
folder NETWORK belongs to, else the folder holding it).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mimic3d.checkpoints.load import load
from mimic3d.checkpoints.resolve import resolve_checkpoint
from mimic3d.cli.arguments import CHECKPOINT_HELP, non_negative_int, path, positive_int
from mimic3d.data import ImageDataset
from mimic3d.metrics.custom import load_feature_network
from mimic3d.metrics.detector import FeatureExtractor, find_detector_file, load_inception
from mimic3d.metrics.distributed import rank_and_world
from mimic3d.metrics.protocols import MetricProtocol, get_protocol
from mimic3d.metrics.runner import compute_metric, generator_images, report_metric
from mimic3d.models.generator import BRANCHES
from mimic3d.nn.modulated import NOISE_MODES
from mimic3d.runtime import apply_backend_policy, default_workers, resolve_device

DEFAULT_WORKERS = default_workers(at_most=3)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "metrics",
        description="Evaluate a generator under StyleGAN/EG3D protocols (fid50k_full, kid50k_full, "
        "fid2k_full, swd16k, ...): fakes with cameras drawn from the dataset, no truncation, uint8 "
        "quantisation. Results are printed and appended to <run-dir>/metric-<name>.jsonl.",
    )
    parser.add_argument("network", type=path, help=CHECKPOINT_HELP)
    parser.add_argument(
        "--data",
        type=path,
        required=True,
        help="EG3D-format dataset (zip or folder) the model was trained on",
    )
    parser.add_argument(
        "--metrics",
        default="fid50k_full",
        help="comma-separated protocol names (default: fid50k_full); "
        "swd16k and --features runs need no downloads",
    )
    parser.add_argument(
        "--branch",
        choices=BRANCHES,
        default="2d",
        help="2d: neural render + 2D super-resolution (EG3D, Mimic3D's 2D branch); "
        "3d: Mimic3D's 3D branch rendered at full resolution (default: 2d)",
    )
    parser.add_argument(
        "--detector",
        type=path,
        default=None,
        metavar="PATH",
        help="Inception file (inception-2015-12-05.pt or pytorch-fid's .pth) "
        "(default: the cache folder, downloaded when online)",
    )
    parser.add_argument("--no-download", action="store_true", help="never download the Inception detector")
    parser.add_argument(
        "--features",
        type=path,
        default=None,
        metavar="PATH",
        help="TorchScript feature network (uint8 [N, 3, H, W] -> [N, D]) used instead of "
        "Inception; results are named <metric>_custom[<name>] (file metric-<metric>_custom-<name>.jsonl) "
        "and are not comparable with published FID/KID",
    )
    parser.add_argument(
        "--features-name",
        default=None,
        help="name of the --features network in results (default: the file's stem)",
    )
    parser.add_argument(
        "--num-gen",
        type=positive_int,
        default=None,
        help="generated images instead of the protocol's (quick runs; the result name gets _gen<N>)",
    )
    parser.add_argument(
        "--max-real",
        type=positive_int,
        default=None,
        help="real images instead of the protocol's (quick runs; the result name gets _real<N>)",
    )
    parser.add_argument(
        "--run-dir",
        type=path,
        default=None,
        help="folder for metric-<name>.jsonl (default: the run folder NETWORK belongs to, else the "
        "folder holding it)",
    )
    parser.add_argument(
        "--gpus",
        type=positive_int,
        default=1,
        help="processes to split the work over, one per GPU (CPU processes with --device cpu) (default: 1)",
    )
    parser.add_argument(
        "--device", default=None, choices=("cpu", "cuda"), help="cuda or cpu (default: cuda when available)"
    )
    parser.add_argument(
        "--tf32",
        action="store_true",
        help="allow TF32 matmuls/convolutions on GPUs: faster, but ~1e-3 off the official numerics "
        "(default: off, as EG3D)",
    )
    parser.add_argument(
        "--noise-mode",
        choices=NOISE_MODES,
        default="random",
        help="backbone noise; the EG3D protocol uses random (default: random)",
    )
    parser.add_argument(
        "--chunk-rays",
        type=positive_int,
        default=None,
        help="rays rendered at once over the batch (bounds memory of the 3D branch; "
        "default: the model's rendering.chunk_rays, or 1024 on CPU and 65536 on GPU when unset)",
    )
    parser.add_argument(
        "--batch-size", type=positive_int, default=64, help="images per feature-network call (default: 64)"
    )
    parser.add_argument(
        "--batch-gen", type=positive_int, default=4, help="images per generator call (default: 4)"
    )
    parser.add_argument(
        "--workers",
        type=non_negative_int,
        default=DEFAULT_WORKERS,
        help="processes decoding real images (0: none; default: one per spare CPU core, at most 3: "
        f"{DEFAULT_WORKERS} here)",
    )
    parser.add_argument(
        "--seed", type=non_negative_int, default=0, help="seed of latents and cameras (default: 0)"
    )
    parser.set_defaults(func=run_metrics)


@dataclass
class MetricsJob:
    """Everything one rank needs, resolved and checked before any process starts."""

    network: Path
    data: Path
    protocols: list[MetricProtocol]
    branch: str
    noise_mode: str
    device: str
    detector: Path | None
    features: Path | None
    features_name: str | None
    run_dir: Path
    chunk_rays: int | None
    batch_size: int
    batch_gen: int
    workers: int
    seed: int
    tf32: bool = False


def parse_protocols(
    text: str, num_gen: int | None = None, max_real: int | None = None
) -> list[MetricProtocol]:
    """Protocols named in a comma-separated list, with quick-run counts applied (and named)."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise ValueError("--metrics: expected a comma-separated list of metric names, got nothing")
    return [get_protocol(name).with_counts(num_gen, max_real) for name in names]


def prepare_job(args: argparse.Namespace) -> MetricsJob:
    """Check the arguments and find the feature network's file (downloading the detector if allowed)."""
    protocols = parse_protocols(args.metrics, args.num_gen, args.max_real)
    location = resolve_checkpoint(args.network)
    network, data = location.path, Path(args.data)
    if not data.exists():
        raise FileNotFoundError(f"dataset not found: {data}")
    device = resolve_device(args.device or ("cuda" if torch.cuda.is_available() else "cpu")).type
    if device == "cuda" and args.gpus > torch.cuda.device_count():
        raise ValueError(
            f"--gpus: {args.gpus} processes requested, but {torch.cuda.device_count()} GPUs are visible"
        )
    if args.features is None and args.features_name is not None:
        raise ValueError("--features-name: only meaningful with --features PATH")
    if args.features is not None and args.detector is not None:
        raise ValueError("--detector, --features: give one feature network, not both")
    needs_features = any(protocol.kind != "swd" for protocol in protocols)
    detector = features = None
    if needs_features and args.features is not None:
        features = Path(args.features).expanduser()
        if not features.is_file():
            raise FileNotFoundError(f"--features: feature network file {features} does not exist")
    elif needs_features:
        detector = find_detector_file(
            args.detector, allow_download=not args.no_download, option="--detector PATH"
        )
    run_dir = Path(args.run_dir) if args.run_dir is not None else location.results_dir
    if not run_dir.is_dir():
        raise FileNotFoundError(f"--run-dir: folder {run_dir} does not exist")
    return MetricsJob(
        network=network,
        data=data,
        protocols=protocols,
        branch=args.branch,
        noise_mode=args.noise_mode,
        device=device,
        detector=detector,
        features=features,
        features_name=args.features_name,
        run_dir=run_dir,
        chunk_rays=args.chunk_rays,
        batch_size=args.batch_size,
        batch_gen=args.batch_gen,
        workers=args.workers,
        seed=args.seed,
        tf32=args.tf32,
    )


def run_metrics(args: argparse.Namespace) -> int:
    job = prepare_job(args)
    if args.gpus == 1:
        evaluate(job, torch.device(job.device))
        return 0
    # CUDA cannot be used in forked children; CPU ranks fork, which spares each a re-import of torch.
    method = "fork" if job.device == "cpu" and "fork" in multiprocessing.get_all_start_methods() else "spawn"
    with tempfile.TemporaryDirectory() as folder:
        rendezvous = os.path.join(folder, "rendezvous")
        try:
            mp.start_processes(
                _rank_main, (args.gpus, job, rendezvous), nprocs=args.gpus, start_method=method
            )
        except mp.ProcessExitedException as err:
            if err.exit_code == 2:  # a user error, which the rank has printed
                return 2
            print(f"mimic3d metrics: error: {err}", file=sys.stderr)  # e.g. a rank killed for memory
            return 1
    return 0


def _rank_main(rank: int, world: int, job: MetricsJob, rendezvous: str) -> None:
    """One process of a ``--gpus N`` run: join the group, evaluate, exit 2 on a user error."""
    cuda = job.device == "cuda"
    if cuda:
        torch.cuda.set_device(rank)
    dist.init_process_group(
        "nccl" if cuda else "gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world
    )
    try:
        evaluate(job, torch.device("cuda", rank) if cuda else torch.device("cpu"))
    except (ValueError, FileNotFoundError) as err:
        print(f"mimic3d metrics: error (rank {rank}): {err}", file=sys.stderr)
        sys.exit(2)
    finally:
        dist.destroy_process_group()


def evaluate(job: MetricsJob, device: torch.device) -> list[dict[str, Any]]:
    """Compute and report every protocol of ``job`` on this rank; returns the JSON records."""
    apply_backend_policy(tf32=job.tf32)  # this rank may be a fresh process
    G = load(job.network, device)
    dataset = ImageDataset(job.data)
    resolution = getattr(G, "img_resolution", None)
    if resolution != dataset.resolution:
        raise ValueError(
            f"{job.data}: images are {dataset.resolution}x{dataset.resolution}, but {job.network} "
            f"generates {resolution}x{resolution}; evaluate against the dataset it was trained on"
        )
    if job.chunk_rays is not None and hasattr(G, "renderer"):  # a distilled student renders no rays
        G.renderer = G.renderer.with_options(chunk_rays=job.chunk_rays)
    extractor = build_extractor(job, device, dataset.resolution)
    metadata = {
        "network": str(job.network.absolute()),
        "data": str(job.data.absolute()),
        "branch": job.branch,
        "resolution": resolution,
        "truncation_psi": 1.0,
        "noise_mode": job.noise_mode,
        "seed": job.seed,
    }
    rank, world = rank_and_world()
    records = []
    for protocol in job.protocols:
        if rank == 0:
            print(
                f"mimic3d metrics: {protocol.name} of {job.network.name} ({job.branch} branch, "
                f"{protocol.num_gen} fakes, {world} process(es))",
                file=sys.stderr,
            )
        result = compute_metric(
            protocol,
            generator_images(G, job.branch, job.noise_mode),
            dataset.camera_sampler(),
            dataset,
            extractor if protocol.kind != "swd" else None,
            z_dim=G.z_dim,
            batch_size=job.batch_size,
            batch_gen=job.batch_gen,
            seed=job.seed,
            device=device,
            dataset_path=job.data,
            num_workers=job.workers,
            metadata=metadata,
        )
        records.append(report_metric(result, job.run_dir))
    return records


def build_extractor(job: MetricsJob, device: torch.device, resolution: int) -> FeatureExtractor | None:
    """The job's feature network: its --features file, the Inception detector, or None (SWD only)."""
    if job.features is not None:
        return load_feature_network(job.features, job.features_name, device, probe_resolution=resolution)
    if job.detector is not None:
        return load_inception(job.detector, device)
    return None

