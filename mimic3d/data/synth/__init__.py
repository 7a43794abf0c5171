"""Procedural 3D datasets: SDF objects sphere-traced with real cameras, with ground-truth depth."""

from __future__ import annotations

from mimic3d.data.synth.generate import (
    KINDS,
    get_kind,
    object_labels,
    render_samples,
    sample_objects,
    synth_dataset,
)

__all__ = ["KINDS", "get_kind", "object_labels", "render_samples", "sample_objects", "synth_dataset"]
