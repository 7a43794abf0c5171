"""``mimic3d.load`` on official EG3D / Mimic3D network pickles.

The pickles are written here in the official format (``torch_utils.persistence`` reconstruction
calls carrying each module's class name and ``__dict__``) from the committed parity fixtures:
the official G_ema's constructor arguments, attributes, sub-module classes and weights, and its
outputs computed by the official code (CPU, deterministic rendering). No official code is needed.
"""

from __future__ import annotations

import json
import os
import pickle
import sys
import types
from pathlib import Path

import pytest
import torch
from numerics import assert_close, fan_in_sum
from safetensors.torch import load_file

from mimic3d.checkpoints.load import load, load_networks, save
from mimic3d.models.discriminator import DualDiscriminator, dual_discriminator_preset
from mimic3d.models.generator import TriplaneGenerator

PARITY = Path(__file__).parent / "fixtures" / "parity"
BUFFER_NAMES = {"resample_filter", "noise_const", "w_avg", "dataset_label_std"}


def _reconstruct_persistent_obj(meta):
    raise AssertionError("the persistence hook must never run")


_reconstruct_persistent_obj.__module__ = "torch_utils.persistence"


class OfficialModule(torch.nn.Module):
    """Pickles as ``torch_utils.persistence`` does: a hook call with the class name and ``__dict__``."""

    persistence_hook = staticmethod(_reconstruct_persistent_obj)

    def __init__(self, class_name: str) -> None:
        super().__init__()
        self._official_class_name = class_name
        self._init_args = ()
        self._init_kwargs = {}

    def __reduce__(self):
        state = self.__getstate__()
        class_name = state.pop("_official_class_name")
        meta = dict(
            type="class", version=6, module_src="raise SystemExit", class_name=class_name, state=state
        )
        return (self.persistence_hook, (meta,), None)


def official_network(
    class_names: dict[str, str],
    tensors: dict[str, torch.Tensor],
    init_kwargs: dict,
    attributes: dict,
    buffer_names: set[str] = BUFFER_NAMES,
    module_class: type[OfficialModule] = OfficialModule,
) -> OfficialModule:
    """A tree of stand-ins with the official module paths, classes, tensors and root fields."""
    paths = set(class_names)
    for key in tensors:
        parts = key.split(".")[:-1]
        paths.update(".".join(parts[:i]) for i in range(len(parts) + 1))
    nodes: dict[str, OfficialModule] = {}
    for path in sorted(paths, key=lambda p: (0 if not p else p.count(".") + 1, p)):
        nodes[path] = module_class(class_names.get(path, "Module"))
        if path:
            parent, _, name = path.rpartition(".")
            nodes[parent].add_module(name, nodes[path])
    for key, tensor in tensors.items():
        owner, _, name = key.rpartition(".")
        if name in buffer_names:
            nodes[owner].register_buffer(name, tensor)
        else:
            nodes[owner].register_parameter(name, torch.nn.Parameter(tensor, requires_grad=False))
    root = nodes[""]
    root._init_kwargs = dict(init_kwargs)
    for name, value in attributes.items():
        if name != "training":
            setattr(root, name, value)
    return root.eval()


def write_snapshot(path: Path, monkeypatch, **networks) -> Path:
    module = types.ModuleType("torch_utils.persistence")
    module._reconstruct_persistent_obj = _reconstruct_persistent_obj
    monkeypatch.setitem(sys.modules, "torch_utils", types.ModuleType("torch_utils"))
    monkeypatch.setitem(sys.modules, "torch_utils.persistence", module)
    with path.open("wb") as f:
        pickle.dump(
            {"training_set_kwargs": {"resolution": 128}, **networks, "augment_pipe": None}, f, protocol=4
        )
    return path


def parity_generator(name: str) -> tuple[OfficialModule, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    info = json.loads((PARITY / f"{name}.json").read_text())
    weights = {k: v.float() for k, v in load_file(str(PARITY / f"{name}_weights.safetensors")).items()}
    io = load_file(str(PARITY / f"{name}_io.safetensors"))
    return (
        official_network(info["sub_modules"], weights, info["init_kwargs"], info["attributes"]),
        weights,
        io,
    )


def _terms(G: TriplaneGenerator) -> int:
    """G's reductions (fan_in_sum) and the compositing sum over a ray's samples."""
    return fan_in_sum(G) + G.config.rendering.num_coarse + G.config.rendering.num_importance


def _assert_weights(G: TriplaneGenerator, weights: dict[str, torch.Tensor]) -> None:
    ours = G.state_dict()
    assert sorted(ours) == sorted(weights)
    for key, tensor in weights.items():
        assert torch.equal(ours[key], tensor.reshape(ours[key].shape)), key


def test_eg3d_pickle_loads_with_legacy_planes_and_official_outputs(tmp_path, monkeypatch):
    network, weights, io = parity_generator("eg3d_small")
    path = write_snapshot(tmp_path / "network-snapshot.pkl", monkeypatch, G_ema=network)
    G = load(path)
    assert isinstance(G, TriplaneGenerator) and not G.training
    config = G.config
    assert config.rendering.convention == "eg3d" and not config.aware3d and not config.sr3d
    assert (config.img_resolution, config.triplane_resolution, config.neural_rendering_resolution) == (
        128,
        256,
        32,
    )
    assert (config.superresolution, config.sr_channels, config.mapping_layers) == ("hybrid2x", (128, 64), 1)
    assert config.rendering.num_coarse == 12 and config.rendering.num_importance == 12
    _assert_weights(G, weights)
    with torch.no_grad():
        out = G(io["z"], io["c"], noise_mode="const", perturb=False)
    # The official outputs, as in test_models_generator_parity (whose wrong variants must fail).
    for key in ("image", "image_raw", "image_depth"):
        assert_close(out[key], io[key], terms=_terms(G))


def test_mimic3d_pickle_loads_with_xyz_planes_and_official_outputs(tmp_path, monkeypatch):
    network, weights, io = parity_generator("mimic3d_small")
    path = write_snapshot(tmp_path / "network-snapshot.pkl", monkeypatch, G_ema=network)
    G = load(path)
    config = G.config
    assert config.rendering.convention == "xyz" and config.aware3d and config.sr3d
    assert (config.triplane_resolution, config.aware3d_min_resolution) == (32, 16)
    _assert_weights(G, weights)
    with torch.no_grad():
        out2d = G(io["z"], io["c"], branch="2d", noise_mode="const", perturb=False)
        out3d = G(
            io["z"], io["c"], branch="3d", noise_mode="const", perturb=False, neural_rendering_resolution=32
        )
    for key in ("image", "image_raw", "image_depth"):
        assert_close(out2d[key], io[f"2d_{key}"], terms=_terms(G))
    assert_close(out3d["image"], io["3d_image"], terms=_terms(G))
    assert_close(out3d["image_depth"], io["3d_image_depth"], terms=_terms(G))
    # Converted once, the model round-trips through our own format.
    converted = load(save(tmp_path / "converted.safetensors", G))
    assert converted.config == config
    _assert_weights(converted, weights)


def test_official_discriminator_is_imported(tmp_path, monkeypatch, tiny_discriminator_kwargs):
    torch.manual_seed(0)
    ours = DualDiscriminator(
        dual_discriminator_preset("tiny", num_fp16_res=4, conv_clamp=256.0, disc_c_noise=1.0)
    )
    init_kwargs = dict(
        tiny_discriminator_kwargs,
        img_channels=3,
        num_fp16_res=4,
        conv_clamp=256,
        disc_c_noise=1,
        block_kwargs={"freeze_layers": 0},
        mapping_kwargs={},
    )
    D = official_network({"": "DualDiscriminator"}, ours.state_dict(), init_kwargs, {})
    network, _, _ = parity_generator("eg3d_small")
    path = write_snapshot(tmp_path / "network-snapshot.pkl", monkeypatch, G_ema=network, D=D)
    loaded = load_networks(path, names=["D"])["D"]
    assert loaded.config == ours.config
    for key, tensor in ours.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], tensor), key
    init_kwargs["block_kwargs"] = {"freeze_layers": 0, "activation": "relu"}
    bad = official_network({"": "DualDiscriminator"}, ours.state_dict(), init_kwargs, {})
    path = write_snapshot(tmp_path / "bad.pkl", monkeypatch, G_ema=network, D=bad)
    with pytest.raises(
        ValueError, match=r"unsupported DualDiscriminator option\(s\) \['block_kwargs.activation'\]"
    ):
        load_networks(path, names=["D"])


def test_optional_buffers_default_with_a_warning_and_required_ones_are_refused(tmp_path, monkeypatch):
    # A G pickled outside EG3D's training loop (PTI and other tools) has no dataset_label_std.
    info = json.loads((PARITY / "eg3d_small.json").read_text())
    weights = {k: v.float() for k, v in load_file(str(PARITY / "eg3d_small_weights.safetensors")).items()}
    io = load_file(str(PARITY / "eg3d_small_io.safetensors"))
    lacking = {k: v for k, v in weights.items() if k != "dataset_label_std"}
    network = official_network(info["sub_modules"], lacking, info["init_kwargs"], info["attributes"])
    path = write_snapshot(tmp_path / "pti.pkl", monkeypatch, G_ema=network)
    with pytest.warns(UserWarning, match="no dataset_label_std buffer"):
        G = load(path)
    assert torch.equal(G.dataset_label_std, torch.zeros(25))
    with torch.no_grad():
        out = G(io["z"], io["c"], noise_mode="const", perturb=False)
    torch.testing.assert_close(out["image"], io["image"], rtol=0, atol=1e-4)  # as the parity test
    # A buffer generation needs is still required.
    del lacking["backbone.mapping.w_avg"]
    network = official_network(info["sub_modules"], lacking, info["init_kwargs"], info["attributes"])
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="missing keys: backbone.mapping.w_avg"):
        load(write_snapshot(tmp_path / "broken.pkl", monkeypatch, G_ema=network))


def test_unsupported_official_variants_are_named(tmp_path, monkeypatch):
    info = json.loads((PARITY / "mimic3d_small.json").read_text())
    weights = {k: v.float() for k, v in load_file(str(PARITY / "mimic3d_small_weights.safetensors")).items()}
    for option, value in (("triplane_act", "tanh"), ("aware3d_att", True), ("retidx", [-2, -1])):
        network = official_network(
            info["sub_modules"], weights, {**info["init_kwargs"], option: value}, info["attributes"]
        )
        path = write_snapshot(tmp_path / f"{option}.pkl", monkeypatch, G_ema=network)
        with pytest.raises(ValueError, match=f"unsupported Mimic3D option {option}="):
            load(path)
    network = official_network({"": "StyleGAN2Generator"}, {}, {}, {})
    with pytest.raises(ValueError, match="cannot import generator class 'StyleGAN2Generator'"):
        load(write_snapshot(tmp_path / "other.pkl", monkeypatch, G_ema=network))


class _Call:
    def __init__(self, func, *args) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "EXECUTED"
    path = tmp_path / "network-snapshot.pkl"
    path.write_bytes(pickle.dumps({"G_ema": _Call(os.system, f"touch {marker}")}, protocol=4))
    with pytest.raises(ValueError, match="not an allowed global"):
        load(path)
    assert not marker.exists()
