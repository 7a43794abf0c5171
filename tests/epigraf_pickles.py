"""Official-format EpiGRAF snapshots written from the committed fixtures (no official code, no omegaconf).

An EpiGRAF ``network-snapshot-*.pkl`` (universome/epigraf ``training_loop.py``) is a dict of G, D, G_ema,
augment_pipe, G_opt/D_opt (torch Adam), vis, stats and training_set_kwargs. Its networks pickle through
``src.torch_utils.persistence`` and carry the hydra config, an OmegaConf 2.0 ``DictConfig`` tree: each
container pickles as its class plus ``{_metadata, _parent, _content}``, each value as an ``AnyNode`` with
``{_metadata, _parent, _val}``, interpolations (``${dataset}``) as their text. The stand-ins below have the
same module paths, class names and ``__dict__`` layout, so the pickle stream names the same globals.
"""

from __future__ import annotations

import collections
import json
import pickle
import sys
import types
import typing
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from test_checkpoint_portable_official import BUFFER_NAMES, OfficialModule, official_network

PARITY = Path(__file__).parent / "fixtures" / "parity"
EPIGRAF_BUFFERS = BUFFER_NAMES | {"mean_camera_pose", "fourier_coefs"}


def _reconstruct_persistent_obj(meta):
    raise AssertionError("the persistence hook must never run")


_reconstruct_persistent_obj.__module__ = "src.torch_utils.persistence"


class EpigrafModule(OfficialModule):
    """A persistent EpiGRAF module: the same hook, under EpiGRAF's ``src.`` package."""

    persistence_hook = staticmethod(_reconstruct_persistent_obj)


class Metadata:
    def __init__(self, key, ref_type=typing.Any, object_type=None, flags=None) -> None:
        self.ref_type, self.object_type, self.optional, self.key = ref_type, object_type, True, key
        self.flags = dict(flags or {})
        self.resolver_cache = collections.defaultdict(dict)


class ContainerMetadata(Metadata):
    def __init__(self, key, ref_type=typing.Any, object_type=None, flags=None, key_type=None) -> None:
        super().__init__(key, ref_type, object_type, flags)
        self.key_type, self.element_type = key_type, None


class DictConfig:
    pass


class ListConfig:
    pass


class AnyNode:
    pass


class EasyDict(dict):
    pass


_STAND_INS = {
    "omegaconf.base": (Metadata, ContainerMetadata),
    "omegaconf.dictconfig": (DictConfig,),
    "omegaconf.listconfig": (ListConfig,),
    "omegaconf.nodes": (AnyNode,),
    "src.dnnlib.util": (EasyDict,),
}
for _module, _classes in _STAND_INS.items():
    for _cls in _classes:
        _cls.__module__, _cls.__qualname__ = _module, _cls.__name__


def omegaconf_tree(data, key=None, parent=None, struct: bool = False):
    """OmegaConf 2.0 nodes for plain ``data`` (the root gets ref_type dict and, if ``struct``, the flag)."""
    if isinstance(data, dict):
        node = DictConfig()
        root_options = dict(ref_type=dict, flags={"struct": True} if struct else {}) if parent is None else {}
        node.__dict__.update(_metadata=ContainerMetadata(key, **root_options), _parent=parent, _content={})
        for name, value in data.items():
            node._content[name] = omegaconf_tree(value, name, node)
        return node
    if isinstance(data, list):
        node = ListConfig()
        metadata = ContainerMetadata(key, object_type=list, key_type=int)
        node.__dict__.update(_metadata=metadata, _parent=parent, _content=[])
        node._content.extend(omegaconf_tree(value, i, node) for i, value in enumerate(data))
        return node
    node = AnyNode()
    node.__dict__.update(_metadata=Metadata(key), _parent=parent, _val=data)
    return node


def config_node(root, path: str):
    node = root
    for key in path.split("."):
        node = node._content[key]
    return node


def load_fixture(name: str) -> tuple[dict, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    info = json.loads((PARITY / f"{name}.json").read_text())
    weights = {k: v.float() for k, v in load_file(str(PARITY / info["weights_file"])).items()}
    return info, weights, load_file(str(PARITY / info["io_file"]))


def epigraf_generator_network(
    info: dict, weights: dict[str, torch.Tensor], experiment_config: dict | None = None
) -> EpigrafModule:
    """The official G_ema stand-in: module tree, weights, constructor arguments and its config node."""
    root = omegaconf_tree(experiment_config or info["experiment_config"], struct=info["config_struct"])
    cfg = config_node(root, info["config_path"])
    init_kwargs = dict(info["init_kwargs"])
    mapping_kwargs = EasyDict(init_kwargs["mapping_kwargs"])
    mapping_kwargs["mean_camera_pose"] = torch.tensor(mapping_kwargs["mean_camera_pose"])
    init_kwargs.update(cfg=cfg, mapping_kwargs=mapping_kwargs)
    network = official_network(
        info["sub_modules"], weights, init_kwargs, info["attributes"], EPIGRAF_BUFFERS, EpigrafModule
    )
    network.cfg = cfg
    return network


def epigraf_snapshot(
    info: dict, weights: dict[str, torch.Tensor], experiment_config: dict | None = None
) -> dict:
    """A full EpiGRAF snapshot dict: G_ema, a different G, a D, Adam optimisers, vis, stats."""
    G_ema = epigraf_generator_network(info, weights, experiment_config)
    # The training copy differs in every learned tensor (fixed filters and frequencies stay).
    fixed = ("resample_filter", "fourier_coefs", "mean_camera_pose")
    trained = {k: v if k.endswith(fixed) else v + 0.5 for k, v in weights.items()}
    G = epigraf_generator_network(info, trained, experiment_config)
    D = official_network(
        {"": "Discriminator"}, {"b4.fc.weight": torch.ones(4, 4)}, {}, {}, module_class=EpigrafModule
    )
    optimiser = torch.optim.Adam([torch.nn.Parameter(torch.ones(3))], lr=0.002, betas=(0.0, 0.99))
    optimiser.param_groups[0]["params"][0].grad = torch.ones(3)
    optimiser.step()
    vis = {
        "grid_size": (2, 1),
        "labels": np.zeros((2, 0), np.float32),
        "grid_z": tuple(torch.zeros(2, 4).split(1)),
    }
    stats = {"cur_nimg": 1000, "cur_tick": 1, "batch_idx": 16, "best_metric_value": float("inf")}
    return dict(
        G=G,
        D=D,
        G_ema=G_ema,
        augment_pipe=None,
        G_opt=optimiser,
        D_opt=optimiser,
        vis=vis,
        stats=stats,
        training_set_kwargs=dict(info["training_set_kwargs"]),
    )


def write_epigraf_snapshot(path: Path, monkeypatch, snapshot: dict) -> Path:
    """Pickle ``snapshot`` with the stand-in modules registered only while writing."""
    with monkeypatch.context() as patch:
        for name in ("src", "src.torch_utils", "src.dnnlib", "omegaconf"):
            patch.setitem(sys.modules, name, types.ModuleType(name))
        hook = types.ModuleType("src.torch_utils.persistence")
        hook._reconstruct_persistent_obj = _reconstruct_persistent_obj
        patch.setitem(sys.modules, hook.__name__, hook)
        for module_name, classes in _STAND_INS.items():
            module = types.ModuleType(module_name)
            for cls in classes:
                setattr(module, cls.__name__, cls)
            patch.setitem(sys.modules, module_name, module)
        with path.open("wb") as f:
            pickle.dump(snapshot, f, protocol=4)
    return path
