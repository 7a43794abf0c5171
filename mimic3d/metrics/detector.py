"""Feature extractors for FID/KID: the standard Inception detector and caller-supplied networks.

Every metric sees one interface, :class:`FeatureExtractor`: uint8 images [N, 3, H, W] in, float32
features [N, D] out. :func:`load_inception` builds the standard one from either public form of
TensorFlow's 2015-12-05 Inception-v3:

- ``inception-2015-12-05.pt``: NVIDIA's TorchScript detector (StyleGAN2-ADA, StyleGAN3, EG3D),
  loaded with ``torch.jit.load`` and called as ``detector(uint8 images, return_features=True)``;
- ``pt_inception-2015-12-05-6726825d.pth``: pytorch-fid's plain state dict, loaded with
  ``torch.load(weights_only=True)`` into :class:`~mimic3d.metrics.inception.FIDInceptionV3`.

Files are looked up in the cache folder (``$MIMIC3D_CACHE``, default ``~/.cache/mimic3d``) or
given by path, and downloaded into the cache when the machine is online
(:mod:`mimic3d.checkpoints.pretrained`). Nothing is unpickled:
EG3D's ``inception-2015-12-05.pkl`` is a Python pickle and is refused with a pointer to the ``.pt``.
"""

from __future__ import annotations

import os
import warnings
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mimic3d.checkpoints.pretrained import (
    CACHE_ENV,
    WeightFile,
    cache_dir,
    download_file,
    file_sha256,
    missing_files_message,
    verify_file,
)
from mimic3d.metrics.inception import FEATURE_DIM, NUM_CLASSES, FIDInceptionV3

DETECTOR_NAME = "inception-2015-12-05"

# Preferred first: the TorchScript detector is what StyleGAN2-ADA/StyleGAN3/EG3D numbers use.
# NVIDIA publishes no hash for it, so its SHA-256 is recorded with every result instead.
DETECTOR_FILES: tuple[WeightFile, ...] = (
    WeightFile(
        filename="inception-2015-12-05.pt",
        url="https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt",
        description="NVIDIA's TorchScript detector",
    ),
    WeightFile(
        filename="pt_inception-2015-12-05-6726825d.pth",
        url="https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
            "pt_inception-2015-12-05-6726825d.pth",
        sha256="6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2",
        size=95_628_359,
        description="pytorch-fid's state dict",
    ),
)


def official_file(path: Path) -> WeightFile | None:
    """The official entry whose file name ``path`` carries, if any."""
    return next((entry for entry in DETECTOR_FILES if entry.filename == path.name), None)


def missing_detector_message(folder: Path, reason: str, option: str | None = None) -> str:
    """The error text that tells a user which file to place where; ``option`` is how the caller's
    user names a file directly (``--detector PATH`` for ``mimic3d metrics``), if there is a way."""
    hint = f"Or set ${CACHE_ENV} to a folder holding one"
    hint += f", or pass the file with {option}." if option else "."
    return missing_files_message(DETECTOR_FILES, folder, f"no Inception detector found ({reason})", hint,
                                 any_one=True)


def find_detector_file(path: str | os.PathLike | None = None, allow_download: bool = True,
                       option: str | None = None) -> Path:
    """The detector file to use: ``path`` if given, else the first official file in the cache folder,
    else a fresh download; FileNotFoundError naming the files and the folder when none can be had
    (and ``option``, the caller's way to name a file, see ``missing_detector_message``)."""
    if path is not None:
        path = Path(path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"detector file {path} does not exist")
        return path
    folder = cache_dir()
    for entry in DETECTOR_FILES:
        if (folder / entry.filename).is_file():
            return folder / entry.filename
    if not allow_download:
        raise FileNotFoundError(missing_detector_message(folder, "downloads disabled", option))
    failures = []
    for entry in DETECTOR_FILES:
        try:
            return download_file(entry, folder)
        except (OSError, ValueError) as err:  # unreachable, or not the published bytes: try the next
            failures.append(f"{entry.filename}: {err}")
    raise FileNotFoundError(
        missing_detector_message(folder, "download failed: " + "; ".join(failures), option)
    )


def is_torchscript_archive(path: Path) -> bool:
    """TorchScript archives are zips with a ``code/`` folder; ``torch.save`` zips have none."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name for name in archive.namelist())


def load_torchscript(path: Path, device: torch.device) -> torch.jit.ScriptModule:
    """A TorchScript module in eval mode (no Python code runs); ValueError naming an unreadable file."""
    with warnings.catch_warnings():  # TorchScript is deprecated, but it is the detector's (code-free) format
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return torch.jit.load(str(path), map_location=device).eval()
        except (RuntimeError, ValueError) as err:
            raise ValueError(f"{path}: cannot be read as a TorchScript archive ({err})") from None


def expected_state_shapes() -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape of pytorch-fid's file, classifier included."""
    with torch.device("meta"):  # shapes only: skip allocating and initialising 22M weights
        model = FIDInceptionV3()
    shapes = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    shapes["fc.weight"] = (NUM_CLASSES, FEATURE_DIM)
    shapes["fc.bias"] = (NUM_CLASSES,)
    return shapes


def inception_from_state_dict(state: Any, where: str) -> FIDInceptionV3:
    """:class:`FIDInceptionV3` filled from pytorch-fid-named tensors; ValueError naming bad keys.

    The classifier (``fc.*``) and BatchNorm's ``num_batches_tracked`` counters may be absent: the
    pool3 features use neither.
    """
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{where}: expected a state dict (name -> tensor), got {type(state).__name__}")
    expected = expected_state_shapes()
    optional = {key for key in expected if key.startswith("fc.") or key.endswith("num_batches_tracked")}
    unexpected = sorted(set(state) - set(expected))
    missing = sorted(set(expected) - set(state) - optional)
    wrong = sorted(key for key in set(state) & set(expected) if tuple(state[key].shape) != expected[key])
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} tensors (e.g. {', '.join(missing[:3])})")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} tensors (e.g. {', '.join(unexpected[:3])})")
    if wrong:
        key = wrong[0]
        problems.append(f"{len(wrong)} tensors with wrong shapes (e.g. {key}: {list(state[key].shape)}, "
                        f"expected {list(expected[key])})")
    if problems:
        raise ValueError(f"{where}: not an FID Inception-v3 state dict (pytorch-fid names): "
                         + "; ".join(problems))
    own = {key: value.float() if value.is_floating_point() else value
           for key, value in state.items() if not key.startswith("fc.")}
    for key in optional - set(state):
        if key.endswith("num_batches_tracked"):
            own[key] = torch.tensor(0)
    with torch.device("meta"):  # the file provides every tensor; no point initialising them first
        model = FIDInceptionV3()
    model.load_state_dict(own, strict=True, assign=True)
    return model.eval().requires_grad_(False)


def describe_tensor(x: Any) -> str:
    """``"torch.uint8 [2, 3, 8, 8]"`` for tensors, the type name for anything else (for error messages)."""
    if isinstance(x, Tensor):
        return f"{x.dtype} {list(x.shape)}"
    return type(x).__name__


class FeatureExtractor:
    """uint8 images [N, C, H, W] (C = 1 or 3) -> float32 features [N, D] on the CPU.

    Args:
        fn: the network call, given uint8 [N, 3, H, W] on ``device``; returns [N, D].
        name: detector name recorded with every result; metrics computed with a ``standard``
            extractor carry protocol names (``fid50k_full``), others are marked ``custom[name]``.
        feature_dim: D, checked on every call when given.
        device: where ``fn`` runs.
        standard: True only for the FID Inception network (set by :func:`load_inception`).
        info: provenance written into results (file, form, SHA-256 ...).
        module: the network behind ``fn``, when there is one (for inspection and ``.to``).
    """

    def __init__(self, fn: Callable[[Tensor], Tensor], name: str, feature_dim: int | None = None,
                 device: str | torch.device = "cpu", standard: bool = False,
                 info: Mapping[str, Any] | None = None, module: torch.nn.Module | None = None) -> None:
        if not name or any(ch in name for ch in "[]/\\\n"):
            raise ValueError(f"feature extractor name: expected a short label without []/\\, got {name!r}")
        self.fn = fn
        self.name = name
        self.feature_dim = feature_dim
        self.device = torch.device(device)
        self.standard = standard
        self.info = {"name": name, "standard": standard, **(info or {})}
        self.module = module

    def __call__(self, images: Tensor) -> Tensor:
        if not isinstance(images, Tensor) or images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"images: expected a uint8 tensor [N, C, H, W], got {describe_tensor(images)}")
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        if images.shape[1] != 3:
            raise ValueError(f"images: expected 1 or 3 channels, got {images.shape[1]}")
        with torch.no_grad():
            features = self.fn(images.to(self.device))
        expected = [images.shape[0], self.feature_dim if self.feature_dim is not None else "D"]
        if not isinstance(features, Tensor):
            raise ValueError(f"feature extractor {self.name!r} returned {type(features).__name__}, "
                             "not a tensor")
        if (features.ndim != 2 or features.shape[0] != images.shape[0]
                or (self.feature_dim is not None and features.shape[1] != self.feature_dim)):
            raise ValueError(f"feature extractor {self.name!r} returned shape {list(features.shape)}, "
                             f"expected {expected}")
        return features.detach().to("cpu", torch.float32)


def load_inception(path: str | os.PathLike | None = None, device: str | torch.device = "cpu",
                   allow_download: bool = True, option: str | None = "load_inception(path)"
                   ) -> FeatureExtractor:
    """The standard FID/KID feature extractor (2048-d pool3 of TF's 2015-12-05 Inception-v3).

    Args:
        path: a TorchScript detector or a pytorch-fid state dict; None looks in the cache folder
            (downloading there when allowed and online).
        device: where the network runs.
        allow_download: permit a download when the cache holds no detector.
        option: how the caller names a file directly, for the error when none is found (None: no way).
    """
    file = find_detector_file(path, allow_download, option).resolve()
    official = official_file(file)
    sha256 = verify_file(file, official) if official is not None else file_sha256(file)
    verified = official is not None and official.sha256 is not None
    device = torch.device(device)
    if is_torchscript_archive(file):
        module = load_torchscript(file, device)

        def fn(images: Tensor) -> Tensor:
            return module(images, return_features=True)

        form, network = "torchscript", module
    else:
        try:
            state = torch.load(file, map_location="cpu", weights_only=True)
        except Exception as err:  # any failure of the restricted unpickler means "not a state dict"
            raise ValueError(
                f"{file}: neither a TorchScript archive nor a plain state dict ({type(err).__name__}); "
                f"pickled detectors such as inception-2015-12-05.pkl are never unpickled, use "
                f"{DETECTOR_FILES[0].filename} from {DETECTOR_FILES[0].url} instead"
            ) from None
        model = inception_from_state_dict(state, str(file)).to(device)

        def fn(images: Tensor) -> Tensor:
            return model(images.to(torch.float32))

        form, network = "state_dict", model
    info = {"form": form, "file": str(file), "sha256": sha256, "verified": verified}
    extractor = FeatureExtractor(fn, DETECTOR_NAME, FEATURE_DIM, device, standard=True, info=info,
                                 module=network)
    try:  # fail at load time, not after hours of generation
        extractor(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
    except RuntimeError as err:
        raise ValueError(f"{file}: the detector fails on a test image with its calling convention "
                         f"(uint8 [N, 3, H, W], return_features=True): {err}") from None
    return extractor
