"""Checkpoints: reading official EG3D/Mimic3D/EpiGRAF network pickles safely (no embedded code runs)."""

from __future__ import annotations

from mimic3d.checkpoints.records import ModuleRecord, UnsafePickleError
from mimic3d.checkpoints.safe_unpickle import RestrictedUnpickler, read_official_pickle

__all__ = ["ModuleRecord", "RestrictedUnpickler", "UnsafePickleError", "read_official_pickle"]
