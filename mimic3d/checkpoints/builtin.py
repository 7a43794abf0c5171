"""Built-in models: small trained generators shipped inside the package, loadable by name.

``mimic3d.load("heads64")``, every tool command (``mimic3d generate heads64``), ``mimic3d metrics``
and ``run.init_from=heads64`` accept these names through the one checkpoint resolver
(``resolve.resolve_checkpoint``); a file or folder of the same name in the current folder wins. Each
model is one portable ``.safetensors`` file (G_ema only, its config and training record in the
header's JSON) under ``mimic3d/checkpoints/models/``, installed as package data, and its SHA-256 is
checked every time it is resolved, so a damaged install is an error, never a silently different
model. ``docs/models.md`` is the model card of each.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from mimic3d.checkpoints.pretrained import file_sha256

MODELS_FOLDER = "models"  # package data of mimic3d.checkpoints


@dataclass(frozen=True)
class BuiltinModel:
    """A shipped model: its file name in ``MODELS_FOLDER``, SHA-256 and a one-line description."""

    name: str
    filename: str
    sha256: str
    description: str


BUILTIN_MODELS: dict[str, BuiltinModel] = {
    model.name: model
    for model in (
        BuiltinModel(
            name="heads64",
            filename="heads64.safetensors",
            sha256="7743df40c4e2d507ee1e1ae5c87fc6e73c46208e66c4366af8481ddf18ff63ad",
            description="Mimic3D (both branches) trained on CPU on the procedural heads at 64x64 "
            "(docs/models.md)",
        ),
    )
}


def models_folder() -> Path:
    """The installed folder of the shipped model files."""
    return Path(str(resources.files("mimic3d.checkpoints") / MODELS_FOLDER))


def builtin_names() -> list[str]:
    """Names of the shipped models, sorted."""
    return sorted(BUILTIN_MODELS)


def is_builtin_name(text: object) -> bool:
    """Whether ``text`` is the name of a shipped model (a string, exactly as listed)."""
    return isinstance(text, str) and text in BUILTIN_MODELS


def builtin_file(name: str) -> Path:
    """The verified file of shipped model ``name``.

    ValueError for an unknown name; FileNotFoundError when the package lacks the file; ValueError when
    its SHA-256 differs from the recorded one (a damaged or modified install).
    """
    if name not in BUILTIN_MODELS:
        raise ValueError(f"unknown built-in model {name!r}; expected one of {builtin_names()}")
    model = BUILTIN_MODELS[name]
    path = models_folder() / model.filename
    if not path.is_file():
        raise FileNotFoundError(
            f"built-in model {name!r}: {path} is missing from this installation (reinstall mimic3d)"
        )
    actual = file_sha256(path)
    if actual != model.sha256:
        raise ValueError(
            f"built-in model {name!r}: {path} has sha256 {actual}, expected {model.sha256}; the file is "
            "damaged or modified (reinstall mimic3d)"
        )
    return path
