"""Training presets (YAML files shipped in the package) and ``key=value`` command-line overrides.

A preset file holds a partial ``TrainConfig`` as nested mappings; fields it leaves out keep the
dataclass defaults (EG3D FFHQ 512). ``base: NAME`` starts from another preset and deep-merges
this file over it, so variants state only what differs. Overrides are dotted paths with YAML
values (``loss.r1_gamma=5``, ``schedule.gpc_prob=null``, ``generator.sr_channels=[128,64]``);
an unknown path is an error naming the path and the valid keys at that level, and a value of the
wrong type an error naming the override. Every YAML this module reads (preset files, override
values) takes any number Python's ``float()`` reads as a number (``1e-3``, ``1.0e30``, ``inf``),
which plain YAML 1.1 would keep as a string.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import typing
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from mimic3d.checkpoints.portable import check_field_value
from mimic3d.training.config import TrainConfig

PRESET_FOLDER = "presets"  # package data of mimic3d.training
BASE_KEY = "base"
MAX_BASE_DEPTH = 8

# Mimic3D's ablation (paper Table 2): imitation loss, 3D super-resolution S^3D, 3D adversarial loss.
# Without imitation, the tiny presets' extra pixel term (loss.imitation_l1) is off too.
ABLATIONS: dict[str, dict[str, Any]] = {
    "A": {
        "loss.imitation_weight": 0.0,
        "loss.imitation_l1": 0.0,
        "generator.sr3d": False,
        "loss.patch_gan": 0.0,
    },
    "B": {"loss.imitation_weight": 1.0, "generator.sr3d": False, "loss.patch_gan": 0.0},
    "C": {"loss.imitation_weight": 1.0, "generator.sr3d": True, "loss.patch_gan": 0.0},
    "D": {"loss.imitation_weight": 0.0, "loss.imitation_l1": 0.0, "generator.sr3d": True},
    "E": {"loss.imitation_weight": 1.0, "generator.sr3d": True},
}


# The tiny presets cut to a few thousand parameters: smoke tests and `make bench --quick` run every
# phase of a training step in milliseconds. The D^3D keys apply only to configs that have one.
SMOKE_OVERRIDES: tuple[str, ...] = (
    "generator.z_dim=8",
    "generator.w_dim=8",
    "generator.triplane_resolution=8",
    "generator.triplane_channels=12",
    "generator.channel_base=64",
    "generator.channel_max=8",
    "generator.sr_channels=[8,8]",
    "generator.decoder_output_dim=4",
    "generator.rendering.num_coarse=4",
    "generator.rendering.num_importance=4",
    "generator.neural_rendering_resolution=8",
    "schedule.nrr_initial=8",
    "discriminator.channel_base=64",
    "discriminator.channel_max=8",
    "discriminator.mapping_layers=2",
    "loss.density_reg_points=64",
    "run.batch_size=4",
)
SMOKE_PATCH_OVERRIDES: tuple[str, ...] = (
    "patch_discriminator.channel_base=64",
    "patch_discriminator.channel_max=8",
    "patch_discriminator.mapping_layers=2",
)
SMOKE_HYPER_OVERRIDES: tuple[str, ...] = (
    "hyper_discriminator.channel_base=64",
    "hyper_discriminator.channel_max=8",
    "hyper_discriminator.hyper_mod_dim=8",
    "hyper_discriminator.patch_embed_dim=4",
)


def smoke_overrides(config: TrainConfig) -> list[str]:
    """The smoke sizes for the networks ``config`` has (EpiGRAF: no dual discriminator, no
    super-resolution, so its decoder keeps its RGB outputs)."""
    skip = []
    if config.discriminator is None:
        skip.append("discriminator.")
    if config.generator.superresolution == "none":  # renders its images directly, at full size
        skip += [
            "generator.sr_channels",
            "generator.decoder_output_dim",
            "generator.neural_rendering_resolution",
            "schedule.nrr_initial",
        ]
    keys = [k for k in SMOKE_OVERRIDES if not k.startswith(tuple(skip))]
    if config.patch_discriminator is not None:
        keys += SMOKE_PATCH_OVERRIDES
    if config.hyper_discriminator is not None:
        keys += SMOKE_HYPER_OVERRIDES
    return keys


class ConfigLoader(yaml.SafeLoader):
    """YAML 1.1's safe loader, plus floats written as Python writes them (see the module docstring)."""


ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:(?:[0-9][0-9_]*)?\.?[0-9_]*[eE][-+]?[0-9]+|inf|infinity|nan)$", re.IGNORECASE),
    list("-+0123456789.iInN"),
)


def load_yaml(text: str) -> Any:
    """Parse YAML text with ``ConfigLoader``."""
    return yaml.load(text, Loader=ConfigLoader)  # noqa: S506 (a SafeLoader subclass)


def _preset_dir() -> Path:
    return Path(str(resources.files("mimic3d.training") / PRESET_FOLDER))


def preset_names() -> list[str]:
    """Names of the shipped presets (file names without ``.yaml``), sorted."""
    return sorted(p.stem for p in _preset_dir().glob("*.yaml"))


def preset_path(name: str) -> Path:
    path = _preset_dir() / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(f"preset: unknown name {name!r}; expected one of {preset_names()}")
    return path


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping from ``path``; ValueError naming the file when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        data = load_yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML ({err})") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of config sections, got {type(data).__name__}")
    return data


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``update`` over ``base``: mappings merge key by key, anything else replaces."""
    merged = copy.deepcopy(dict(base))
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def preset_dict(name_or_path: str, _depth: int = 0) -> dict[str, Any]:
    """The raw config mapping of a preset name or a YAML file, with its ``base`` chain resolved."""
    if _depth > MAX_BASE_DEPTH:
        raise ValueError(f"preset {name_or_path!r}: 'base' chain deeper than {MAX_BASE_DEPTH} (a cycle?)")
    is_file = name_or_path.endswith((".yaml", ".yml")) or Path(name_or_path).is_file()
    data = read_yaml(name_or_path if is_file else preset_path(name_or_path))
    base = data.pop(BASE_KEY, None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ValueError(f"preset {name_or_path!r}: 'base' must be a preset name, got {base!r}")
    return deep_merge(preset_dict(base, _depth + 1), data)


def parse_override(text: str) -> tuple[str, Any]:
    """``"loss.r1_gamma=5"`` -> ("loss.r1_gamma", 5): the value is read as YAML (``load_yaml``)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(f"override {text!r}: expected KEY=VALUE with a dotted key, e.g. loss.r1_gamma=5")
    try:
        value = load_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        raise ValueError(f"override {text!r}: value is not valid YAML ({err})") from err
    return key, value


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def _dataclass_in(hint: Any) -> type | None:
    """The dataclass a field holds (directly or as ``X | None``), else None."""
    if dataclasses.is_dataclass(hint):
        return hint
    for option in typing.get_args(hint):
        if dataclasses.is_dataclass(option):
            return option
    return None


def check_key(key: str, root: type = TrainConfig) -> Any:
    """The type of the field a dotted ``key`` names in ``root``; ValueError naming the valid keys
    when there is no such field."""
    cls: type | None = root
    parts = key.split(".")
    for depth, part in enumerate(parts):
        fields = _field_types(cls)
        if part not in fields:
            where = ".".join(parts[:depth]) or "the top level"
            raise ValueError(
                f"unknown config key {key!r}: {where} has no field {part!r}; valid keys there: "
                f"{', '.join(sorted(fields))}"
            )
        if depth < len(parts) - 1:
            cls = _dataclass_in(fields[part])
            if cls is None:
                raise ValueError(
                    f"unknown config key {key!r}: {'.'.join(parts[: depth + 1])} is not a section"
                )
    return fields[parts[-1]]


def config_value(data: Mapping[str, Any], key: str, root: type = TrainConfig) -> Any:
    """The value of dotted ``key`` in raw config ``data``, or the field's default where ``data``
    leaves it out."""
    check_key(key, root)
    node: Any = data
    cls: Any = root
    for part in key.split("."):
        field = next(f for f in dataclasses.fields(cls) if f.name == part)
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        else:
            node = field.default if field.default_factory is dataclasses.MISSING else field.default_factory()
        if dataclasses.is_dataclass(node) and not isinstance(node, type):
            node = dataclasses.asdict(node)
        cls = _dataclass_in(_field_types(cls)[part])
    return node


def apply_override(data: dict[str, Any], key: str, value: Any, source: str | None = None) -> None:
    """Set ``data[a][b][c] = value`` for ``key = "a.b.c"`` (creating sections as needed); ValueError
    naming the override (``source``, default ``key``) when the value does not fit the field's type."""
    check_field_value(check_key(key), value, f"override {source or key}")
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[parts[-1]] = value


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """A copy of ``data`` with every ``KEY=VALUE`` string applied in order."""
    data = copy.deepcopy(data)
    for text in overrides:
        apply_override(data, *parse_override(text), source=text)
    return data


def apply_ablation(data: dict[str, Any], setting: str) -> dict[str, Any]:
    """A copy of a stage-2 config switched to Mimic3D ablation setting A-E (paper Table 2)."""
    if setting not in ABLATIONS:
        raise ValueError(f"ablation: expected one of {sorted(ABLATIONS)}, got {setting!r}")
    trains_3d = config_value(data, "loss.imitation_weight") > 0 or config_value(data, "loss.patch_gan") > 0
    if not (config_value(data, "generator.sr3d") and trains_3d):
        raise ValueError(
            f"ablation: setting {setting} switches the 3D branch's losses of a Mimic3D stage-2 config "
            "(generator.sr3d with loss.imitation_weight or loss.patch_gan > 0); this config has no 3D "
            "branch training (a stage-1 or EG3D preset)"
        )
    data = copy.deepcopy(data)
    for key, value in ABLATIONS[setting].items():
        apply_override(data, key, value)
    return data


def load_config(
    preset: str, overrides: Iterable[str] = (), ablation: str | None = None
) -> tuple[TrainConfig, dict[str, Any]]:
    """The validated config of a preset name (or YAML file) with overrides, and its raw mapping."""
    data = preset_dict(preset)
    if ablation is not None:
        data = apply_ablation(data, ablation)
    data = apply_overrides(data, overrides)
    return build_config(data, overrides, f"preset {preset}"), data


def build_config(data: dict[str, Any], overrides: Iterable[str], where: str) -> TrainConfig:
    """``TrainConfig.from_dict(data)`` of ``data`` with ``overrides`` already applied; an
    inconsistency that one of them caused is blamed on that override, not on the preset
    (``override loss.r1_gamma=-1: ...``)."""
    try:
        return TrainConfig.from_dict(data, where=where)
    except ValueError as err:
        message = str(err)
        named = [m.group(1) for m in re.finditer(r"([a-z_]+(?:\.[a-z_0-9]+)+): ", message)]
        for text in reversed(list(overrides)):
            key = text.partition("=")[0].strip()
            if key in named:
                reason = message[message.index(f"{key}: ") + len(key) + 2 :]
                raise ValueError(f"override {text}: {reason}") from None
        raise


def config_to_yaml(config: TrainConfig) -> str:
    """The resolved config as YAML (what a run saves as ``config.yaml``)."""
    return yaml.safe_dump(_plain(config.to_dict()), sort_keys=False)


def _plain(value: Any) -> Any:
    """Tuples as lists so that safe_dump writes plain YAML sequences."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
