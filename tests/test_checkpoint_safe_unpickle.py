"""The restricted reader of official network pickles: round trips on hand-built snapshots.

The snapshots are written by ``pickle.dump`` exactly as the official training loop does, with
stand-in modules registered under the official names (``torch_utils.persistence``, ``dnnlib.util``,
``training.*``) so the pickle references the same globals. The stand-ins and the embedded module
source write a marker file when executed: reading must never create it, while a plain ``pickle``
load of the same bytes does (which shows the marker works).
"""

from __future__ import annotations

import copy
import io
import json
import os
import pickle
import re
import subprocess
import sys
import types
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from mimic3d.checkpoints import ModuleRecord, RestrictedUnpickler, UnsafePickleError, read_official_pickle

FIXTURES = Path(__file__).parent / "fixtures" / "parity"
# Official classes that torch_utils.persistence does not decorate, with the module that defines
# them: pickled by reference. Every other class of the official networks is persistent.
PLAIN_CLASSES = {
    "OSGDecoder": "training.triplane",
    "ImportanceRenderer": "training.volumetric_rendering.renderer",
    "MipRayMarcher2": "training.volumetric_rendering.ray_marcher",
    "RaySampler": "training.volumetric_rendering.ray_sampler",
}
BUFFER_NAMES = {"resample_filter", "noise_const", "w_avg", "dataset_label_std"}


class MarkerFile:
    """A path that stand-in code writes to when it is executed."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def source(self) -> str:
        return f"import pathlib\npathlib.Path({str(self.path)!r}).write_text('module source executed')\n"

    def hit(self) -> None:
        self.path.write_text("stand-in executed")


def _place(module_name: str, obj: object, qualname: str) -> None:
    obj.__module__ = module_name
    obj.__qualname__ = qualname
    obj.__name__ = qualname


@contextmanager
def official_names(marker: MarkerFile) -> Iterator[types.SimpleNamespace]:
    """Register stand-ins under the official module names for the duration of a dump or load."""
    official = ("torch_utils", "torch_utils.persistence", "dnnlib", "dnnlib.util", "training",
                "training.triplane", *PLAIN_CLASSES.values())
    modules = {name: types.ModuleType(name) for name in official}

    def reconstruct(meta):
        marker.hit()
        raise RuntimeError("the persistence hook must never run")

    class EasyDict(dict):
        pass

    class OSGDecoder(torch.nn.Module):
        """Pickled by reference, like the official non-persistent classes."""

        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Softplus(), torch.nn.Linear(8, 5))
            self.hidden_dim = 8

        def __setstate__(self, state):
            marker.hit()
            super().__setstate__(state)

    plain = {}
    for class_name, module_name in PLAIN_CLASSES.items():
        if class_name != "OSGDecoder":
            plain[class_name] = type(class_name, (torch.nn.Module,), {})
            _place(module_name, plain[class_name], class_name)
            setattr(modules[module_name], class_name, plain[class_name])
    _place("torch_utils.persistence", reconstruct, "_reconstruct_persistent_obj")
    _place("dnnlib.util", EasyDict, "EasyDict")
    _place("training.triplane", OSGDecoder, "OSGDecoder")
    modules["torch_utils.persistence"]._reconstruct_persistent_obj = reconstruct
    modules["dnnlib.util"].EasyDict = EasyDict
    modules["training.triplane"].OSGDecoder = OSGDecoder
    saved = {name: sys.modules.get(name) for name in modules}
    sys.modules.update(modules)
    try:
        yield types.SimpleNamespace(
            hook=reconstruct, EasyDict=EasyDict, OSGDecoder=OSGDecoder, plain=plain, marker=marker
        )
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


class Persistent(torch.nn.Module):
    """Pickles itself the way ``torch_utils.persistence.persistent_class`` does."""

    hook = None
    source = ""
    legacy_torch = False

    def __init__(self, *args, **kwargs) -> None:
        super().__init__()
        self._init_args = copy.deepcopy(args)
        self._init_kwargs = copy.deepcopy(kwargs)

    def __reduce__(self):
        fields = list(super().__reduce__())
        state = fields[2]
        if self.legacy_torch:  # torch 1.x kept these tables as OrderedDicts
            state = dict(state)
            for key in ("_parameters", "_buffers", "_modules"):
                state[key] = OrderedDict(state[key])
        meta = dict(type="class", version=6, module_src=self.source, class_name=type(self).__name__,
                    state=state)
        return (type(self).hook, (meta,), None)


class FullyConnectedLayer(Persistent):
    def __init__(self, in_features: int, out_features: int, lr_multiplier: float = 1.0) -> None:
        super().__init__(in_features, out_features, lr_multiplier=lr_multiplier)
        self.weight = torch.nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = torch.nn.Parameter(torch.randn(out_features))
        self.weight_gain = lr_multiplier / np.sqrt(in_features)


class TriPlaneGenerator(Persistent):
    def __init__(self, names: types.SimpleNamespace, **kwargs) -> None:
        super().__init__(**kwargs)
        self.fc0 = FullyConnectedLayer(6, 4, lr_multiplier=0.01)
        self.decoder = names.OSGDecoder()
        self.superresolution = None
        self.register_buffer("w_avg", torch.randn(4))
        self.register_buffer("scratch", torch.randn(3), persistent=False)
        self.const = torch.nn.Parameter(torch.randn(2, 3, 3).transpose(1, 2))  # non-contiguous
        self.neural_rendering_resolution = 64
        self.rendering_kwargs = {"box_warp": 1, "ray_start": 2.25, "avg_camera_pivot": [0, 0, 0.2]}
        self.act_gain = np.float64(np.sqrt(2))


def build_snapshot(names: types.SimpleNamespace, legacy_torch: bool = False) -> dict:
    Persistent.hook = names.hook
    Persistent.source = names.marker.source()
    Persistent.legacy_torch = legacy_torch
    torch.manual_seed(0)
    kwargs = dict(z_dim=6, mapping_kwargs=names.EasyDict(num_layers=2), rendering_kwargs={"box_warp": 1})
    networks = {}
    for name in ("G", "D", "G_ema"):
        networks[name] = TriPlaneGenerator(names, **kwargs).eval().requires_grad_(False)
        networks[name].register_buffer("dataset_label_std", torch.rand(25))
    # copy.deepcopy would go through __reduce__ (and the hook), so G_ema is filled by hand.
    with torch.no_grad():
        for mine, source in zip(networks["G_ema"].parameters(), networks["G"].parameters()):
            mine.copy_(source + 1)
    data = dict(training_set_kwargs=dict(names.EasyDict(resolution=512, use_labels=True)))
    return {**data, **networks, "augment_pipe": None}


def write(path: Path, obj: object, protocol: int = 4) -> Path:
    with path.open("wb") as f:
        pickle.dump(obj, f, protocol=protocol)
    return path


@pytest.fixture
def names(tmp_path: Path) -> Iterator[types.SimpleNamespace]:
    with official_names(MarkerFile(tmp_path / "EXECUTED")) as ns:
        yield ns


@pytest.mark.parametrize("protocol", [2, 3, 4])
@pytest.mark.parametrize("legacy_torch", [False, True])
def test_round_trip_matches_official_state_dict(tmp_path, names, protocol, legacy_torch):
    data = build_snapshot(names, legacy_torch)
    path = write(tmp_path / "network-snapshot.pkl", data, protocol)
    snapshot = read_official_pickle(path)
    assert not names.marker.path.exists()
    for key in ("G", "D", "G_ema"):
        expected = data[key].state_dict()
        actual = snapshot[key].state_dict()
        assert list(actual) == list(expected)
        for name, tensor in expected.items():
            assert actual[name].dtype == tensor.dtype and torch.equal(actual[name], tensor), name
    assert "scratch" not in snapshot["G_ema"].state_dict()
    assert snapshot["augment_pipe"] is None
    assert snapshot["training_set_kwargs"] == {"resolution": 512, "use_labels": True}


def test_records_expose_init_kwargs_attributes_and_structure(tmp_path, names):
    path = write(tmp_path / "network-snapshot.pkl", build_snapshot(names))
    G = read_official_pickle(path)["G_ema"]
    assert not names.marker.path.exists()
    assert isinstance(G, ModuleRecord) and G.persistent and G.version == 6
    assert G.class_name == "TriPlaneGenerator" and G.module_name is None
    expected_kwargs = {"z_dim": 6, "mapping_kwargs": {"num_layers": 2}, "rendering_kwargs": {"box_warp": 1}}
    assert G.init_kwargs == expected_kwargs
    assert type(G.init_kwargs["mapping_kwargs"]) is dict
    assert G.attributes["neural_rendering_resolution"] == 64
    assert G.attributes["rendering_kwargs"]["avg_camera_pivot"] == [0, 0, 0.2]
    assert G.attributes["act_gain"] == pytest.approx(2**0.5) and type(G.attributes["act_gain"]) is float
    assert G.attributes["training"] is False
    assert "superresolution" not in G.children
    assert G.get("fc0").init_args == (6, 4) and G.get("fc0").init_kwargs == {"lr_multiplier": 0.01}
    assert G.get("fc0").attributes["weight_gain"] == pytest.approx(0.01 / 6**0.5)
    decoder = G.get("decoder")
    assert (decoder.qualified_name, decoder.persistent) == ("training.triplane.OSGDecoder", False)
    assert G.get("decoder.net.1").qualified_name == "torch.nn.modules.activation.Softplus"
    assert G.source == names.marker.source() and len(G.source_sha256) == 64
    assert [path for path, _ in G.named_records()][:3] == ["", "fc0", "decoder"]
    with pytest.raises(KeyError, match="backbone"):
        G.get("backbone.synthesis")


def test_marker_fires_when_loaded_unsafely(tmp_path, names):
    """Control: the same bytes through the standard unpickler run the pickled hook."""
    path = write(tmp_path / "network-snapshot.pkl", build_snapshot(names))
    with pytest.raises(RuntimeError, match="never run"):
        pickle.loads(path.read_bytes())
    assert names.marker.path.exists()


def test_legacy_forms_are_normalised(tmp_path, names):
    data = build_snapshot(names)
    as_tuple = read_official_pickle(write(tmp_path / "tuple.pkl", (data["G"], data["D"], data["G_ema"])))
    assert sorted(as_tuple) == ["D", "G", "G_ema", "augment_pipe", "training_set_kwargs"]
    assert as_tuple["training_set_kwargs"] is None
    assert torch.equal(as_tuple["G_ema"].state_dict()["const"], data["G_ema"].state_dict()["const"])
    only_ema = read_official_pickle(write(tmp_path / "ema.pkl", {"G_ema": data["G_ema"]}))
    assert only_ema["G"] is None and only_ema["D"] is None
    assert not names.marker.path.exists()


def test_bad_inputs_raise_clear_errors(tmp_path, names):
    with pytest.raises(FileNotFoundError, match="missing.pkl"):
        read_official_pickle(tmp_path / "missing.pkl")
    garbage = tmp_path / "garbage.pkl"
    garbage.write_bytes(b"\x80\x04this is not a pickle")
    with pytest.raises(ValueError, match="garbage.pkl"):
        read_official_pickle(garbage)
    with pytest.raises(ValueError, match="expected the dict of a network snapshot"):
        read_official_pickle(write(tmp_path / "list.pkl", [1, 2]))
    with pytest.raises(ValueError, match="no 'G_ema' network"):
        read_official_pickle(write(tmp_path / "no_ema.pkl", {"G": build_snapshot(names)["G"]}))
    with pytest.raises(ValueError, match="'D' is a int"):
        read_official_pickle(write(tmp_path / "bad_d.pkl", {"G_ema": build_snapshot(names)["G_ema"], "D": 3}))


def parity_network(names: types.SimpleNamespace, name: str, w_avg_shift: float = 0.0) -> torch.nn.Module:
    """The committed parity fixture's official G_ema as the official code builds it: the recorded
    module tree with its class names (persistent ones pickle through the hook, the others by
    reference), weights, constructor arguments and attributes."""
    info = json.loads((FIXTURES / f"{name}.json").read_text())
    weights = load_file(str(FIXTURES / info["weights_file"]))
    Persistent.hook, Persistent.source, Persistent.legacy_torch = names.hook, names.marker.source(), False
    persistent = {}
    nodes: dict[str, torch.nn.Module] = {}
    for path, class_name in info["sub_modules"].items():  # in the official named_modules() order
        if class_name == "OSGDecoder":
            node = torch.nn.Module.__new__(names.OSGDecoder)
            torch.nn.Module.__init__(node)
        elif class_name in names.plain:
            node = names.plain[class_name]()
        elif hasattr(torch.nn, class_name) and class_name != "Module":
            node = getattr(torch.nn, class_name)()
        else:
            if class_name not in persistent:
                persistent[class_name] = type(class_name, (Persistent,), {})
            node = persistent[class_name]()
        nodes[path] = node
        if path:
            parent, _, child = path.rpartition(".")
            nodes[parent].add_module(child, node)
    for key in info["state_dict_order"]:
        owner, _, leaf = key.rpartition(".")
        tensor = weights[key] + w_avg_shift if leaf == "w_avg" else weights[key]
        if leaf in BUFFER_NAMES:
            nodes[owner].register_buffer(leaf, tensor.clone())
        else:
            nodes[owner].register_parameter(leaf, torch.nn.Parameter(tensor.clone(), requires_grad=False))
    root = nodes[""]
    root._init_kwargs = copy.deepcopy(info["init_kwargs"])
    for key, value in info["attributes"].items():
        setattr(root, key, value)
    return root


@pytest.mark.parametrize("name", ["eg3d_small", "mimic3d_small"])
def test_official_structure_pickle_matches_committed_fixture(tmp_path, names, name):
    """A snapshot with the official module tree, class names and persistence records of the parity
    networks (built here from the committed fixture) reads back to the committed weights."""
    info = json.loads((FIXTURES / f"{name}.json").read_text())
    data = {
        "training_set_kwargs": names.EasyDict(info["training_set_kwargs"]),
        "G": parity_network(names, name, w_avg_shift=1.0),
        "D": None,
        "G_ema": parity_network(names, name),
        "augment_pipe": None,
    }
    snapshot = read_official_pickle(write(tmp_path / "network-snapshot.pkl", data))
    assert not names.marker.path.exists()
    G_ema = snapshot["G_ema"]
    assert (G_ema.class_name, G_ema.persistent, G_ema.version) == (info["class_name"], True, 6)
    assert G_ema.init_kwargs == info["init_kwargs"]
    resolution = info["attributes"]["neural_rendering_resolution"]
    assert G_ema.attributes["neural_rendering_resolution"] == resolution
    decoder = G_ema.get("decoder")
    assert (decoder.qualified_name, decoder.persistent) == ("training.triplane.OSGDecoder", False)
    assert G_ema.get("backbone.synthesis.b4").class_name == "SynthesisBlock"
    state = G_ema.state_dict()
    expected = load_file(str(FIXTURES / info["weights_file"]))
    assert list(state) == info["state_dict_order"]
    for key, tensor in expected.items():
        assert state[key].dtype == tensor.dtype and torch.equal(state[key], tensor), key
    w_avg = "backbone.mapping.w_avg"
    assert torch.equal(snapshot["G"].state_dict()[w_avg], state[w_avg] + 1), "G_ema must not be G"
    assert snapshot["training_set_kwargs"] == info["training_set_kwargs"]


# -- malicious pickles: refused with an error naming the global, nothing executed ----------------------


class Call:
    """Pickles as the call ``func(*args)``: the classic code-execution payload."""

    def __init__(self, func, *args) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


def payloads(marker: Path) -> dict[str, tuple[Call, str]]:
    touch = f"open({str(marker)!r}, 'w').close()"
    return {
        "system": (Call(os.system, f"touch {marker}"), f"{os.system.__module__}.system"),
        "eval": (Call(eval, touch), "builtins.eval"),
        "exec": (Call(exec, touch), "builtins.exec"),
        "popen": (Call(subprocess.Popen, ["touch", str(marker)]), "subprocess.Popen"),
    }


def refused(path: Path, pattern: str) -> None:
    with pytest.raises(UnsafePickleError, match=pattern):
        read_official_pickle(path)


@pytest.mark.parametrize("kind", ["system", "eval", "exec", "popen"])
def test_code_execution_payloads_are_refused(tmp_path, names, kind):
    payload, qualified = payloads(names.marker.path)[kind]
    top = write(tmp_path / "network-snapshot.pkl", payload)
    message = f"refusing to load '{qualified}' from network-snapshot.pkl: not an allowed global"
    refused(top, re.escape(message))
    data = build_snapshot(names)
    data["G_ema"].evil = payload  # deep inside the persistent module's state
    refused(write(tmp_path / "nested.pkl", data), re.escape(f"'{qualified}' from nested.pkl"))
    data = build_snapshot(names)
    data["G_ema"].get_submodule("fc0")._init_kwargs["hidden"] = [{"x": payload}]
    refused(write(tmp_path / "kwargs.pkl", data), re.escape(qualified))
    assert not names.marker.path.exists()


def test_payload_control_executes_under_plain_pickle(tmp_path):
    marker = tmp_path / "EXECUTED"
    pickle.loads(pickle.dumps(payloads(marker)["eval"][0]))
    assert marker.exists()


def test_persistent_ids_are_refused(tmp_path, names):
    class TorchLoadStylePickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, torch.Tensor):
                return ("storage", "FloatStorage", "0", "cpu", obj.numel())
            return None

    path = tmp_path / "network-snapshot.pkl"
    with path.open("wb") as f:
        TorchLoadStylePickler(f, protocol=4).dump(build_snapshot(names))
    refused(path, "refusing persistent id .*'storage'")
    assert not names.marker.path.exists()


def test_storage_payload_cannot_smuggle_code(tmp_path, names):
    inner = pickle.dumps(Call(os.system, f"touch {names.marker.path}"), protocol=2)
    refused(write(tmp_path / "bare.pkl", Call(torch.storage._load_from_bytes, inner)),
            re.escape(f"'{os.system.__module__}.system' from bare.pkl"))
    legacy_header = (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True})
    header = b"".join(pickle.dumps(v, protocol=2) for v in legacy_header)
    refused(write(tmp_path / "framed.pkl", Call(torch.storage._load_from_bytes, header + inner)),
            re.escape(f"'{os.system.__module__}.system' from framed.pkl"))
    assert not names.marker.path.exists()


def test_build_cannot_set_state_on_tensors(tmp_path):
    class StateOnTensor:
        def __reduce__(self):
            func, args = torch.zeros(2).__reduce_ex__(4)
            return (func, args, {"_backward_hooks": {0: print}})

    refused(write(tmp_path / "build.pkl", StateOnTensor()), "refusing to load 'builtins.print'")

    class PlainStateOnTensor:
        def __reduce__(self):
            func, args = torch.zeros(2).__reduce_ex__(4)
            return (func, args, {"x": 1})

    refused(write(tmp_path / "build2.pkl", PlainStateOnTensor()), "refusing to set the state of a Tensor")


def test_records_and_tensors_cannot_be_abused(tmp_path, names):
    refused(write(tmp_path / "args.pkl", Call(names.OSGDecoder, "rm -rf /")),
            "refusing to call training.triplane.OSGDecoder with arguments")
    storage = torch.zeros(2).untyped_storage()  # 8 bytes, decoded as uint8
    overread = Call(torch._utils._rebuild_tensor_v2, storage, 0, (1000,), (1,), False, OrderedDict())
    refused(write(tmp_path / "overread.pkl", overread), "reaches past its storage of 8")
    refused(write(tmp_path / "objects.pkl", np.array([1, "a"], dtype=object)), "numpy object dtype")
    tf_network = b"\x80\x02cdnnlib.tflib.network\nNetwork\nq\x00)\x81q\x01."
    (tmp_path / "tf.pkl").write_bytes(tf_network)
    refused(tmp_path / "tf.pkl", "TensorFlow-era StyleGAN pickles")
    assert not names.marker.path.exists()


class LegacyStorage:
    """A storage as ``TypedStorage.__reduce__`` writes it, with a chosen device location."""

    def __init__(self, values: torch.Tensor, location: str) -> None:
        self.values, self.location = values, location

    def __reduce__(self):
        class StoragePickler(pickle.Pickler):
            def persistent_id(inner, obj):
                if obj is self:
                    return ("storage", torch.FloatStorage, "0", self.location, self.values.numel(), None)
                return None

        out = io.BytesIO()
        for record in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True}):
            pickle.dump(record, out, protocol=2)
        StoragePickler(out, protocol=2).dump(self)
        pickle.dump(["0"], out, protocol=2)
        out.write(self.values.numel().to_bytes(8, "little") + self.values.numpy().tobytes())
        return (torch.storage._load_from_bytes, (out.getvalue(),))


def test_untyped_storages_and_new_dtypes(tmp_path):
    """Dtypes without a typed storage class (uint16 ...) pickle through _rebuild_tensor_v3."""
    expected = torch.arange(12, dtype=torch.int32).to(torch.uint16).reshape(3, 4)[:, 1:]
    path = write(tmp_path / "v3.pkl", expected)
    with path.open("rb") as f:
        tensor = RestrictedUnpickler(f, path.name).load()
    assert tensor.dtype == torch.uint16 and torch.equal(tensor.to(torch.int32), expected.to(torch.int32))


def test_storages_saved_on_cuda_load_on_cpu(tmp_path):
    """Official G_ema pickles can hold CUDA tensors (the renderer's plane_axes attribute follows the
    rays' device); the reader decodes the bytes and ignores the saved location."""
    values = torch.arange(6, dtype=torch.float32)
    rebuilt = Call(torch._utils._rebuild_tensor_v2, LegacyStorage(values, "cuda:0"), 1, (2, 2), (1, 2), False,
                   OrderedDict())
    path = write(tmp_path / "cuda.pkl", rebuilt)
    with path.open("rb") as f:
        tensor = RestrictedUnpickler(f, path.name).load()
    assert tensor.device.type == "cpu"
    assert torch.equal(tensor, values.as_strided((2, 2), (1, 2), 1))
    with pytest.raises(ValueError, match="expected the dict of a network snapshot"):
        read_official_pickle(path)
