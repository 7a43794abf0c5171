"""Portable checkpoints: safetensors weights plus JSON configs, no pickled code anywhere.

Each network is described by a *spec*, ``{"class_name": ..., "config": {...}}``, where
``config`` is its dataclass config as JSON; the spec alone rebuilds the module
(``class_name(config)``), and the safetensors weights fill it. Two layouts:

- folder ``ckpt/``: ``ckpt/<name>/config.json`` (the spec) and ``ckpt/<name>/model.safetensors``
  for each network (``G_ema``, ``G``, ``D``, ``D_patch``...), then ``ckpt/checkpoint.json``
  (format tag, network names, user metadata), written last so that a half-written folder is
  never mistaken for a complete one. A single network folder (``ckpt/G_ema``) also loads.
- single file ``ckpt.safetensors``: every tensor named ``<name>.<key>``; the specs and the user
  metadata are JSON strings in the safetensors header's metadata.

Every file is written to a temporary sibling and moved into place with ``os.replace``.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import struct
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from mimic3d.checkpoints.atomic import atomic_write, write_text_atomic

FORMAT_NAME = "mimic3d"
FORMAT_VERSION = 1
CHECKPOINT_FILE = "checkpoint.json"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"

# Built-in networks, imported lazily so that this module does not import every model.
_BUILTIN_MODULES: dict[str, str] = {
    "TriplaneGenerator": "mimic3d.models.generator",
    "DualDiscriminator": "mimic3d.models.discriminator",
    "PatchDiscriminator": "mimic3d.models.patch_discriminator",
    "HyperModulatedPatchDiscriminator": "mimic3d.models.patch_discriminator",
    "StudentGenerator": "mimic3d.models.student",
}
_REGISTERED: dict[str, type[nn.Module]] = {}

_MAX_LISTED_KEYS = 8


def register_model(cls: type[nn.Module]) -> type[nn.Module]:
    """Make ``cls`` loadable from portable checkpoints (usable as a class decorator).

    The class must be built as ``cls(config)`` from a dataclass config (its ``config_class``
    attribute, or the type hint of the ``config`` argument) and keep it as ``self.config``.
    """
    _REGISTERED[cls.__name__] = cls
    return cls


def model_class(class_name: str) -> type[nn.Module]:
    """The network class saved under ``class_name`` (ValueError if unknown)."""
    if class_name in _REGISTERED:
        return _REGISTERED[class_name]
    if class_name in _BUILTIN_MODULES:
        return getattr(importlib.import_module(_BUILTIN_MODULES[class_name]), class_name)
    known = sorted(set(_BUILTIN_MODULES) | set(_REGISTERED))
    raise ValueError(f"unknown network class_name {class_name!r}; expected one of {known}")


def config_class_of(cls: type[nn.Module]) -> type:
    """The dataclass that configures ``cls``."""
    config_cls = getattr(cls, "config_class", None)
    if config_cls is None:
        config_cls = typing.get_type_hints(cls.__init__).get("config")
    if config_cls is None or not dataclasses.is_dataclass(config_cls):
        raise ValueError(
            f"{cls.__name__} has no dataclass config (a `config_class` attribute or a typed "
            "`config` argument of __init__)"
        )
    return config_cls


# ----------------------------------------------------------------------------- configs <-> JSON


def config_to_dict(config: Any) -> dict[str, Any]:
    """A dataclass config as plain JSON data (nested dataclasses become dicts, tuples lists)."""
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise ValueError(f"expected a dataclass config instance, got {type(config).__name__}")
    data = dataclasses.asdict(config)
    json.dumps(data, allow_nan=True)  # fail here, not half-way through a write, on non-JSON fields
    return data


def config_from_dict(config_cls: type, data: Any, where: str = "config") -> Any:
    """Rebuild ``config_cls`` from JSON data, checking every field's name and type.

    Missing fields take their defaults (older checkpoints stay loadable); unknown fields and
    wrongly typed values raise ValueError naming the field, e.g. ``G_ema config.rendering.ray_start``.
    """
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a JSON object for {config_cls.__name__}, got {_describe(data)}")
    fields = {f.name: f for f in dataclasses.fields(config_cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(
            f"{where}: unknown field(s) {unknown} for {config_cls.__name__}; "
            f"expected a subset of {sorted(fields)}"
        )
    hints = typing.get_type_hints(config_cls)
    values = {}
    for name, field in fields.items():
        if name in data:
            values[name] = _convert(hints[name], data[name], f"{where}.{name}")
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ValueError(f"{where}: required field {name!r} of {config_cls.__name__} is missing")
    try:
        return config_cls(**values)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: invalid {config_cls.__name__}: {err}") from err


def check_field_value(hint: Any, value: Any, where: str) -> None:
    """ValueError naming ``where`` unless ``value`` (parsed JSON/YAML) fits a field of type ``hint``."""
    _convert(hint, value, where)


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:60] + '...' if len(text) > 60 else text}"


def _convert(hint: Any, value: Any, where: str) -> Any:
    """``value`` (parsed JSON) as an instance of the type ``hint``, or ValueError naming ``where``."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in args:
            if option is type(None):
                continue
            try:
                return _convert(option, value, where)
            except ValueError as err:
                errors.append(str(err))
        raise ValueError(
            errors[0] if len(errors) == 1 else f"{where}: {_describe(value)} matches none of {hint}"
        )
    if origin is typing.Literal:
        if value not in args:
            raise ValueError(f"{where}: expected one of {list(args)}, got {_describe(value)}")
        return value
    if dataclasses.is_dataclass(hint):
        return config_from_dict(hint, value, where)
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            raise ValueError(f"{where}: expected a list, got {_describe(value)}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ValueError(f"{where}: expected {len(args)} entries, got {len(value)}")
            items = [_convert(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value))]
        else:
            item_hint = args[0] if args else Any
            items = [_convert(item_hint, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected an object, got {_describe(value)}")
        value_hint = args[1] if args else Any
        return {k: _convert(value_hint, v, f"{where}[{k!r}]") for k, v in value.items()}
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where}: expected a bool, got {_describe(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where}: expected an int, got {_describe(value)}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{where}: expected a number, got {_describe(value)}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ValueError(f"{where}: expected a string, got {_describe(value)}")
        return value
    if hint is type(None):
        if value is not None:
            raise ValueError(f"{where}: expected null, got {_describe(value)}")
        return None
    raise ValueError(f"{where}: field type {hint} cannot be read from JSON")


# ----------------------------------------------------------------------------- networks <-> specs


def network_spec(module: nn.Module, name: str = "network") -> dict[str, Any]:
    """``{"class_name", "config"}`` for a network built from a dataclass config."""
    config = getattr(module, "config", None)
    if config is None or not dataclasses.is_dataclass(config):
        raise ValueError(
            f"cannot save {name} ({type(module).__name__}): it has no dataclass `config` attribute"
        )
    class_name = type(module).__name__
    if model_class(class_name) is not type(module):
        raise ValueError(
            f"cannot save {name}: {class_name} is not the registered class of that name; "
            "decorate it with mimic3d.checkpoints.portable.register_model"
        )
    return {"class_name": class_name, "config": config_to_dict(config)}


def build_network(spec: Any, where: str = "network") -> nn.Module:
    """A freshly initialised network from its spec (weights not loaded)."""
    if not isinstance(spec, dict) or set(spec) != {"class_name", "config"}:
        got = sorted(spec) if isinstance(spec, dict) else _describe(spec)
        raise ValueError(f"{where}: expected an object with keys ['class_name', 'config'], got {got}")
    if not isinstance(spec["class_name"], str):
        raise ValueError(f"{where}.class_name: expected a string, got {_describe(spec['class_name'])}")
    cls = model_class(spec["class_name"])
    config = config_from_dict(config_class_of(cls), spec["config"], f"{where} config")
    return cls(config)


def assign_weights(module: nn.Module, tensors: Mapping[str, torch.Tensor], where: str = "network") -> None:
    """Copy ``tensors`` into ``module`` exactly; ValueError naming missing, unexpected or misshaped keys."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    misshaped = [
        f"{k} (file {list(tensors[k].shape)}, model {list(expected[k].shape)})"
        for k in sorted(set(expected) & set(tensors))
        if tensors[k].shape != expected[k].shape
    ]
    problems = [
        f"{label}: {_listing(keys)}"
        for label, keys in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("wrong shapes", misshaped),
        )
        if keys
    ]
    if problems:
        raise ValueError(f"{where}: weights do not match {type(module).__name__}; " + "; ".join(problems))
    module.load_state_dict(dict(tensors), strict=True)


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:_MAX_LISTED_KEYS])
    return shown + (f" and {len(keys) - _MAX_LISTED_KEYS} more" if len(keys) > _MAX_LISTED_KEYS else "")


def _tensors_of(module: nn.Module) -> dict[str, torch.Tensor]:
    # Clones: safetensors refuses tensors that share storage (views, tied weights).
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in module.state_dict().items()}


# ----------------------------------------------------------------------------- writing


def save_checkpoint(
    path: str | os.PathLike, networks: Mapping[str, nn.Module], metadata: Mapping[str, Any] | None = None
) -> Path:
    """Write ``networks`` (name -> module) to ``path``: one ``.safetensors`` file or a folder."""
    path = Path(path)
    if not networks:
        raise ValueError("save: no network given")
    for name in networks:
        if not name.isidentifier():
            raise ValueError(f"save: network name {name!r} must be a Python identifier")
    specs = {name: network_spec(module, name) for name, module in networks.items()}
    user_metadata = dict(metadata or {})
    try:
        metadata_json = json.dumps(user_metadata, sort_keys=True)
    except (TypeError, ValueError) as err:
        raise ValueError(f"save: metadata must be JSON-serialisable ({err})") from err
    if path.suffix == ".safetensors":
        tensors = {
            f"{name}.{k}": v for name, module in networks.items() for k, v in _tensors_of(module).items()
        }
        header = {
            "format": FORMAT_NAME,
            "format_version": str(FORMAT_VERSION),
            "networks": json.dumps(specs, sort_keys=True),
            "metadata": metadata_json,
        }
        atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=header))
        return path
    if path.exists() and not path.is_dir():
        raise ValueError(f"save: {path} exists and is not a folder (use a .safetensors name for one file)")
    for name, module in networks.items():
        (path / name).mkdir(parents=True, exist_ok=True)
        atomic_write(path / name / WEIGHTS_FILE, lambda tmp, m=module: save_file(_tensors_of(m), tmp))
        write_text_atomic(path / name / CONFIG_FILE, json.dumps(specs[name], indent=2, sort_keys=True) + "\n")
    index = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "networks": list(networks),
        "metadata": user_metadata,
    }
    write_text_atomic(path / CHECKPOINT_FILE, json.dumps(index, indent=2, sort_keys=True) + "\n")
    return path


# ----------------------------------------------------------------------------- reading


def is_portable_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` starts like a safetensors file (an 8-byte header length, then JSON)."""
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) < 9:
        return False
    (length,) = struct.unpack("<Q", head[:8])
    return head[8:9] == b"{" and length < 100_000_000


def load_checkpoint(
    path: str | os.PathLike, device: str | torch.device = "cpu", names: list[str] | None = None
) -> tuple[dict[str, nn.Module], dict[str, Any]]:
    """Networks (name -> module on ``device``) and user metadata from a portable checkpoint.

    ``names`` restricts which networks are built (default: all). Reads only JSON and
    safetensors; nothing is unpickled.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.is_dir():
        networks, metadata = _read_folder(path, names)
    else:
        networks, metadata = _read_file(path, names)
    return {name: module.to(device) for name, module in networks.items()}, metadata


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The user metadata of a portable checkpoint (folder or ``.safetensors``) without its weights.

    A single network folder (``ckpt/G_ema``) has none: returns {}.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.is_dir():
        if not (path / CHECKPOINT_FILE).exists():
            return {}
        index = _read_json(path / CHECKPOINT_FILE)
        metadata = index.get("metadata", {}) if isinstance(index, dict) else {}
        return metadata if isinstance(metadata, dict) else {}
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            header = f.metadata() or {}
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{path}: unreadable safetensors file (truncated or corrupted?): {err}") from err
    try:
        metadata = json.loads(header.get("metadata", "{}"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: header 'metadata' is not valid JSON ({err})") from err
    return metadata if isinstance(metadata, dict) else {}


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err


def _check_format(tag: Any, version: Any, where: str) -> None:
    if tag != FORMAT_NAME:
        raise ValueError(f"{where}: format is {tag!r}, expected {FORMAT_NAME!r}")
    if str(version) != str(FORMAT_VERSION):
        raise ValueError(f"{where}: format_version {version!r} is not supported (expected {FORMAT_VERSION})")


def _selected(available: list[str], names: list[str] | None, where: str) -> list[str]:
    if names is None:
        return available
    absent = [n for n in names if n not in available]
    if absent:
        raise ValueError(f"{where}: no network named {absent}; it holds {available}")
    return list(names)


def _read_network_folder(folder: Path, where: str) -> nn.Module:
    module = build_network(_read_json(folder / CONFIG_FILE), where)
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {weights}")
    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{weights}: unreadable safetensors file (truncated or corrupted?): {err}") from err
    assign_weights(module, tensors, where)
    return module


def _read_folder(path: Path, names: list[str] | None) -> tuple[dict[str, nn.Module], dict[str, Any]]:
    if not (path / CHECKPOINT_FILE).exists():
        if (path / CONFIG_FILE).exists():
            return {path.name: _read_network_folder(path, f"{path}")}, {}
        raise ValueError(f"{path}: not a mimic3d checkpoint folder (no {CHECKPOINT_FILE} or {CONFIG_FILE})")
    index = _read_json(path / CHECKPOINT_FILE)
    where = str(path / CHECKPOINT_FILE)
    if not isinstance(index, dict):
        raise ValueError(f"{where}: expected a JSON object")
    _check_format(index.get("format"), index.get("format_version"), where)
    available = index.get("networks")
    if not isinstance(available, list) or not all(isinstance(n, str) and n.isidentifier() for n in available):
        raise ValueError(f"{where}: 'networks' must be a list of network names")
    networks = {n: _read_network_folder(path / n, f"{path / n}") for n in _selected(available, names, where)}
    metadata = index.get("metadata", {})
    return networks, metadata if isinstance(metadata, dict) else {}


def _read_file(path: Path, names: list[str] | None) -> tuple[dict[str, nn.Module], dict[str, Any]]:
    if not is_portable_file(path):
        raise ValueError(f"{path}: not a safetensors file")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            header = f.metadata() or {}
            _check_format(header.get("format"), header.get("format_version"), str(path))
            try:
                specs = json.loads(header.get("networks", ""))
                metadata = json.loads(header.get("metadata", "{}"))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}: header 'networks'/'metadata' is not valid JSON ({err})") from err
            if not isinstance(specs, dict) or not all(isinstance(n, str) and n.isidentifier() for n in specs):
                raise ValueError(f"{path}: header 'networks' must map network names to specs")
            wanted = _selected(list(specs), names, str(path))
            keys = list(f.keys())
            strays = [k for k in keys if k.split(".", 1)[0] not in specs]
            if strays:
                raise ValueError(f"{path}: tensors of no listed network: {_listing(strays)}")
            networks = {}
            for name in wanted:
                module = build_network(specs[name], f"{path}:{name}")
                prefix = f"{name}."
                tensors = {k[len(prefix) :]: f.get_tensor(k) for k in keys if k.startswith(prefix)}
                assign_weights(module, tensors, f"{path}:{name}")
                networks[name] = module
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{path}: unreadable safetensors file (truncated or corrupted?): {err}") from err
    return networks, metadata if isinstance(metadata, dict) else {}
