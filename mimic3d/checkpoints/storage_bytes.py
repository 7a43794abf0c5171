"""Decode the tensor storages embedded in a plain ``pickle.dump`` of torch tensors, without torch.load.

``TypedStorage.__reduce__`` pickles a storage as ``torch.storage._load_from_bytes(b)`` where ``b`` is
``torch.save(storage, _use_new_zipfile_serialization=False)``: the legacy torch format, i.e. five
records back to back: three small pickles (magic number, format version, sys info), a pickle of the
storage through a persistent id ``('storage', torch.<Type>Storage, key, location, numel, view)``,
a pickle of the list of storage keys, then per key an int64 element count and the raw bytes.
Those pickles are read here with an unpickler that knows nothing but the storage type names.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

import torch
from torch import Tensor

from mimic3d.checkpoints.records import UnsafePickleError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

STORAGE_DTYPES: dict[str, torch.dtype] = {
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
    "ComplexFloatStorage": torch.complex64,
    "ComplexDoubleStorage": torch.complex128,
    # Untyped storages (used for dtypes without a typed class) are bytes; the tensor gives the dtype.
    "UntypedStorage": torch.uint8,
}


class LoadedStorage:
    """A storage read from bytes: a flat tensor of its element type (``flat`` [numel])."""

    def __init__(self, dtype: torch.dtype, numel: int) -> None:
        self.dtype = dtype
        self.numel = numel
        self.flat: Tensor | None = None


class _StorageType:
    """Marker for ``torch.<Name>Storage`` inside the legacy record (never instantiated as torch's)."""

    def __init__(self, name: str) -> None:
        self.name = name


class _NoGlobalsUnpickler(pickle._Unpickler):
    """Reads the plain header pickles: no globals, no persistent ids."""

    def __init__(self, file: io.BytesIO, origin: str) -> None:
        super().__init__(file)
        self.origin = origin

    def find_class(self, module: str, name: str) -> Any:
        raise UnsafePickleError(f"refusing to load '{module}.{name}' from {self.origin}: "
                                "not an allowed global in a tensor storage")

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(
            f"refusing persistent id {pid!r} in {self.origin}: unexpected in a storage header")


class _StorageRecordUnpickler(_NoGlobalsUnpickler):
    """Reads the storage record: globals limited to storage type names, persistent ids to storages."""

    def __init__(self, file: io.BytesIO, origin: str) -> None:
        super().__init__(file, origin)
        self.storages: dict[str, LoadedStorage] = {}

    def find_class(self, module: str, name: str) -> Any:
        untyped = (module, name) == ("torch.storage", "UntypedStorage")
        if untyped or (module == "torch" and name in STORAGE_DTYPES):
            return _StorageType(name)
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
            return super().persistent_load(pid)
        _, storage_type, key, location, numel, view = pid
        well_formed = isinstance(storage_type, _StorageType) and isinstance(key, str)
        if not well_formed or not isinstance(numel, int):
            raise UnsafePickleError(f"{self.origin}: malformed storage id {pid!r}")
        if not isinstance(location, str):
            raise UnsafePickleError(f"{self.origin}: storage location {location!r} is not a string")
        if key not in self.storages:
            self.storages[key] = LoadedStorage(STORAGE_DTYPES[storage_type.name], numel)
        if view is not None:
            raise ValueError(f"{self.origin}: storage views (pre-1.0 torch pickles) are not supported")
        return self.storages[key]


def _read_exact(f: io.BytesIO, n: int, origin: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise ValueError(f"{origin}: tensor storage data is truncated ({len(data)} of {n} bytes)")
    return data


def storage_from_bytes(data: Any, origin: str) -> LoadedStorage:
    """Decode the argument of ``torch.storage._load_from_bytes`` into a :class:`LoadedStorage`."""
    if not isinstance(data, (bytes, bytearray)):
        raise UnsafePickleError(f"{origin}: storage payload is a {type(data).__name__}, expected bytes")
    if bytes(data[:2]) == b"PK":
        raise ValueError(f"{origin}: zip-format tensor storages are not used by network pickles; refusing")
    f = io.BytesIO(data)
    magic = _NoGlobalsUnpickler(f, origin).load()
    if magic != LEGACY_MAGIC:
        raise ValueError(f"{origin}: tensor storage payload is not in torch's legacy format")
    protocol = _NoGlobalsUnpickler(f, origin).load()
    if protocol != LEGACY_PROTOCOL:
        raise ValueError(f"{origin}: unsupported torch storage format version {protocol!r}")
    sys_info = _NoGlobalsUnpickler(f, origin).load()
    if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
        raise ValueError(f"{origin}: big-endian tensor storages are not supported")
    reader = _StorageRecordUnpickler(f, origin)
    result = reader.load()
    keys = _NoGlobalsUnpickler(f, origin).load()
    if not isinstance(keys, list) or set(keys) != set(reader.storages):
        raise ValueError(f"{origin}: tensor storage keys {keys!r} do not match the stored storages")
    for key in keys:
        storage = reader.storages[key]
        numel = int.from_bytes(_read_exact(f, 8, origin), "little", signed=True)
        if numel != storage.numel or numel < 0:
            raise ValueError(
                f"{origin}: storage {key} holds {numel} elements, its record says {storage.numel}")
        itemsize = torch.empty((), dtype=storage.dtype).element_size()
        raw = bytearray(_read_exact(f, numel * itemsize, origin))
        storage.flat = (torch.frombuffer(raw, dtype=storage.dtype) if raw
                        else torch.empty(0, dtype=storage.dtype))
    if not isinstance(result, LoadedStorage):
        raise UnsafePickleError(
            f"{origin}: storage payload decodes to a {type(result).__name__}, not a storage")
    return result

