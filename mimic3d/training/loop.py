"""The training loop of EG3D, Mimic3D (stage 1, stage 2, end to end), EpiGRAF and NeRF-GAN distillation.

One step: fetch a global batch of reals, run every due phase (``Gmain``, ``Greg``, ``Dmain``,
``Dreg``, ``Dpatch_main``, ``Dpatch_reg``; see ``loss``, ``patch_loss`` for EpiGRAF's
patch-wise ``Gmain``, ``Dmain``, ``Dreg`` and ``distill_loss`` for a student's ``Gmain`` and its
stage-2 ``Dmain``, ``Dreg``) over this process's chunks, average the
gradients over all chunks of all processes and step; then update G_ema and ADA. Every tick logs
statistics; every ``snapshot_kimg`` (and at the end, and on SIGINT/SIGTERM after the current
step) a snapshot, sample grids and a clip are written. A non-finite loss stops the run with
``TrainingDiverged``; the last snapshot stays the latest.
"""

from __future__ import annotations

import dataclasses
import math
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mimic3d.camera import camera_statistics
from mimic3d.checkpoints.atomic import write_text_atomic
from mimic3d.data import ImageDataset
from mimic3d.losses import build_lpips
from mimic3d.runtime import apply_backend_policy, busy_machine_warning, compile_modules, expected_sync
from mimic3d.training.augment import AdaptiveProbability, AugmentPipe
from mimic3d.training.config import TrainConfig
from mimic3d.training.data import RealImageStream, fake_camera_sampler
from mimic3d.training.distill import load_teacher
from mimic3d.training.distill_loss import DistillLoss
from mimic3d.training.distributed import (
    ProcessInfo,
    all_reduce_,
    average_buffers,
    barrier,
    broadcast_modules,
    setup_processes,
)
from mimic3d.training.evaluation import evaluate_metrics, load_feature_extractor
from mimic3d.training.loss import Chunk, TriplaneGANLoss
from mimic3d.training.monitor import RunMonitor, StatsCollector
from mimic3d.training.networks import InitReport, build_networks, compiled_parts, init_from_checkpoint
from mimic3d.training.optimization import build_phases, optimizer_step, update_ema
from mimic3d.training.patch_loss import PatchGANLoss
from mimic3d.training.presets import config_to_yaml
from mimic3d.training.randomness import capture_rng_state, restore_rng_state, seed_chunk
from mimic3d.training.schedule import Progress, progress_at
from mimic3d.training.snapshot import (
    LATEST_FILE,
    TrainingState,
    load_snapshot,
    optimizer_from_record,
    optimizer_to_record,
    save_snapshot,
    snapshot_name,
)
from mimic3d.training.visuals import fixed_grid_inputs, write_snapshot_pictures

TIME_LIMIT = "time limit"
# Buffers that differ between processes after a step (updated from each process's own latents).
SYNCED_BUFFERS = ("backbone.mapping.w_avg",)


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite; the run stopped without overwriting the last snapshot."""


@dataclass
class RunResult:
    """How ``Trainer.run`` ended: ``finished`` (total_kimg), ``max_steps``, ``time_limit`` or
    ``interrupted`` (a signal)."""

    status: str
    step: int
    cur_nimg: int
    snapshot: Path | None


class Trainer:
    """Builds everything a run needs from a ``TrainConfig`` and trains it in ``run_dir``.

    Args:
        config: the resolved configuration.
        run_dir: output folder (config.yaml, log.txt, stats.jsonl, TensorBoard, snapshots, images).
        resume: a snapshot folder to continue exactly (networks, optimisers, EMA, ADA, RNG, counters).
        progress_bar: show tqdm progress on the main process.
        process: where this process sits (default: from the torchrun environment).
    """

    def __init__(
        self,
        config: TrainConfig,
        run_dir: str | Path,
        resume: str | Path | None = None,
        progress_bar: bool = True,
        process: ProcessInfo | None = None,
    ) -> None:
        self.config, self.run_dir = config, Path(run_dir)
        self.process = process or setup_processes(config.run.device)
        self.backend = apply_backend_policy(tf32=config.run.tf32)
        run, device = config.run, self.process.device
        if config.data.path is None:
            raise ValueError(
                "data.path: no training set given; add data.path=PATH (an EG3D-format zip or folder)"
            )
        if run.batch_size % self.process.world:
            raise ValueError(
                f"run.batch_size: {run.batch_size} is not divisible by {self.process.world} processes"
            )
        self.batch_local = run.batch_size // self.process.world
        self.batch_gpu = run.batch_gpu or self.batch_local
        if self.batch_local % self.batch_gpu:
            raise ValueError(
                f"run.batch_gpu: {self.batch_gpu} does not divide the per-process batch {self.batch_local}"
            )
        config.check_chunk(self.batch_gpu)
        self.chunks_local = self.batch_local // self.batch_gpu
        self.chunks_total = self.chunks_local * self.process.world

        self.dataset = ImageDataset(
            config.data.path,
            config.generator.img_resolution,
            config.data.mirror,
            config.data.max_size,
            run.seed,
        )
        self.labels = fake_camera_sampler(config.data.gen_cameras, self.dataset)
        # Stored in every checkpoint (metadata 'camera'): where tools may place cameras for this model.
        self.camera_statistics = camera_statistics(self.dataset.labels, Path(str(self.dataset.path)).stem)
        # Distillation: the frozen teacher whose student G is (not saved with the run's networks).
        self.teacher = load_teacher(config, device) if config.distilling else None
        self.nets = build_networks(
            config, self.dataset.label_std, run.seed, device, self.teacher, self.dataset.labels
        )
        self.compile_status = compile_modules(compiled_parts(self.nets), device) if run.compile else None
        self.augment_pipe, self.ada = self._build_augment()
        self.feature_extractor = load_feature_extractor(run.metrics, device)
        self.lpips = None
        if config.loss.imitation_weight > 0 or (config.distilling and config.distill.uses_lpips):
            self.lpips = build_lpips(config.loss.lpips, config.loss.lpips_weights_dir).to(device)
        self.phases = build_phases(config, self.nets.G, self.nets.D, self.nets.D_patch)
        if config.patch_wise:
            self.loss = PatchGANLoss(config, self.nets.G, self.nets.D, self.augment_pipe, self.ada)
        elif config.distilling:
            self.loss = DistillLoss(
                config, self.nets.G, self.teacher, self.nets.D, self.augment_pipe, self.ada, self.lpips
            )
        else:
            self.loss = TriplaneGANLoss(
                config, self.nets.G, self.nets.D, self.nets.D_patch, self.augment_pipe, self.ada, self.lpips
            )
        self.step, self.cur_nimg = 0, 0
        self.init_report: InitReport | None = None
        rng_state = None
        if resume is not None:
            rng_state = self._restore(Path(resume))
        elif run.init_from is not None:
            self.init_report = init_from_checkpoint(self.nets, run.init_from)
        broadcast_modules([*self.nets.named().values(), self.augment_pipe])
        self.stream = RealImageStream(
            self.dataset,
            run.batch_size,
            self.process.rank,
            self.process.world,
            run.seed,
            self.cur_nimg,
            config.data.workers,
            device,
        )
        self.stats = StatsCollector()
        self.monitor = RunMonitor(
            self.run_dir, self.process.is_main, run.total_kimg, self.cur_nimg / 1000, progress_bar
        )
        self.grid_z, self.grid_c = fixed_grid_inputs(
            self.dataset.labels, run.grid_size, config.generator.z_dim, run.seed
        )
        # EpiGRAF renders its images directly at full resolution, as Mimic3D's 3D branch does.
        self.branches = (
            ("3d",) if config.patch_wise else ("2d", "3d") if config.loss.trains_3d_branch else ("2d",)
        )
        self._stop_reason: str | None = None
        self._resumed_from = resume
        self._start_time = time.time()
        if rng_state is not None:
            restore_rng_state(*rng_state)

    # ------------------------------------------------------------------ construction helpers

    def _build_augment(self) -> tuple[AugmentPipe | None, AdaptiveProbability | None]:
        aug = self.config.augment
        if aug.mode == "noaug":
            return None, None
        pipe = AugmentPipe(aug.pipe, p=aug.p).to(self.process.device)
        ada = AdaptiveProbability(aug.target, aug.interval, aug.speed_kimg) if aug.mode == "ada" else None
        return pipe, ada

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {phase.network: phase.optimizer for phase in self.phases}

    def _restore(self, folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Load a snapshot's networks, optimisers, counters and ADA; returns its RNG state, which
        ``__init__`` applies last (building the data stream draws from the global generator)."""
        networks, _, state = load_snapshot(folder, self.process.device)
        for name, module in self.nets.named().items():
            if name not in networks:
                raise ValueError(f"resume {folder}: has no network {name!r} (it holds {sorted(networks)})")
            module.load_state_dict(networks[name].state_dict())
        for name, optimizer in self._optimizers().items():
            optimizer_from_record(optimizer, name, state.tensors, state.optimizers[name])
        counters = state.counters
        self.step, self.cur_nimg = int(counters["step"]), int(counters["cur_nimg"])
        if self.augment_pipe is not None and "augment_p" in state.tensors:
            self.augment_pipe.p.copy_(state.tensors["augment_p"])
        if self.ada is not None and "ada" in state.extra:
            self.ada.load_state_dict(state.extra["ada"])
        return state.tensors, state.extra["rng"]

    # ------------------------------------------------------------------ one step

    def train_step(self) -> dict[str, float]:
        """One optimisation step over the global batch; returns the phases' mean objectives."""
        progress = progress_at(self.config, self.cur_nimg)
        if self.config.schedule.density_noise_init > 0:
            self.nets.G.density_noise_std = progress.density_noise_std
        real_img, real_c = self.stream.next_batch()
        real_img, real_c = real_img.split(self.batch_gpu), real_c.split(self.batch_gpu)
        objectives: dict[str, torch.Tensor] = {}
        nets, device, z_dim = self.nets, self.process.device, self.config.generator.z_dim
        for phase_index, phase in enumerate(self.phases):
            if not phase.due(self.step, self.cur_nimg):
                continue
            phase.module.requires_grad_(True)
            total = torch.zeros([], device=device)
            for j in range(self.chunks_local):
                seed_chunk(
                    self.config.run.seed, self.step, phase_index, self.process.rank * self.chunks_local + j
                )
                gen_z = torch.randn([self.batch_gpu, z_dim], device=device)
                gen_c = self.labels.sample(self.batch_gpu, device=device)
                chunk = Chunk(real_img[j], real_c[j], gen_z, gen_c)
                result = self.loss.accumulate(phase.name, chunk, phase.interval, progress)
                total = total + result.objective
                for name, values in result.stats.items():
                    self.stats.add(name, values)
            phase.module.requires_grad_(False)
            optimizer_step(phase, self.chunks_total)
            objectives[phase.name] = total / self.chunks_local
        average_buffers(nets.G, SYNCED_BUFFERS)
        update_ema(nets.G_ema, nets.G, progress.ema_beta)
        self.cur_nimg += self.config.run.batch_size
        self.step += 1
        if self.ada is not None:
            self.ada.step(self.augment_pipe, self.config.run.batch_size, all_reduce=all_reduce_)
        return self._check_step(objectives, progress)

    def _check_step(self, objectives: dict[str, torch.Tensor], progress: Progress) -> dict[str, float]:
        """One collective per step: stop requests, non-finite flags and the objectives' means."""
        names = list(objectives)
        device = self.process.device
        values = torch.stack([objectives[n] for n in names]) if names else torch.zeros([0], device=device)
        stop = torch.full([1], float(self._stop_reason is not None), device=device)
        packed = torch.cat([stop, (~torch.isfinite(values)).float(), torch.nan_to_num(values, 0.0, 0.0, 0.0)])
        with expected_sync("step check: stop requests, non-finite losses, objectives"):
            packed = all_reduce_(packed).cpu().tolist()
        nonfinite, sums = packed[1 : 1 + len(names)], packed[1 + len(names) :]
        bad = [name for name, flag in zip(names, nonfinite) if flag > 0]
        if bad:
            if (self.run_dir / LATEST_FILE).is_file():
                last = (
                    f"The last good snapshot is the one {self.run_dir / LATEST_FILE} names; lower the "
                    "learning rates (optim.g_lr, optim.d_lr) or raise loss.r1_gamma and resume from it."
                )
            else:
                last = (
                    "No snapshot was written before it: lower the learning rates (optim.g_lr, "
                    "optim.d_lr) or raise loss.r1_gamma and start again."
                )
            raise TrainingDiverged(
                f"non-finite loss in phase(s) {', '.join(bad)} at step {self.step} "
                f"(kimg {progress.cur_kimg:.3f}); the run stopped without saving. {last}"
            )
        if packed[0] > 0 and self._stop_reason is None:
            self._stop_reason = "stop requested by another process"
        return {name: total / self.process.world for name, total in zip(names, sums)}

    # ------------------------------------------------------------------ snapshots

    def training_state(self) -> TrainingState:
        tensors, rng_data = capture_rng_state()
        optimizers = {}
        for name, optimizer in self._optimizers().items():
            opt_tensors, record = optimizer_to_record(name, optimizer)
            tensors.update(opt_tensors)
            optimizers[name] = record
        extra: dict[str, Any] = {"rng": rng_data, "config": self.config.to_dict()}
        if self.augment_pipe is not None:
            tensors["augment_p"] = self.augment_pipe.p.detach().cpu().clone()
        if self.ada is not None:
            extra["ada"] = self.ada.state_dict()
        counters = {"step": self.step, "cur_nimg": self.cur_nimg, "data_position": self.stream.position}
        return TrainingState(counters, optimizers, tensors, extra)

    def save(self) -> Path:
        """Write a snapshot (main process), then pictures and metrics; every process must call it."""
        progress = progress_at(self.config, self.cur_nimg)
        nrr = progress.neural_rendering_resolution
        for G in (self.nets.G, self.nets.G_ema):
            if nrr & (nrr - 1) == 0 and not self.config.patch_wise:  # EpiGRAF renders at full size
                G.config.neural_rendering_resolution = nrr
        name = snapshot_name(self.cur_nimg)
        folder = self.run_dir / "snapshots" / name
        if self.process.is_main:
            metadata = {
                "step": self.step,
                "cur_nimg": self.cur_nimg,
                "kimg": self.cur_nimg / 1000,
                "neural_rendering_resolution": nrr,
                "dataset": str(self.config.data.path),
                "description": self.config.description,
                "camera": dataclasses.asdict(self.camera_statistics),
            }
            folder = save_snapshot(
                self.run_dir,
                name,
                self.nets.named(),
                self.training_state(),
                metadata,
                self.config.run.keep_snapshots,
            )
            self.monitor.log(f"snapshot {folder}")
            if self.config.run.grid_size > 0:
                pictures = write_snapshot_pictures(
                    self.nets.G_ema,
                    self.run_dir,
                    name,
                    self.grid_z[: self.config.run.grid_size],
                    self.grid_c[: self.config.run.grid_size],
                    self.branches,
                    nrr,
                    self.config.run.video_frames,
                )
                self.monitor.write_images(pictures.grids, self.cur_nimg)
        barrier()
        for metric, value in evaluate_metrics(self, self.branches).items():
            self.monitor.log(f"metric {metric} = {value:.4f}")
            self.monitor.write_metric(metric, value, self.cur_nimg)
        return folder

    # ------------------------------------------------------------------ the loop

    def _request_stop(self, signum: int, _frame: Any) -> None:
        if self._stop_reason is not None:
            raise KeyboardInterrupt
        self._stop_reason = signal.Signals(signum).name
        self.monitor.log(
            f"{self._stop_reason}: finishing this step and saving a snapshot (again to abort now)"
        )

    def _install_signals(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        return {sig: signal.signal(sig, self._request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}

    def _write_config(self) -> None:
        if not self.process.is_main:
            return
        write_text_atomic(self.run_dir / "config.yaml", config_to_yaml(self.config))

    def _announce(self) -> None:
        cfg, monitor = self.config, self.monitor
        monitor.log(f"run folder {self.run_dir} ({cfg.description or 'custom config'})")
        monitor.log(
            f"dataset {cfg.data.path}: {len(self.dataset)} images at {self.dataset.resolution}^2; "
            f"batch {cfg.run.batch_size} = {self.process.world} process(es) x {self.chunks_local} chunk(s) "
            f"of {self.batch_gpu} on {self.process.device}"
        )
        monitor.log("phases: " + ", ".join(f"{p.name}/{p.interval}" for p in self.phases))
        if self.process.device.type == "cuda":
            monitor.log(
                f"GPU numerics: TF32 {'on (run.tf32)' if cfg.run.tf32 else 'off (the official setting)'}"
            )
        if self.compile_status is not None:
            monitor.log(self.compile_status)
        # Warned, not changed: the thread count changes float sums, so the weights would depend on load.
        busy = busy_machine_warning() if self.process.device.type == "cpu" else None
        if busy is not None:
            monitor.log(busy)
        if self.lpips is not None and not self.lpips.is_pretrained:
            monitor.log(
                "!!! LPIPS is UNTRAINED (loss.lpips=untrained): the imitation loss is a random-feature "
                "distance, fine for smoke tests and demos, not the paper's perceptual loss !!!"
            )
        for line in self.init_report.log_lines() if self.init_report is not None else []:
            monitor.log(f"init_from: {line}")
        if self._resumed_from is not None:
            monitor.log(
                f"resumed from {self._resumed_from} at step {self.step}, kimg {self.cur_nimg / 1000:.3f}"
            )

    def run(self, max_steps: int | None = None, deadline: float | None = None) -> RunResult:
        """Train until ``run.total_kimg``, ``max_steps`` total steps, ``deadline`` (a
        ``time.monotonic()`` value; status ``time_limit``) or a stop signal (``interrupted``),
        whichever comes first; every ending writes a snapshot."""
        run, total_nimg = self.config.run, self.config.run.total_kimg * 1000
        self._write_config()
        self._announce()
        tick_nimg, snap_nimg = run.tick_kimg * 1000, run.snapshot_kimg * 1000
        next_snapshot = (math.floor(self.cur_nimg / snap_nimg) + 1) * snap_nimg
        tick_start_nimg, tick_start_time, tick = self.cur_nimg, time.time(), 0
        maintenance = 0.0  # seconds of snapshots within the current tick, not counted as training
        sec_per_kimg: float | None = None
        previous = self._install_signals()
        snapshot = None
        try:
            # A resumed run may have nothing left to do: report it without training a step.
            if self.cur_nimg >= total_nimg or (max_steps is not None and self.step >= max_steps):
                status = "finished" if self.cur_nimg >= total_nimg else "max_steps"
                self.monitor.log(
                    f"{status} already at step {self.step}, kimg {self.cur_nimg / 1000:.3f}: nothing to "
                    "train (raise run.total_kimg or --max-steps to continue)"
                )
                resumed = None if self._resumed_from is None else Path(self._resumed_from)
                return RunResult(status, self.step, self.cur_nimg, resumed)
            while True:
                if deadline is not None and time.monotonic() >= deadline and self._stop_reason is None:
                    self._stop_reason = TIME_LIMIT
                losses = self.train_step()
                done = self.cur_nimg >= total_nimg
                status = "finished" if done else None
                if max_steps is not None and self.step >= max_steps and status is None:
                    status = "max_steps"
                if self._stop_reason is not None and status is None:
                    status = "time_limit" if self._stop_reason == TIME_LIMIT else "interrupted"
                if status is not None or self.cur_nimg >= tick_start_nimg + tick_nimg:
                    now = time.time()
                    seconds = now - tick_start_time - maintenance
                    sec_per_kimg = seconds / max(self.cur_nimg - tick_start_nimg, 1) * 1000
                    self._tick(tick, sec_per_kimg, now)
                    tick, tick_start_nimg, tick_start_time, maintenance = tick + 1, self.cur_nimg, now, 0.0
                self.monitor.advance(self.cur_nimg / 1000, sec_per_kimg, losses)
                if status is not None or self.cur_nimg >= next_snapshot:
                    saving = time.time()
                    snapshot = self.save()
                    next_snapshot = (math.floor(self.cur_nimg / snap_nimg) + 1) * snap_nimg
                    maintenance += time.time() - saving
                if status is not None:
                    self.monitor.log(f"{status} at step {self.step}, kimg {self.cur_nimg / 1000:.3f}")
                    return RunResult(status, self.step, self.cur_nimg, snapshot)
        except BaseException as err:  # every fatal error reaches log.txt, not only the terminal
            self.monitor.log(f"stopped by {type(err).__name__}: {err}")
            raise
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.monitor.close()

    def _tick(self, tick: int, sec_per_kimg: float, now: float) -> None:
        stats = self.stats.reduce()
        progress = progress_at(self.config, self.cur_nimg)
        scalars = {
            "Progress/tick": tick,
            "Progress/kimg": self.cur_nimg / 1000,
            "Progress/step": self.step,
            "Progress/blur_sigma": progress.blur_sigma,
            "Progress/swap_prob": -1.0 if progress.swap_prob is None else progress.swap_prob,
            "Progress/neural_rendering_resolution": progress.neural_rendering_resolution,
            "Progress/augment": 0.0 if self.augment_pipe is None else float(self.augment_pipe.p),
            "Progress/density_noise_std": progress.density_noise_std,
            "Timing/sec_per_kimg": sec_per_kimg,
            "Timing/total_sec": now - self._start_time,
            # user + sys seconds of this process (all threads): a budget that a busy machine keeps
            "Timing/cpu_sec": time.process_time(),
        }
        if progress.patch_scales is not None:
            scalars["Progress/patch_min_scale"] = progress.patch_scales.floor
            scalars["Progress/patch_beta"] = progress.patch_scales.beta
        if self.process.device.type == "cuda":
            scalars["Resources/peak_gpu_mem_gb"] = (
                torch.cuda.max_memory_allocated(self.process.device) / 2**30
            )
            scalars["Resources/peak_gpu_reserved_gb"] = (
                torch.cuda.max_memory_reserved(self.process.device) / 2**30
            )
            torch.cuda.reset_peak_memory_stats(self.process.device)
        self.monitor.write_tick(stats, scalars, self.cur_nimg)
        parts = [f"tick {tick:<4d} kimg {self.cur_nimg / 1000:<8.2f} sec/kimg {sec_per_kimg:<7.1f}"]
        for key in ("Loss/G/total", "Loss/D/loss", "Loss/G/imitation", "Loss/D_patch/loss", "Loss/D/reg"):
            if key in stats:
                parts.append(f"{key.removeprefix('Loss/')} {stats[key]['mean']:.3f}")
        if self.augment_pipe is not None:
            parts.append(f"augment {float(self.augment_pipe.p):.3f}")
        self.monitor.log("  ".join(parts))
