"""OmegaConf configs inside official pickles, read as inert data (omegaconf is never imported).

EpiGRAF keeps its hydra config (an ``omegaconf.DictConfig``) on its networks, so its pickles hold
``DictConfig`` / ``ListConfig`` objects, value nodes (``AnyNode``, ``StringNode``, ...) and their
``Metadata``, all pickled as a class plus its ``__dict__``. The restricted unpickler turns each into
a :class:`ConfigRecord` that only stores that dict; :func:`config_to_plain` then rebuilds plain
dicts, lists and values, resolving ``${a.b.c}`` interpolations (whole-value and inside strings)
against the root of the config tree, as OmegaConf does when a value is read. Interpolations that
call a resolver (``${hydra:...}``) or point nowhere are kept as their text.
"""

from __future__ import annotations

import re
from typing import Any

from mimic3d.checkpoints.records import UnsafePickleError

# OmegaConf 2.0 / 2.1+ classes a config pickle may name.
CONTAINER_CLASSES = frozenset({"omegaconf.dictconfig.DictConfig", "omegaconf.listconfig.ListConfig"})
VALUE_CLASSES = frozenset(
    f"omegaconf.nodes.{name}"
    for name in ("AnyNode", "StringNode", "IntegerNode", "FloatNode", "BooleanNode", "BytesNode", "PathNode")
)
METADATA_CLASSES = frozenset({"omegaconf.base.Metadata", "omegaconf.base.ContainerMetadata"})
OMEGACONF_CLASSES = CONTAINER_CLASSES | VALUE_CLASSES | METADATA_CLASSES

_INTERPOLATION = re.compile(r"\$\{([^${}]*)\}")
_MAX_DEPTH = 64


class ConfigRecord:
    """An inert OmegaConf object: its class name and the ``__dict__`` the pickle gave it."""

    qualified_name = ""

    def __new__(cls, *args: Any, **kwargs: Any) -> ConfigRecord:
        if args or kwargs:
            raise UnsafePickleError(f"refusing to call {cls.qualified_name} with arguments {args!r}")
        record = super().__new__(cls)
        record.state = {}
        return record

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Construction happens in ``__new__``; pickle may still call the class without arguments."""

    state: dict[str, Any]

    def absorb_state(self, state: Any, origin: str) -> None:
        if isinstance(state, tuple) and len(state) == 2 and state[0] is None:
            state = state[1]  # (None, slot state) for classes with __slots__
        if not isinstance(state, dict):
            raise UnsafePickleError(
                f"{origin}: state of {self.qualified_name} is a {type(state).__name__}, expected a dict"
            )
        self.state.update(state)

    @property
    def is_container(self) -> bool:
        return self.qualified_name in CONTAINER_CLASSES

    @property
    def parent(self) -> ConfigRecord | None:
        parent = self.state.get("_parent")
        return parent if isinstance(parent, ConfigRecord) else None

    def __repr__(self) -> str:
        return f"ConfigRecord({self.qualified_name})"


def config_record_type(qualified_name: str) -> type[ConfigRecord]:
    """A ``ConfigRecord`` subclass standing for the OmegaConf class ``qualified_name``."""
    if qualified_name not in OMEGACONF_CLASSES:
        raise UnsafePickleError(f"refusing to load '{qualified_name}': not an OmegaConf config class")
    name = qualified_name.rsplit(".", 1)[1]
    return type(name, (ConfigRecord,), {"qualified_name": qualified_name})


def config_to_plain(value: Any) -> Any:
    """Plain dicts / lists / values of a config record (or of any value holding records), with
    interpolations resolved. Values that are not records pass through (dicts and lists recursively)."""
    return _plain(value, 0)


def _plain(value: Any, depth: int) -> Any:
    if depth > _MAX_DEPTH:
        raise ValueError("config: interpolations nest too deeply (a cycle?)")
    if isinstance(value, ConfigRecord):
        if value.qualified_name in METADATA_CLASSES:
            return None
        if not value.is_container:
            return _resolve_value(value.state.get("_val"), value.parent, depth)
        content = value.state.get("_content")
        if isinstance(content, str):
            return _resolve_value(content, value.parent, depth)
        if isinstance(content, dict):
            return {key: _plain(node, depth + 1) for key, node in content.items()}
        if isinstance(content, list):
            return [_plain(node, depth + 1) for node in content]
        return content
    if isinstance(value, dict):
        return {key: _plain(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_plain(item, depth + 1) for item in value)
    return value


def _resolve_value(value: Any, parent: ConfigRecord | None, depth: int) -> Any:
    if not isinstance(value, str) or "${" not in value:
        return value
    whole = _INTERPOLATION.fullmatch(value)
    if whole:
        target = _lookup(whole.group(1), parent, depth)
        return value if target is _UNRESOLVED else _plain(target, depth + 1)

    def substitute(match: re.Match[str]) -> str:
        target = _lookup(match.group(1), parent, depth)
        return match.group(0) if target is _UNRESOLVED else str(_plain(target, depth + 1))

    return _INTERPOLATION.sub(substitute, value)


_UNRESOLVED = object()


def _lookup(path: str, parent: ConfigRecord | None, depth: int) -> Any:
    """The node at ``path`` (absolute, or relative with leading dots) seen from the container
    ``parent``; ``_UNRESOLVED`` for resolver calls and missing keys. Nodes on the way that are
    themselves interpolations (``dataset: ${dataset}``) are followed."""
    if depth > _MAX_DEPTH:
        raise ValueError("config: interpolations nest too deeply (a cycle?)")
    if ":" in path or parent is None or not path.strip("."):
        return _UNRESOLVED
    node: Any = parent
    if path.startswith("."):
        dots = len(path) - len(path.lstrip("."))
        for _ in range(dots - 1):
            node = node.parent if isinstance(node, ConfigRecord) else None
        path = path[dots:]
    else:
        while isinstance(node, ConfigRecord) and node.parent is not None:
            node = node.parent
    for key in path.split("."):
        node = _follow(node, depth)
        if not isinstance(node, ConfigRecord) or not node.is_container:
            return _UNRESOLVED
        content = node.state.get("_content")
        if isinstance(content, dict) and key in content:
            node = content[key]
        elif isinstance(content, list) and key.isdigit() and int(key) < len(content):
            node = content[int(key)]
        else:
            return _UNRESOLVED
    return node


def _follow(node: Any, depth: int) -> Any:
    """The node a whole-value interpolation node points to (the node itself otherwise)."""
    if isinstance(node, ConfigRecord) and not node.is_container:
        value = node.state.get("_val")
        whole = _INTERPOLATION.fullmatch(value) if isinstance(value, str) else None
        if whole:
            return _lookup(whole.group(1), node.parent, depth + 1)
    return node
