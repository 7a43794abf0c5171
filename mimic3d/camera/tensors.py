"""Coercion of user input (tensors, numpy arrays, Python numbers and sequences) to float tensors."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

TensorLike = Any  # torch.Tensor | np.ndarray | float | Sequence[float]


def as_float_tensor(
    value: TensorLike,
    name: str,
    *,
    like: torch.Tensor | None = None,
    trailing: tuple[int, ...] = (),
) -> torch.Tensor:
    """Return ``value`` as a real floating-point tensor.

    Floating tensors and numpy arrays keep their dtype (float64 labels stay float64); integer
    input, Python numbers and sequences take ``like``'s dtype, else torch's default dtype.
    ``like`` also fixes the device. ``trailing`` is the required trailing shape, e.g. ``(4, 4)``.
    Anything else raises ValueError naming ``name``.
    """
    if isinstance(value, torch.Tensor):
        tensor = value
    elif isinstance(value, (np.ndarray, np.generic)):
        tensor = torch.from_numpy(np.array(value))
    else:
        try:
            array = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"{name}: expected real numbers (tensor, array or sequence), got {value!r}"
            ) from err
        tensor = torch.from_numpy(array).to(like.dtype if like is not None else torch.get_default_dtype())
    if tensor.is_complex() or tensor.dtype == torch.bool:
        raise ValueError(f"{name}: expected real numbers, got dtype {tensor.dtype}")
    if not tensor.is_floating_point():
        tensor = tensor.to(like.dtype if like is not None else torch.get_default_dtype())
    if like is not None:
        tensor = tensor.to(device=like.device)
    if trailing:
        shape = tuple(tensor.shape)
        if len(shape) < len(trailing) or shape[len(shape) - len(trailing) :] != trailing:
            expected = "[..., " + ", ".join(str(s) for s in trailing) + "]"
            raise ValueError(f"{name}: expected shape {expected}, got {list(shape)}")
    return tensor


def broadcast_float_tensors(*values: tuple[TensorLike, str]) -> list[torch.Tensor]:
    """Coerce ``(value, name)`` pairs with ``as_float_tensor`` and broadcast them to one shape.

    The first floating tensor input decides dtype and device (so ``yaw`` as a float64 tensor
    with ``pitch=1.57`` gives float64 for both); without one, dtypes are promoted.
    """
    reference = next((v for v, _ in values if isinstance(v, torch.Tensor) and v.is_floating_point()), None)
    tensors = [as_float_tensor(v, n, like=reference) for v, n in values]
    dtype = reference.dtype if reference is not None else tensors[0].dtype
    if reference is None:
        for tensor in tensors[1:]:
            dtype = torch.promote_types(dtype, tensor.dtype)
    try:
        return list(torch.broadcast_tensors(*(t.to(dtype) for t in tensors)))
    except RuntimeError as err:
        shapes = ", ".join(f"{n} {list(t.shape)}" for t, (_, n) in zip(tensors, values))
        raise ValueError(f"shapes do not broadcast: {shapes}") from err
