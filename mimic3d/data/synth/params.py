"""Named per-object parameter vectors, stored as rows of one table for batched evaluation."""

from __future__ import annotations

import numpy as np
import torch


class ParamLayout:
    """Names and widths of the parameters of one object kind (e.g. ``{"head": 6, "tint": 3}``).

    Objects are packed into a table ``[P, B]`` (one column per object, so that gathering the
    columns of many points yields contiguous rows); ``view`` turns gathered columns ``[P, M]``
    back into named per-point tensors.
    """

    def __init__(self, fields: dict[str, int]) -> None:
        self.fields = dict(fields)
        self.offsets: dict[str, int] = {}
        offset = 0
        for name, width in self.fields.items():
            self.offsets[name] = offset
            offset += width
        self.size = offset

    def pack(self, values: dict[str, object]) -> np.ndarray:
        """[P] float32 vector from a dict with exactly the layout's fields (scalars or sequences)."""
        if set(values) != set(self.fields):
            missing, extra = set(self.fields) - set(values), set(values) - set(self.fields)
            raise ValueError(f"parameters: missing {sorted(missing)}, unexpected {sorted(extra)}")
        vector = np.zeros(self.size, dtype=np.float32)
        for name, width in self.fields.items():
            value = np.asarray(values[name], dtype=np.float32).reshape(-1)
            if value.size != width:
                raise ValueError(f"parameters: '{name}' needs {width} values, got {value.size}")
            vector[self.offsets[name] : self.offsets[name] + width] = value
        return vector

    def view(self, columns: torch.Tensor) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        """Named rows of gathered columns ``[P, M]``: a [M] tensor per width-1 field, else a list."""
        named: dict[str, torch.Tensor | list[torch.Tensor]] = {}
        for name, width in self.fields.items():
            rows = columns[self.offsets[name] : self.offsets[name] + width]
            named[name] = rows[0] if width == 1 else list(rows.unbind(0))
        return named
