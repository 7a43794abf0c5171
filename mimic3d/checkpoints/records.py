"""Inert stand-ins for the modules inside an official EG3D/Mimic3D network pickle.

The restricted unpickler (``safe_unpickle``) never builds the official classes; every module in
the pickle becomes a :class:`ModuleRecord` holding what the module's ``__dict__`` held: its own
parameters, buffers and child records, the constructor arguments that ``torch_utils.persistence``
keeps, and any other attributes (``neural_rendering_resolution``, ``rendering_kwargs`` ...).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from typing import Any

from torch import Tensor


class UnsafePickleError(ValueError):
    """Raised when a pickle asks for something the restricted unpickler does not allow."""


def _is_torch_bookkeeping(key: str) -> bool:
    """Hook tables and compile caches of ``torch.nn.Module.__dict__`` carry no model data."""
    return key.startswith("_") and ("hook" in key or key == "_compiled_call_impl")


class ModuleRecord:
    """One module of an official network, as data.

    Attributes:
        class_name: class name in the official code (``"TriPlaneGenerator"``, ``"SynthesisLayer"``).
        module_name: official Python module when the pickle names it (plain classes such as
            ``training.triplane.OSGDecoder``); ``None`` for persistent classes, whose module is only
            given as source text.
        persistent: whether it was saved through ``torch_utils.persistence`` (embedded source).
        version: the persistence format version (6 for EG3D/Mimic3D), ``None`` for plain classes.
        source: the embedded module source, kept as inert text (never executed) so importers can
            tell code variants apart; empty for plain classes.
        init_args, init_kwargs: constructor arguments recorded by the persistence decorator.
        parameters, buffers: the module's own tensors (``None`` entries dropped).
        non_persistent_buffers: names of buffers that ``state_dict()`` leaves out.
        children: child records by attribute name, in registration order.
        attributes: every other attribute of the module's ``__dict__`` (``training`` included).
    """

    class_name: str
    module_name: str | None
    persistent: bool
    version: int | None
    source: str

    def __init__(self, class_name: str, module_name: str | None = None, persistent: bool = False,
                 version: int | None = None, source: str = "") -> None:
        self.class_name = class_name
        self.module_name = module_name
        self.persistent = persistent
        self.version = version
        self.source = source
        self.init_args: tuple = ()
        self.init_kwargs: dict[str, Any] = {}
        self.parameters: dict[str, Tensor] = {}
        self.buffers: dict[str, Tensor] = {}
        self.non_persistent_buffers: set[str] = set()
        self.children: dict[str, ModuleRecord] = {}
        self.attributes: dict[str, Any] = {}

    @property
    def qualified_name(self) -> str:
        return f"{self.module_name}.{self.class_name}" if self.module_name else self.class_name

    @property
    def source_sha256(self) -> str:
        return hashlib.sha256(self.source.encode()).hexdigest() if self.source else ""

    def absorb_state(self, state: Any, origin: str) -> None:
        """Fill the record from a pickled ``Module.__dict__``; ``origin`` names the file for errors."""
        if not isinstance(state, Mapping):
            raise UnsafePickleError(
                f"{origin}: state of {self.qualified_name} is a {type(state).__name__}, expected a dict")
        for key, value in state.items():
            if not isinstance(key, str):
                raise ValueError(f"{origin}: {self.qualified_name} has a non-string attribute name {key!r}")
            if key == "_parameters":
                self.parameters = _tensor_table(value, f"{self.qualified_name}._parameters", origin)
            elif key == "_buffers":
                self.buffers = _tensor_table(value, f"{self.qualified_name}._buffers", origin)
            elif key == "_modules":
                self.children = _child_table(value, self.qualified_name, origin)
            elif key == "_non_persistent_buffers_set":
                self.non_persistent_buffers = {str(name) for name in value}
            elif key == "_init_args":
                self.init_args = tuple(value)
            elif key == "_init_kwargs":
                self.init_kwargs = dict(value)
            elif not _is_torch_bookkeeping(key):
                self.attributes[key] = value

    def state_dict(self, prefix: str = "") -> dict[str, Tensor]:
        """Flat ``name -> tensor`` in the order and naming of the official ``module.state_dict()``."""
        out: dict[str, Tensor] = {}
        for name, tensor in self.parameters.items():
            out[prefix + name] = tensor
        for name, tensor in self.buffers.items():
            if name not in self.non_persistent_buffers:
                out[prefix + name] = tensor
        for name, child in self.children.items():
            out.update(child.state_dict(f"{prefix}{name}."))
        return out

    def named_records(self, prefix: str = "") -> Iterator[tuple[str, ModuleRecord]]:
        """This record and all descendants with dotted paths (``""`` for the root), depth first."""
        yield prefix, self
        for name, child in self.children.items():
            yield from child.named_records(f"{prefix}.{name}" if prefix else name)

    def get(self, path: str) -> ModuleRecord:
        """Descendant by dotted path, e.g. ``record.get("backbone.synthesis.b4")``."""
        record = self
        for part in path.split(".") if path else []:
            if part not in record.children:
                raise KeyError(f"{self.class_name} has no sub-module {path!r} (missing {part!r})")
            record = record.children[part]
        return record

    def __repr__(self) -> str:
        return (f"ModuleRecord({self.qualified_name}, {len(self.parameters)} parameters, "
                f"{len(self.buffers)} buffers, {len(self.children)} children)")


def _tensor_table(value: Any, what: str, origin: str) -> dict[str, Tensor]:
    if not isinstance(value, Mapping):
        raise UnsafePickleError(f"{origin}: {what} is a {type(value).__name__}, expected a dict of tensors")
    table: dict[str, Tensor] = {}
    for name, tensor in value.items():
        if tensor is None:
            continue
        if not isinstance(tensor, Tensor):
            raise UnsafePickleError(
                f"{origin}: {what}[{name!r}] is a {type(tensor).__name__}, expected a tensor")
        table[str(name)] = tensor
    return table


def _child_table(value: Any, owner: str, origin: str) -> dict[str, ModuleRecord]:
    if not isinstance(value, Mapping):
        raise UnsafePickleError(f"{origin}: {owner}._modules is a {type(value).__name__}, expected a dict")
    table: dict[str, ModuleRecord] = {}
    for name, child in value.items():
        if child is None:
            continue
        if not isinstance(child, ModuleRecord):
            raise UnsafePickleError(
                f"{origin}: {owner}._modules[{name!r}] is a {type(child).__name__}, expected a module")
        table[str(name)] = child
    return table
