"""Pretrained weight files: where they live, how they are fetched, and how they are verified.

Files are looked up in one directory: an explicit ``weights_dir`` when given, else ``$MIMIC3D_CACHE``,
else ``~/.cache/mimic3d``. A missing file is downloaded from its recorded URL when ``download`` is
allowed (to a temporary name, checked, then renamed, so an interrupted download never leaves a
truncated file under the final name); otherwise, or when the download fails, a ``FileNotFoundError``
says exactly which files to put where. Every file is checked against its SHA-256 before use.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

CACHE_ENV = "MIMIC3D_CACHE"
DOWNLOAD_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class WeightFile:
    """A pretrained file identified by name, origin and content hash."""

    filename: str
    url: str
    sha256: str
    description: str


def default_cache_dir() -> Path:
    """``$MIMIC3D_CACHE`` if set, else ``~/.cache/mimic3d``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "mimic3d"


def file_sha256(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks (VGG16 weights are 528 MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str) -> None:
    """ValueError naming the file when its content hash is not ``expected``."""
    actual = file_sha256(path)
    if actual != expected:
        raise ValueError(
            f"checksum mismatch for {path}: expected sha256 {expected}, got {actual}. The file is "
            "corrupt, truncated or a different release; delete it and download it again."
        )


def missing_files_message(missing: Sequence[WeightFile], directory: Path, reason: str) -> str:
    """Instructions naming every missing file, its source URL and where to put it."""
    lines = [f"{reason}. Place these files in {directory}:"]
    for spec in missing:
        lines.append(f"  {directory / spec.filename}  ({spec.description})")
        lines.append(f"      curl -L -o {directory / spec.filename} {spec.url}")
    lines.append(
        f"Or point --weights-dir (or ${CACHE_ENV}) at a directory holding them. "
        "Files are verified by SHA-256."
    )
    return "\n".join(lines)


def download_file(spec: WeightFile, target: Path) -> None:
    """Fetch ``spec.url`` to ``target`` atomically, verifying the hash before the final rename."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{spec.filename}.", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(spec.url, timeout=DOWNLOAD_TIMEOUT_S) as src:
            shutil.copyfileobj(src, out)
        verify_sha256(tmp, spec.sha256)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def resolve_weight_files(
    specs: Sequence[WeightFile], weights_dir: str | Path | None = None, download: bool = True
) -> list[Path]:
    """Paths of verified local copies of ``specs`` (downloading the missing ones if allowed).

    Raises FileNotFoundError listing every missing file when they cannot be obtained, and
    ValueError when a present file fails its checksum.
    """
    directory = (
        (Path(weights_dir) if weights_dir is not None else default_cache_dir()).expanduser().absolute()
    )
    missing = [spec for spec in specs if not (directory / spec.filename).is_file()]
    if missing and not download:
        raise FileNotFoundError(missing_files_message(missing, directory, "pretrained weights not found"))
    for spec in missing:
        try:
            download_file(spec, directory / spec.filename)
        except OSError as err:  # URLError, timeouts and refused connections are all OSErrors
            raise FileNotFoundError(
                missing_files_message(missing, directory, f"could not download {spec.url} ({err})")
            ) from err
    paths = [directory / spec.filename for spec in specs]
    for spec, path in zip(specs, paths):
        verify_sha256(path, spec.sha256)
    return paths
