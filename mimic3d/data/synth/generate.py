"""``mimic3d dataset synth``: render a procedural category into an EG3D-format dataset.

Object ``i`` of a dataset with seed ``s`` is drawn from ``numpy.random.default_rng([s, i])``, so
a sample does not depend on the batch size or on how many samples come before it. Batches are
rendered and streamed into the writer one at a time, so memory stays bounded.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from tqdm import tqdm

from mimic3d.camera import intrinsics_matrix, make_label, orbit_cam2world
from mimic3d.data.images import BACKGROUNDS as PLAIN_BACKGROUNDS
from mimic3d.data.synth.cars import Cars
from mimic3d.data.synth.heads import Heads
from mimic3d.data.synth.kind import ObjectKind, SampledObject
from mimic3d.data.synth.tracer import RenderedBatch, render_objects
from mimic3d.data.writer import DatasetWriter
from mimic3d.runtime import available_cpus

KINDS: dict[str, ObjectKind] = {"heads": Heads(), "cars": Cars()}
# "scene" is the kind's own background. A plain one (the dataset builder's colours for transparent
# pixels) leaves nothing around the object for a generator to model, so its volume can stay empty
# there; a scene background is drawn by density inside the tri-plane box.
SYNTH_BACKGROUNDS = ["scene", *PLAIN_BACKGROUNDS]
PREVIEW_COUNT = 16
MAX_RESOLUTION = 1024  # a batch of 32 renders holds ~100 float32 values per pixel: 3 GB at 1024^2


def get_kind(name: str) -> ObjectKind:
    if name not in KINDS:
        raise ValueError(f"kind: expected one of {sorted(KINDS)}, got '{name}'")
    return KINDS[name]


def get_background(name: str) -> tuple[float, float, float] | None:
    """The plain RGB colour in [0, 1] named ``name``, or None for the kind's scene."""
    if name not in SYNTH_BACKGROUNDS:
        raise ValueError(f"background: expected one of {SYNTH_BACKGROUNDS}, got '{name}'")
    return None if name == "scene" else (PLAIN_BACKGROUNDS[name] / 255.0,) * 3


def sample_objects(kind: ObjectKind, seed: int, indices: range | list[int]) -> list[SampledObject]:
    """The random objects with these indices of the dataset with ``seed``."""
    return [kind.sample(np.random.default_rng([seed, index])) for index in indices]


def object_labels(kind: ObjectKind, objects: list[SampledObject]) -> torch.Tensor:
    """[B, 25] EG3D labels: each object's orbit pose with the kind's preset radius, pivot, focal."""
    yaw = torch.tensor([o.yaw for o in objects], dtype=torch.float64)
    pitch = torch.tensor([o.pitch for o in objects], dtype=torch.float64)
    preset = kind.preset
    pose = orbit_cam2world(yaw, pitch, preset.radius, preset.pivot)
    return make_label(pose, intrinsics_matrix(preset.focal).to(pose.dtype)).float()


def render_samples(
    kind: ObjectKind,
    objects: list[SampledObject],
    labels: torch.Tensor,
    resolution: int,
    background: str = "scene",
) -> RenderedBatch:
    """Render objects with their labels [B, 25] (any cameras may be passed in) over a background
    named in ``SYNTH_BACKGROUNDS``."""
    geometry = torch.from_numpy(np.stack([o.geometry for o in objects], axis=1))
    appearance = torch.from_numpy(np.stack([o.appearance for o in objects], axis=1))
    return render_objects(kind, geometry, appearance, labels, resolution, get_background(background))


@dataclass
class SynthStats:
    count: int
    seconds: float

    @property
    def images_per_second(self) -> float:
        return self.count / max(self.seconds, 1e-9)


def render_range(
    kind: str,
    seed: int,
    first: int,
    count: int,
    resolution: int,
    background: str = "scene",
    yaw_std: float | None = None,
    pitch_std: float | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Samples ``first .. first + count - 1`` of a synthetic dataset (camera spreads: the kind's own
    where None).

    Returns:
        images uint8 [B, R, R, 3], labels float32 [B, 25], depth float32 [B, R, R] (inf = background).
    """
    category = get_kind(kind).with_pose_spread(yaw_std, pitch_std)
    objects = sample_objects(category, seed, range(first, first + count))
    labels = object_labels(category, objects)
    rendered = render_samples(category, objects, labels, resolution, background)
    images = (rendered.image * 255.0 + 0.5).to(torch.uint8).numpy()
    return images, labels.numpy(), rendered.depth.numpy()


def _render_task(task: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return render_range(*task)


def _single_threaded_worker() -> None:
    # Worker processes already use the cores; intra-op threads on top would oversubscribe them.
    torch.set_num_threads(1)


def contact_sheet(images: list[np.ndarray], columns: int = 4) -> PIL.Image.Image:
    """A grid picture of uint8 [R, R, 3] images, ``columns`` per row, with 2-pixel white gaps."""
    resolution = images[0].shape[0]
    rows = -(-len(images) // columns)
    step = resolution + 2
    sheet = PIL.Image.new("RGB", (columns * step - 2, rows * step - 2), (255, 255, 255))
    for k, image in enumerate(images):
        sheet.paste(PIL.Image.fromarray(image), ((k % columns) * step, (k // columns) * step))
    return sheet


def synth_dataset(
    dest: str,
    kind: str,
    num: int,
    resolution: int,
    seed: int = 0,
    batch_size: int = 32,
    workers: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    preview: str | None = None,
    background: str = "scene",
    yaw_std: float | None = None,
    pitch_std: float | None = None,
) -> SynthStats:
    """Render ``num`` objects of ``kind`` at ``resolution`` into an EG3D-format dataset at ``dest``.

    Every sample stores its image, camera label and ground-truth depth (``_depth.npy``). Batches
    are rendered by ``workers`` single-threaded processes (default: one per available CPU core, at most 8;
    1 renders in this process, on one thread) and written in order, so the output does not depend
    on ``workers`` or ``batch_size``.
    ``preview`` names a PNG contact sheet of the first 16 samples to write as well.
    ``background`` is ``"scene"`` (the kind's own) or a plain ``"white"`` or ``"black"``.
    ``yaw_std`` / ``pitch_std`` replace the kind's camera spread (``ObjectKind.yaw_std``).
    """
    posed = get_kind(kind).with_pose_spread(yaw_std, pitch_std)
    get_background(background)
    if num <= 0:
        raise ValueError(f"num: expected a positive number of images, got {num}")
    if resolution < 4 or resolution > MAX_RESOLUTION or resolution & (resolution - 1):
        raise ValueError(f"resolution: expected a power of two in [4, {MAX_RESOLUTION}], got {resolution}")
    if batch_size <= 0:
        raise ValueError(f"batch_size: expected a positive integer, got {batch_size}")
    workers = min(available_cpus(), 8) if workers is None else workers
    if workers <= 0:
        raise ValueError(f"workers: expected a positive integer, got {workers}")
    # Small datasets are split so that every worker gets a share.
    batch_size = max(1, min(batch_size, -(-num // workers)))
    tasks = [
        (kind, seed, first, min(batch_size, num - first), resolution, background, yaw_std, pitch_std)
        for first in range(0, num, batch_size)
    ]
    synth = {"kind": kind, "seed": seed, "num": num, "resolution": resolution, "background": background}
    synth.update(yaw_std=posed.yaw_std, pitch_std=posed.pitch_std)
    extra = {"synth": synth}
    start = time.perf_counter()
    with (
        DatasetWriter(dest, overwrite=overwrite, extra_metadata=extra) as writer,
        tqdm(total=num, desc=f"synth {kind}", unit="img", disable=not progress) as bar,
        contextlib.ExitStack() as stack,
    ):
        if workers > 1 and len(tasks) > 1:
            # Fork where the platform has it (like DataLoader workers): no re-import per worker.
            method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
            pool = stack.enter_context(
                multiprocessing.get_context(method).Pool(
                    min(workers, len(tasks)), initializer=_single_threaded_worker
                )
            )
            batches = pool.imap(_render_task, tasks)
        else:
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            stack.callback(torch.set_num_threads, threads)
            batches = map(_render_task, tasks)
        first_images: list[np.ndarray] = []
        for images, labels, depths in batches:
            for image, label, depth in zip(images, labels, depths):
                writer.add(image, label, depth=depth)
            first_images += list(images[: PREVIEW_COUNT - len(first_images)])
            bar.update(len(images))
    seconds = time.perf_counter() - start
    if preview is not None:
        Path(preview).parent.mkdir(parents=True, exist_ok=True)
        contact_sheet(first_images).save(preview, optimize=True)
    return SynthStats(count=num, seconds=seconds)
