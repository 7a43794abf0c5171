"""Memory-lean bias_act and FIR resampling: the same values and (second) derivatives as the plain
autograd compositions, with fewer tensors kept for the backward pass."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from numerics import assert_close

from mimic3d.nn.layers import bias_act
from mimic3d.nn.resample import downsample2d, setup_filter, upfirdn2d, upsample2d


def saved_bytes(fn, *inputs) -> tuple[torch.Tensor, int, int]:
    """fn(*inputs), and the number and bytes of tensors autograd saved for its backward pass
    (counted once per storage: a tensor saved by two nodes costs memory once)."""
    storages: dict[int, int] = {}
    count = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal count
        count += 1
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn(*inputs)
    return out, count, sum(storages.values())


def reference_bias_act(x, b, act, alpha, gain, clamp):
    """The plain composition (EG3D's reference path)."""
    y = x + b.view(1, -1, 1, 1)
    y = {"linear": lambda v: v, "relu": F.relu, "lrelu": lambda v: F.leaky_relu(v, alpha)}[act](y)
    y = y * gain
    return y.clamp(-clamp, clamp) if clamp is not None else y


@pytest.mark.parametrize(("act", "clamp"), [("lrelu", 1.5), ("lrelu", None), ("relu", 1.0), ("linear", 0.8)])
def test_bias_act_equals_reference_and_keeps_only_its_output(act: str, clamp: float | None) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 8, 8, generator=gen, requires_grad=True)
    b = torch.randn(3, generator=gen, requires_grad=True)
    gain, alpha = 1.4142135, 0.2

    out, count, nbytes = saved_bytes(lambda: bias_act(x, b, act=act, gain=gain, clamp=clamp))
    ref, ref_count, ref_bytes = saved_bytes(lambda: reference_bias_act(x, b, act, alpha, gain, clamp))
    assert torch.equal(out, ref)  # the same float32 operations in the same order
    # One saved tensor, the output itself (a following layer saves it anyway).
    assert count == 1 and nbytes == out.untyped_storage().nbytes()
    assert ref_bytes >= nbytes * (2 if clamp is not None and act != "linear" else 1)
    upstream = torch.randn(out.shape, generator=gen)
    grads = torch.autograd.grad(out, [x, b], upstream)
    ref_grads = torch.autograd.grad(ref, [x, b], upstream)
    for g, r in zip(grads, ref_grads):
        # Equal except where x + b sits exactly on the clamp (measure zero here); bias sums of 128
        # products differ by summation order.
        assert_close(g, r, terms=128)


def test_bias_act_first_and_second_derivatives() -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(1, 2, 3, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, generator=gen, dtype=torch.float64, requires_grad=True)
    fn = lambda x, b: bias_act(x, b, act="lrelu", gain=1.3, clamp=2.0)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))


@pytest.mark.parametrize(
    "op",
    [
        lambda x, f: upsample2d(x, f),
        lambda x, f: downsample2d(x, f),
        lambda x, f: upfirdn2d(x, f, up=2, down=1, padding=[2, 1, 0, 3]),
        lambda x, f: upfirdn2d(x, f, down=2, padding=-1),
    ],
    ids=["up", "down", "up-padded", "down-cropped"],
)
def test_fir_resampling_saves_nothing_and_has_exact_adjoint(op) -> None:
    gen = torch.Generator().manual_seed(2)
    f = setup_filter([1, 3, 3, 1])
    x = torch.randn(1, 2, 6, 7, generator=gen, dtype=torch.float64, requires_grad=True)
    out, count, _ = saved_bytes(op, x, f)
    with torch.no_grad():
        assert torch.equal(out, op(x, f))  # the forward is unchanged
    assert count == 0  # the adjoint needs only shapes and the (constant) filter
    assert torch.autograd.gradcheck(lambda v: op(v, f), (x,))
    assert torch.autograd.gradgradcheck(lambda v: op(v, f), (x,))
