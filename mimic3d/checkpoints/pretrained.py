"""Pretrained weight files: where they live, how they are fetched and verified.

Used for every third-party network mimic3d loads (LPIPS's VGG16 and heads, the FID Inception
detector). Files are looked up in one folder: an explicit one when the caller has it (``mimic3d demo
--weights-dir``, ``loss.lpips_weights_dir`` in training), else ``$MIMIC3D_CACHE``, else
``~/.cache/mimic3d``. A missing file is downloaded from its recorded URL when allowed: to a
temporary name in the same folder, checked, then renamed, so an interrupted download never leaves
a truncated file under the final name. When that is not possible, the
``FileNotFoundError`` lists every file, its URL and the exact path to put it at.

A :class:`WeightFile` whose SHA-256 (or size) is published is verified against it before use; one
without (``sha256=None``) is accepted as found, and callers record the hash they got instead.
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mimic3d.checkpoints.atomic import atomic_write

CACHE_ENV = "MIMIC3D_CACHE"
DOWNLOAD_TIMEOUT_S = 60.0
CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class WeightFile:
    """A pretrained file: its name in the folder, where it is published, and what it must contain.

    Attributes:
        filename: name looked up in the weights folder.
        url: where the file is published.
        sha256: hex SHA-256 where a source states it, else None (then recorded, not verified).
        size: size in bytes where stated, else None.
        description: what the file is, for error messages (e.g. "torchvision ImageNet VGG16, 528 MB").
    """

    filename: str
    url: str
    sha256: str | None = None
    size: int | None = None
    description: str = ""


def cache_dir() -> Path:
    """``$MIMIC3D_CACHE`` if set, else ``~/.cache/mimic3d`` (weights and cached dataset statistics)."""
    override = os.environ.get(CACHE_ENV)
    return Path(override).expanduser() if override else Path.home() / ".cache" / "mimic3d"


def weights_folder(weights_dir: str | os.PathLike | None = None) -> Path:
    """Absolute folder to look in: ``weights_dir`` when given, else :func:`cache_dir`."""
    folder = Path(weights_dir) if weights_dir is not None else cache_dir()
    return folder.expanduser().absolute()


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks (VGG16 weights are 528 MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def verify_file(path: Path, spec: WeightFile, source: str | None = None) -> str:
    """The SHA-256 of ``path``; ValueError when it (or the size) differs from what ``spec`` states.

    ``source`` names the file in the message when ``path`` is a temporary name (a download).
    """
    where = source or str(path)
    if spec.size is not None and path.stat().st_size != spec.size:
        raise ValueError(
            f"size mismatch for {where}: expected {spec.size} bytes (the published {spec.filename}), got "
            f"{path.stat().st_size}. The file is truncated or a different release; delete it and download "
            f"it again from {spec.url}."
        )
    actual = file_sha256(path)
    if spec.sha256 is not None and actual != spec.sha256:
        raise ValueError(
            f"checksum mismatch for {where}: expected sha256 {spec.sha256} (the published {spec.filename}), "
            f"got {actual}. The file is corrupt, truncated or a different release; delete it and download "
            f"it again from {spec.url}."
        )
    return actual


def download_file(spec: WeightFile, folder: Path) -> Path:
    """Fetch ``spec.url`` to ``folder / spec.filename`` atomically, verified before the final rename.

    OSError when the download fails (URLError and timeouts are OSErrors), ValueError when the
    downloaded bytes are not the published file; either way nothing is left in ``folder``.
    """
    target = folder / spec.filename

    def fetch(partial: str) -> None:
        with open(partial, "wb") as out, urllib.request.urlopen(spec.url, timeout=DOWNLOAD_TIMEOUT_S) as src:
            while chunk := src.read(CHUNK_BYTES):
                out.write(chunk)
        verify_file(Path(partial), spec, source=f"{spec.url} (downloaded)")

    atomic_write(target, fetch)
    return target


def missing_files_message(missing: Sequence[WeightFile], folder: Path, reason: str, alternative: str,
                          any_one: bool = False) -> str:
    """Instructions naming every missing file, its URL and the path to place it at.

    ``alternative`` is the closing hint (which option or variable points elsewhere); ``any_one``
    says that one of the files suffices rather than all of them.
    """
    lines = [f"{reason}. Place {'one of these files' if any_one else 'these files'} in {folder}:"]
    for spec in missing:
        about = f"  ({spec.description})" if spec.description else ""
        lines.append(f"  {folder / spec.filename}{about}")
        lines.append(f"      curl -L -o {folder / spec.filename} {spec.url}")
    lines.append(alternative)
    return "\n".join(lines)


def resolve_weight_files(specs: Sequence[WeightFile], weights_dir: str | os.PathLike | None = None,
                         download: bool = True, option: str | None = None) -> list[Path]:
    """Paths of verified local copies of all ``specs`` (downloading the missing ones if allowed).

    Raises FileNotFoundError listing every missing file when they cannot be obtained (``option``
    names how the caller's user points at another folder, e.g. ``loss.lpips_weights_dir=DIR``), and
    ValueError when a file fails its checksum.
    """
    folder = weights_folder(weights_dir)
    missing = [spec for spec in specs if not (folder / spec.filename).is_file()]
    where = f"{option} (or ${CACHE_ENV})" if option else f"${CACHE_ENV}"
    alternative = f"Or point {where} at a folder holding them. Files are verified by SHA-256."
    if missing and not download:
        raise FileNotFoundError(missing_files_message(missing, folder, "pretrained weights not found",
                                                      alternative))
    for spec in missing:
        try:
            download_file(spec, folder)
        except OSError as err:
            reason = f"could not download {spec.url} ({err})"
            raise FileNotFoundError(missing_files_message(missing, folder, reason, alternative)) from err
    paths = [folder / spec.filename for spec in specs]
    for spec, path in zip(specs, paths):
        verify_file(path, spec)
    return paths
