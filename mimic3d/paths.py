"""Paths as users type them: ``~`` and ``$VARIABLES`` are expanded in every path a command, a config
field or a Python entry point receives (``data.path=~/datasets/FFHQ_512.zip``)."""

from __future__ import annotations

import os


def expand_path(path: str | os.PathLike) -> str:
    """``path`` with ``~``/``~user`` and ``$NAME``/``${NAME}`` expanded (unset variables stay as typed)."""
    return os.path.expanduser(os.path.expandvars(os.fspath(path)))


def absolute_path(path: str | os.PathLike) -> str:
    """The expanded ``path`` made absolute against the current folder (not resolving links), so a
    config saved with it still names the same file when read from another folder."""
    return os.path.abspath(expand_path(path))
