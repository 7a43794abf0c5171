"""OmegaConf configs in pickles read as inert data: interpolations resolved, nothing callable."""

from __future__ import annotations

import collections
import pickle

import pytest
from epigraf_pickles import config_node, omegaconf_tree, write_epigraf_snapshot

from mimic3d.checkpoints.omegaconf_data import config_to_plain
from mimic3d.checkpoints.records import UnsafePickleError
from mimic3d.checkpoints.safe_unpickle import RestrictedUnpickler

TREE = {
    "dataset": {"resolution": 256, "name": "ffhq_${dataset.resolution}_posed", "camera": {"fov": 12.0}},
    "model": {
        "generator": {
            "dataset": "${dataset}",
            "fov": "${dataset.camera.fov}",
            "sibling": "${.dataset.resolution}",
            "betas": [0.0, 0.99],
            "cwd": "${hydra:runtime.cwd}",
            "dangling": "${nowhere.at.all}",
            "missing": "???",
        },
    },
}


def _read(tmp_path, monkeypatch, value):
    path = write_epigraf_snapshot(tmp_path / "cfg.pkl", monkeypatch, {"cfg": value})
    with path.open("rb") as f:
        return RestrictedUnpickler(f, path.name).load()["cfg"]


def test_interpolations_resolve_against_the_root_like_omegaconf(tmp_path, monkeypatch):
    root = omegaconf_tree(TREE, struct=True)
    generator = _read(tmp_path, monkeypatch, config_node(root, "model.generator"))
    plain = config_to_plain(generator)
    assert plain["dataset"] == {"resolution": 256, "name": "ffhq_256_posed", "camera": {"fov": 12.0}}
    # A whole-value interpolation keeps the type; relative ones start at the containing node and
    # follow interpolations on the way (generator.dataset -> dataset).
    assert plain["fov"] == 12.0 and isinstance(plain["fov"], float)
    assert plain["sibling"] == 256
    assert plain["betas"] == [0.0, 0.99]
    # Resolver calls and dangling references stay as their text; missing values stay "???".
    assert plain["cwd"] == "${hydra:runtime.cwd}" and plain["dangling"] == "${nowhere.at.all}"
    assert plain["missing"] == "???"


def test_interpolation_cycles_are_an_error_not_a_hang(tmp_path, monkeypatch):
    root = _read(tmp_path, monkeypatch, omegaconf_tree({"a": "${b}", "b": "${a}"}))
    with pytest.raises(ValueError, match="cycle"):
        config_to_plain(root)


class _Call:
    def __init__(self, func, *args) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


def _load_bytes(data: bytes):
    import io

    return RestrictedUnpickler(io.BytesIO(data), "evil.pkl").load()


def test_markers_and_config_records_refuse_calls():
    # typing.Any and builtin types only mark metadata: calling them is refused.
    with pytest.raises(UnsafePickleError, match="refusing to construct builtins.str"):
        _load_bytes(pickle.dumps(_Call(str, "x"), protocol=4))
    # A defaultdict becomes a plain dict: its factory is never called.
    loaded = _load_bytes(pickle.dumps(collections.defaultdict(list, {"k": [1]}), protocol=4))
    assert loaded == {"k": [1]} and type(loaded) is dict
    # Config classes never receive constructor arguments.
    from epigraf_pickles import DictConfig

    class Evil(DictConfig):
        def __reduce__(self):
            return (DictConfig, ("rm -rf /",))

    Evil.__module__, Evil.__qualname__ = "omegaconf.dictconfig", "DictConfig"
    import sys
    import types

    module = types.ModuleType("omegaconf.dictconfig")
    module.DictConfig = DictConfig
    saved = {name: sys.modules.get(name) for name in ("omegaconf", "omegaconf.dictconfig")}
    sys.modules.update({"omegaconf": types.ModuleType("omegaconf"), "omegaconf.dictconfig": module})
    try:
        data = pickle.dumps(Evil(), protocol=4)
    finally:
        for name, value in saved.items():
            if value is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = value
    with pytest.raises(UnsafePickleError, match="refusing to call omegaconf.dictconfig.DictConfig"):
        _load_bytes(data)
