"""What the GPU path of training needs, checked on the CPU: sync-free steps, the generator EMA, the
optimiser choice, the distributed device, the data loader and the backend policy switches.

A host-device synchronisation cannot happen on the CPU, but the operations that cause one on a GPU
can be seen: reading a value (``.item()``, ``bool()``, ``float()``: ``aten._local_scalar_dense``),
data-dependent shapes (``nonzero``, ``masked_select``), tensors made from host data
(``torch.tensor(list)``: a host-to-device copy on a GPU: ``aten.lift_fresh``) and ``.tolist()``. The
CUDA suite (tests/cuda) runs the same steps under ``torch.cuda.set_sync_debug_mode("error")``.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from training_support import tiny_config, write_random_dataset

from mimic3d import runtime
from mimic3d.cli.main import main as cli_main
from mimic3d.models import TriplaneGenerator, generator_preset
from mimic3d.training import distributed
from mimic3d.training.config import DataConfig
from mimic3d.training.loop import Trainer
from mimic3d.training.optimization import make_adam, update_ema

SYNCING_OPS = {
    "aten._local_scalar_dense.default",
    "aten.nonzero.default",
    "aten.masked_select.default",
    "aten.lift_fresh.default",
    "aten.is_nonzero.default",
    "aten.equal.default",
    "aten._unique2.default",
}


class SyncRecorder(TorchDispatchMode):
    """Records the operations that would synchronise a GPU, outside ``expected_sync`` blocks and
    outside ``paused()`` calls (host-side work: data loading, the optimiser's CPU step counters)."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self.paused = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if str(func) in SYNCING_OPS and not self.paused and not runtime.in_expected_sync():
            self.found.append(str(func))
        return func(*args, **(kwargs or {}))

    def pause(self, fn: Callable) -> Callable:
        def wrapped(*args, **kwargs):
            self.paused += 1
            try:
                return fn(*args, **kwargs)
            finally:
                self.paused -= 1

        return wrapped


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_random_dataset(tmp_path_factory.mktemp("gpu_readiness") / "data")


# EG3D and end-to-end Mimic3D between them run every phase and module (stage 1 and 2 are subsets;
# tests/cuda runs all four).
@pytest.mark.parametrize("family", ["eg3d", "e2e"])
def test_training_step_has_no_unexpected_syncs(family: str, dataset, tmp_path, monkeypatch) -> None:
    # ADA with p > 0 so that every augmentation path runs, the general warp included.
    config = tiny_config(family, dataset, "augment.mode=ada", "augment.p=0.5")
    trainer = Trainer(config, tmp_path / family, progress_bar=False)
    trainer.train_step()  # warm-up: device constants are built on first use
    trainer.step = 0  # step 0 again: every phase, the lazy regularisers included
    batch = trainer.stream.next_batch()
    recorder = SyncRecorder()
    trainer.stream.next_batch = lambda: batch
    trainer.labels.sample = recorder.pause(trainer.labels.sample)
    for phase in trainer.phases:
        phase.optimizer.step = recorder.pause(phase.optimizer.step)  # CPU step counters by design
    # On a GPU these value checks are skipped (their inputs are device tensors, see runtime.on_host):
    # every module that uses the rule sees device tensors here.
    users = [m for n, m in sys.modules.items() if n.startswith("mimic3d.") and m is not runtime]
    for module in [m for m in users if getattr(m, "on_host", None) is runtime.on_host]:
        monkeypatch.setattr(module, "on_host", lambda *t: False)
    before = dict(runtime.EXPECTED_SYNCS)
    with recorder:
        objectives = trainer.train_step()
    assert recorder.found == [], f"unexpected synchronising ops: {sorted(set(recorder.found))}"
    assert all(torch.isfinite(torch.tensor(v)) for v in objectives.values())
    entered = {k: v - before.get(k, 0) for k, v in runtime.EXPECTED_SYNCS.items() if v > before.get(k, 0)}
    # One step check per step, plus ADA's general warp once per augmented D input.
    assert entered.pop("step check: stop requests, non-finite losses, objectives") == 1
    assert set(entered) <= {"ADA: samples and padding of the general warp"}


def test_sync_recorder_catches_value_reads_also_in_backward() -> None:
    recorder = SyncRecorder()
    x = torch.ones(3, requires_grad=True)
    with recorder:
        bool(x.any())
        torch.tensor([1.0, 2.0])
        x.nonzero()
        with runtime.expected_sync("test"):
            float(x.detach().sum())
        y = x * 2
        y.register_hook(lambda g: g * float(g.sum()))  # a value read inside the backward pass
        y.sum().backward()
    assert recorder.found == [
        "aten._local_scalar_dense.default",
        "aten.lift_fresh.default",
        "aten.nonzero.default",
        "aten._local_scalar_dense.default",
    ]


def test_foreach_ema_equals_the_per_parameter_loop() -> None:
    torch.manual_seed(0)
    G = TriplaneGenerator(generator_preset("tiny-mimic3d"))
    G_ema = copy.deepcopy(G)
    with torch.no_grad():
        for p in G.parameters():
            p.add_(torch.randn_like(p))
        G.backbone.mapping.w_avg.add_(1.0)
    expected = copy.deepcopy(G_ema)
    with torch.no_grad():  # the reference: the loop EMA
        for p_ema, p in zip(expected.parameters(), G.parameters()):
            p_ema.copy_(p.lerp(p_ema, 0.999))
        for b_ema, b in zip(expected.buffers(), G.buffers()):
            b_ema.copy_(b)
    update_ema(G_ema, G, 0.999)
    for (name, got), want in zip(G_ema.state_dict().items(), expected.state_dict().values()):
        assert torch.equal(got, want), name  # the same lerp arithmetic, element by element


def test_adam_is_fused_only_on_cuda() -> None:
    module = torch.nn.Linear(3, 2)
    optimizer = make_adam(module, 1e-3, (0.0, 0.99), 1e-8)
    assert not optimizer.defaults.get("fused")  # CPU parameters: the default implementation
    assert optimizer.defaults["betas"] == (0.0, 0.99) and optimizer.defaults["eps"] == 1e-8


def test_cuda_device_is_local_rank_modulo_visible_gpus(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    # SLURM with one GPU per task: every task sees cuda:0 whatever its LOCAL_RANK.
    assert distributed.choose_device("auto", 3) == torch.device("cuda", 1)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert distributed.choose_device("cuda", 5) == torch.device("cuda", 0)
    assert distributed.choose_device("cpu", 5) == torch.device("cpu")


def test_process_group_gets_the_device_id(monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: calls.append(("set_device", device)))
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda **kw: calls.append(("init", kw)))
    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setenv("RANK", "6")
    monkeypatch.setenv("LOCAL_RANK", "6")
    info = distributed.setup_processes("auto")
    assert info.device == torch.device("cuda", 2) and info.rank == 6 and info.world == 8
    ((_, init),) = [c for c in calls if c[0] == "init"]
    assert init["backend"] == "nccl" and init["device_id"] == torch.device("cuda", 2)
    assert ("set_device", torch.device("cuda", 2)) in calls


def test_data_loading_runs_in_worker_processes_by_default() -> None:
    assert DataConfig().workers > 0


@pytest.fixture
def restore_backends():
    saved = runtime.current_backend_policy()
    yield
    runtime.apply_backend_policy(saved.matmul_tf32)
    torch.backends.cudnn.benchmark = saved.cudnn_benchmark


def test_backend_policy_is_eg3ds_unless_tf32_is_asked_for(restore_backends) -> None:
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    policy = runtime.apply_backend_policy()
    assert policy == runtime.current_backend_policy()
    # EG3D's training loop: cudnn.benchmark on, TF32 off for matmuls and cuDNN, no reduced fp16 sums.
    assert torch.backends.cudnn.benchmark
    assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    assert not torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction
    fast = runtime.apply_backend_policy(tf32=True)
    assert fast.matmul_tf32 and torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32


def test_trainer_and_commands_apply_the_policy(dataset, tmp_path, restore_backends, capsys) -> None:
    runtime.apply_backend_policy(tf32=True)
    Trainer(tiny_config("eg3d", dataset), tmp_path / "run", progress_bar=False)
    assert not torch.backends.cudnn.allow_tf32
    Trainer(tiny_config("eg3d", dataset, "run.tf32=true"), tmp_path / "fast", progress_bar=False)
    assert torch.backends.cudnn.allow_tf32
    # Every command applies it before running; --tf32 (train, metrics, the rendering tools) flips it.
    assert cli_main(["train", "tiny-eg3d-heads", "--tf32", "--print-config"]) == 0
    assert "tf32: true" in capsys.readouterr().out and torch.backends.cudnn.allow_tf32
    assert cli_main(["train", "tiny-eg3d-heads", "--print-config"]) == 0
    assert "tf32: false" in capsys.readouterr().out and not torch.backends.cudnn.allow_tf32
    with pytest.raises(SystemExit):
        cli_main(["generate", "--help"])
    assert "--tf32" in capsys.readouterr().out


def test_compile_falls_back_to_eager_where_unavailable(monkeypatch) -> None:
    module = torch.nn.Linear(3, 2)
    monkeypatch.setattr(runtime, "compile_unavailable", lambda device: "no C++ compiler found (set CXX)")
    status = runtime.compile_modules([module], "cpu")
    assert status == "torch.compile unavailable (no C++ compiler found (set CXX)): running eagerly"
    assert "_compiled_call_impl" not in vars(module) or module._compiled_call_impl is None
    assert list(module.state_dict()) == ["weight", "bias"]
