"""The side-by-side benchmark builds the official generator from our config: its constructor
arguments must be the ones the official code was run with (the parity fixtures record them)."""

from __future__ import annotations

import json

import pytest
from test_models_generator_parity import FIXTURES, _config

from benchmarks.official_side_by_side import official_class_and_kwargs


@pytest.mark.parametrize("name", ["eg3d_small", "mimic3d_small"])
def test_official_kwargs_reproduce_the_recorded_ones(name: str) -> None:
    meta = json.loads((FIXTURES / f"{name}.json").read_text())
    class_path, kwargs = official_class_and_kwargs(_config(meta))
    assert class_path.rsplit(".", 1)[-1] == meta["class_name"]
    recorded = meta["init_kwargs"]
    rendering = kwargs.pop("rendering_kwargs")
    recorded_rendering = recorded["rendering_kwargs"]
    # Every argument the official run had, with its value (white_back is new and defaults to False).
    assert {k: kwargs.get(k, "missing") for k in recorded if k != "rendering_kwargs"} == {
        k: v for k, v in recorded.items() if k != "rendering_kwargs"
    }
    shared = {k: v for k, v in recorded_rendering.items() if k not in ("density_reg_p_dist",)}
    assert {k: rendering[k] for k in shared} == shared
    assert rendering["white_back"] is False
