"""Read official EG3D / Mimic3D / EpiGRAF network pickles without executing the code they embed.

Official snapshots (``network-snapshot-*.pkl``) are ``pickle.dump(dict(G=..., D=..., G_ema=...,
training_set_kwargs=..., augment_pipe=...))``. Each network class is decorated by
``torch_utils.persistence``, which pickles an instance as a call
``_reconstruct_persistent_obj(meta)`` with ``meta = {type, version, module_src, class_name, state}``;
a normal unpickler would ``exec(module_src)``. Here that call is answered by building an inert
:class:`~mimic3d.checkpoints.records.ModuleRecord`, plain helper classes of the official code
(``training.*``, ``torch.nn.modules.*``) become records too, tensors are rebuilt from their bytes by
our own decoder, and every other global is refused with an error naming it.

EpiGRAF's pickles name the same hooks under ``src.`` (``src.torch_utils.persistence``,
``src.dnnlib.util.EasyDict``) and also hold its OmegaConf configs, its Adam optimisers and
``collections.defaultdict``s: configs become inert ``omegaconf_data.ConfigRecord``s (read with
``config_to_plain``), optimisers records, defaultdicts plain dicts, and the types that OmegaConf
metadata mentions (``typing.Any``, ``builtins.dict`` ...) markers that cannot be called.

The unpickler is the pure-Python ``pickle._Unpickler`` so that the BUILD opcode (which calls
``__setstate__`` on whatever object is on the stack) can be restricted as well.
"""

from __future__ import annotations

import _compat_pickle
import os
import pickle
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from torch import Tensor

from mimic3d.checkpoints.omegaconf_data import OMEGACONF_CLASSES, ConfigRecord, config_record_type
from mimic3d.checkpoints.records import ModuleRecord, UnsafePickleError
from mimic3d.checkpoints.storage_bytes import LoadedStorage, storage_from_bytes

# Official classes that are not persistent (OSGDecoder, ImportanceRenderer, ...), torch's own
# containers and optimisers are pickled by reference; they become records and never run.
RECORD_MODULE_PREFIXES = ("training.", "src.training.", "torch.nn.modules.", "torch.optim.")
DICT_CLASSES = frozenset(
    {"dnnlib.util.EasyDict", "dnnlib.EasyDict", "src.dnnlib.util.EasyDict", "src.dnnlib.EasyDict"})
# Types that OmegaConf metadata names (ref_type, key_type, ...): kept as inert markers.
TYPE_MARKER_NAMES = frozenset(
    {"typing.Any", "builtins.dict", "builtins.list", "builtins.str", "builtins.int", "builtins.float",
     "builtins.bool", "builtins.object", "builtins.bytes", "builtins.tuple"})
TORCH_DTYPE_NAMES = frozenset(
    name for name in dir(torch)
    if not name.startswith("_") and isinstance(getattr(torch, name, None), torch.dtype))
SNAPSHOT_NETWORKS = ("G", "D", "G_ema")


class _TensorClassMarker:
    """Stands for a tensor or array class (``torch.Tensor``, ``torch.nn.Parameter``, ``numpy.ndarray``)
    that a pickle names only as an argument of a rebuild function; it cannot be instantiated."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise UnsafePickleError(f"refusing to construct {self.name} directly")


def _plain_defaultdict(default_factory: Any = None, *args: Any) -> dict:
    """``collections.defaultdict`` rebuilt as a plain dict: its pickled items follow, and the default
    factory (a marker here) is never needed to read data."""
    if args:
        raise UnsafePickleError(f"refusing collections.defaultdict with arguments {args!r}")
    return {}


_TENSOR_TYPES = {"torch.Tensor": _TensorClassMarker("torch.Tensor"),
                 "torch.nn.parameter.Parameter": _TensorClassMarker("torch.nn.parameter.Parameter")}
_NDARRAY_MARKER = _TensorClassMarker("numpy.ndarray")


class _PlainClassRecord(ModuleRecord):
    """Base of the per-class record types handed out for pickled-by-reference classes."""

    official_module = ""
    official_class = ""

    def __new__(cls, *args: Any, **kwargs: Any) -> _PlainClassRecord:
        if args or kwargs:
            raise UnsafePickleError(
                f"refusing to call {cls.official_module}.{cls.official_class} with arguments {args!r}")
        record = super().__new__(cls)
        ModuleRecord.__init__(record, cls.official_class, cls.official_module)
        return record

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Construction happens in ``__new__``; pickle may still call the class without arguments."""


class RestrictedUnpickler(pickle._Unpickler):
    """Unpickler that resolves only the globals an official network pickle needs.

    ``origin`` names the file in error messages.
    """

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file: BinaryIO, origin: str) -> None:
        super().__init__(file)
        self.origin = origin
        self._record_types: dict[str, type] = {}
        self._tensor_builders: tuple[Callable[..., Tensor], ...] = (
            self._rebuild_tensor, self._rebuild_tensor_v2, self._rebuild_tensor_v3)
        self._functions: dict[str, Any] = {
            "torch_utils.persistence._reconstruct_persistent_obj": self._persistent_record,
            "src.torch_utils.persistence._reconstruct_persistent_obj": self._persistent_record,
            "collections.defaultdict": _plain_defaultdict,
            "torch._utils._rebuild_tensor": self._rebuild_tensor,
            "torch._utils._rebuild_tensor_v2": self._rebuild_tensor_v2,
            "torch._utils._rebuild_tensor_v3": self._rebuild_tensor_v3,
            "torch._utils._rebuild_parameter": self._rebuild_parameter,
            "torch._utils._rebuild_parameter_with_state": self._rebuild_parameter,
            "torch._tensor._rebuild_from_type_v2": self._rebuild_from_type_v2,
            "torch.storage._load_from_bytes": self._storage_from_bytes,
            "torch.device": self._torch_device,
            "collections.OrderedDict": OrderedDict,
            "builtins.set": set,
            "builtins.frozenset": frozenset,
            "_codecs.encode": self._codecs_encode,
            "numpy.dtype": self._numpy_dtype,
            "numpy.ndarray": _NDARRAY_MARKER,
            "numpy.core.multiarray.scalar": self._numpy_scalar,
            "numpy._core.multiarray.scalar": self._numpy_scalar,
            "numpy.core.multiarray._reconstruct": self._numpy_reconstruct,
            "numpy._core.multiarray._reconstruct": self._numpy_reconstruct,
            **_TENSOR_TYPES,
        }

    # -- globals ---------------------------------------------------------------------------------

    def find_class(self, module: str, name: str) -> Any:
        if self.proto < 3 and self.fix_imports:
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
        qualified = f"{module}.{name}"
        if qualified in self._functions:
            return self._functions[qualified]
        if qualified in DICT_CLASSES:
            return dict
        if module == "torch" and name in TORCH_DTYPE_NAMES:
            return getattr(torch, name)
        if qualified in TYPE_MARKER_NAMES:
            return self._functions.setdefault(qualified, _TensorClassMarker(qualified))
        if qualified in OMEGACONF_CLASSES:
            if qualified not in self._record_types:
                self._record_types[qualified] = config_record_type(qualified)
            return self._record_types[qualified]
        if module.startswith(RECORD_MODULE_PREFIXES) and name.isidentifier():
            return self._record_type(module, name)
        if module.startswith("dnnlib.tflib"):
            raise UnsafePickleError(
                f"refusing to load '{qualified}' from {self.origin}: TensorFlow-era StyleGAN pickles are not "
                "EG3D/Mimic3D networks")
        raise UnsafePickleError(f"refusing to load '{qualified}' from {self.origin}: not an allowed global")

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(
            f"refusing persistent id {pid!r} in {self.origin}: network pickles do not use persistent ids")

    def _record_type(self, module: str, name: str) -> type[_PlainClassRecord]:
        key = f"{module}.{name}"
        if key not in self._record_types:
            self._record_types[key] = type(
                name, (_PlainClassRecord,), {"official_module": module, "official_class": name})
        return self._record_types[key]

    # -- the BUILD opcode: only records and numpy objects may receive state -----------------------

    def _load_build(self) -> None:
        state = self.stack.pop()
        inst = self.stack[-1]
        if isinstance(inst, ModuleRecord | ConfigRecord):
            inst.absorb_state(state, self.origin)
        elif isinstance(inst, (np.ndarray, np.dtype)):
            inst.__setstate__(state)
        else:
            raise UnsafePickleError(f"refusing to set the state of a {type(inst).__name__} in {self.origin}")

    dispatch[pickle.BUILD[0]] = _load_build

    # -- allowed callables -----------------------------------------------------------------------

    def _persistent_record(self, meta: Any) -> ModuleRecord:
        if not isinstance(meta, dict):
            raise UnsafePickleError(f"{self.origin}: persistent object metadata is a {type(meta).__name__}")
        class_name, version = meta.get("class_name"), meta.get("version")
        if meta.get("type") != "class" or not isinstance(class_name, str) or not class_name.isidentifier():
            raise UnsafePickleError(f"{self.origin}: unsupported persistent object "
                                    f"(type {meta.get('type')!r}, class {class_name!r})")
        if not isinstance(version, int):
            raise UnsafePickleError(f"{self.origin}: persistent object {class_name} has version {version!r}")
        source = meta.get("module_src", "")
        record = ModuleRecord(class_name, None, persistent=True, version=version,
                              source=source if isinstance(source, str) else "")
        record.absorb_state(meta.get("state"), self.origin)
        return record

    def _storage_from_bytes(self, data: Any) -> LoadedStorage:
        return storage_from_bytes(data, self.origin)

    def _strided(self, flat: Tensor, offset: Any, size: Any, stride: Any) -> Tensor:
        ints = (isinstance(offset, int)
                and isinstance(size, tuple) and all(isinstance(s, int) and s >= 0 for s in size)
                and isinstance(stride, tuple) and all(isinstance(s, int) and s >= 0 for s in stride))
        if not ints or len(size) != len(stride) or offset < 0:
            raise UnsafePickleError(f"{self.origin}: malformed tensor layout {offset!r} {size!r} {stride!r}")
        if 0 in size:
            return torch.empty(size, dtype=flat.dtype)
        last = offset + sum((s - 1) * st for s, st in zip(size, stride))
        if last >= flat.numel():
            raise UnsafePickleError(
                f"{self.origin}: tensor {size} at offset {offset} reaches past its storage of {flat.numel()}")
        return flat.as_strided(size, stride, offset)

    def _storage_flat(self, storage: Any) -> Tensor:
        if not isinstance(storage, LoadedStorage) or storage.flat is None:
            raise UnsafePickleError(
                f"{self.origin}: tensor rebuilt from a {type(storage).__name__}, not a storage")
        return storage.flat

    def _rebuild_tensor(self, storage: Any, offset: Any, size: Any, stride: Any) -> Tensor:
        return self._strided(self._storage_flat(storage), offset, size, stride)

    def _rebuild_tensor_v2(self, storage: Any, offset: Any, size: Any, stride: Any,
                           requires_grad: Any = False, backward_hooks: Any = None,
                           metadata: Any = None) -> Tensor:
        return self._rebuild_tensor(storage, offset, size, stride)

    def _rebuild_tensor_v3(self, storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any,
                           backward_hooks: Any, dtype: Any, metadata: Any = None) -> Tensor:
        flat = self._storage_flat(storage)
        if not isinstance(dtype, torch.dtype):
            raise UnsafePickleError(f"{self.origin}: tensor dtype {dtype!r} is not a torch dtype")
        try:
            flat = flat.view(torch.uint8).view(dtype)
        except RuntimeError as exc:
            raise UnsafePickleError(f"{self.origin}: storage cannot hold {dtype} elements ({exc})") from exc
        return self._strided(flat, offset, size, stride)

    def _rebuild_parameter(self, data: Any, requires_grad: Any, backward_hooks: Any,
                           state: Any = None) -> Tensor:
        if not isinstance(data, Tensor):
            raise UnsafePickleError(f"{self.origin}: parameter data is a {type(data).__name__}, not a tensor")
        return data

    def _rebuild_from_type_v2(self, func: Any, new_type: Any, args: Any, state: Any) -> Tensor:
        known = func in self._tensor_builders and new_type in _TENSOR_TYPES.values()
        if not known or not isinstance(args, tuple):
            raise UnsafePickleError(f"{self.origin}: refusing tensor subclass rebuild {func!r} {new_type!r}")
        return func(*args)

    def _torch_device(self, kind: Any, index: Any = None) -> torch.device:
        if not isinstance(kind, str) or not (index is None or isinstance(index, int)):
            raise UnsafePickleError(f"{self.origin}: malformed torch.device({kind!r}, {index!r})")
        return torch.device(kind) if index is None else torch.device(kind, index)

    def _codecs_encode(self, text: Any, encoding: Any = "utf-8") -> bytes:
        if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
            raise UnsafePickleError(
                f"{self.origin}: refusing _codecs.encode({type(text).__name__}, {encoding!r})")
        return text.encode("latin1")

    def _numpy_dtype(self, spec: Any, align: Any = False, copy: Any = False) -> np.dtype:
        if not isinstance(spec, str):
            raise UnsafePickleError(f"{self.origin}: numpy dtype spec {spec!r} is not a string")
        dtype = np.dtype(spec, align=bool(align), copy=bool(copy))
        if dtype.hasobject:
            raise UnsafePickleError(f"{self.origin}: refusing numpy object dtype {spec!r}")
        return dtype

    def _numpy_scalar(self, dtype: Any, data: Any) -> Any:
        if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, (bytes, bytearray)):
            raise UnsafePickleError(f"{self.origin}: refusing numpy scalar of {dtype!r}")
        if len(data) != dtype.itemsize:
            raise UnsafePickleError(f"{self.origin}: numpy scalar of {dtype} has {len(data)} bytes")
        return np.frombuffer(bytes(data), dtype=dtype)[0].item()

    def _numpy_reconstruct(self, cls: Any, shape: Any, typecode: Any) -> np.ndarray:
        if cls is not _NDARRAY_MARKER:
            raise UnsafePickleError(f"{self.origin}: refusing numpy reconstruction of {cls!r}")
        # The BUILD opcode that follows sets shape, dtype and data through ndarray.__setstate__.
        return np.empty(0, dtype=np.uint8)


def _as_snapshot(data: Any, origin: str) -> dict[str, Any]:
    """The training-loop dict, with the fields that old pickles lack filled in as ``None``."""
    if isinstance(data, tuple) and len(data) == 3 and all(isinstance(net, ModuleRecord) for net in data):
        data = dict(zip(SNAPSHOT_NETWORKS, data))
    if not isinstance(data, dict):
        raise ValueError(f"{origin}: holds a {type(data).__name__}, expected the dict of a network snapshot")
    snapshot = dict(data)
    for key in ("G", "D", "training_set_kwargs", "augment_pipe"):
        snapshot.setdefault(key, None)
    if not isinstance(snapshot.get("G_ema"), ModuleRecord):
        raise ValueError(f"{origin}: has no 'G_ema' network (keys: {sorted(map(str, data))})")
    for key in ("G", "D", "augment_pipe", "D_patch"):
        if snapshot.get(key) is not None and not isinstance(snapshot[key], ModuleRecord):
            raise ValueError(f"{origin}: '{key}' is a {type(snapshot[key]).__name__}, expected a network")
    if snapshot["training_set_kwargs"] is not None and not isinstance(snapshot["training_set_kwargs"], dict):
        raise ValueError(f"{origin}: 'training_set_kwargs' is not a dict")
    return snapshot


def read_official_pickle(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read an official EG3D/Mimic3D/EpiGRAF network pickle as inert records; no pickled code runs.

    Returns ``{"G_ema": ModuleRecord, "G": ..., "D": ..., "training_set_kwargs": dict | None,
    "augment_pipe": ...}`` plus any other entry of the file (Mimic3D stage 2 adds ``"D_patch"``).
    ``record.state_dict()`` gives the official ``state_dict()`` names and tensors,
    ``record.init_kwargs`` the constructor arguments, ``record.attributes`` the rest (for example
    ``neural_rendering_resolution`` and ``rendering_kwargs`` of a generator).

    Raises FileNotFoundError for a missing file, UnsafePickleError (a ValueError) naming the global
    or construct the pickle asked for when it is not allowed, and ValueError for anything else that
    is not a network snapshot.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"network pickle not found: {path}")
    with path.open("rb") as f:
        try:
            data = RestrictedUnpickler(f, path.name).load()
        except ValueError as exc:
            if path.name in str(exc):
                raise
            kind = UnsafePickleError if isinstance(exc, UnsafePickleError) else ValueError
            raise kind(f"{path.name}: not a readable network pickle ({exc})") from exc
        except Exception as exc:
            raise ValueError(
                f"{path.name}: not a readable network pickle ({type(exc).__name__}: {exc})") from exc
    return _as_snapshot(data, path.name)
