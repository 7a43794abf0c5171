"""What the viewer shows and how a frame is made: view settings, latents, the tri-plane cache, renders.

A frame is one panel per branch shown (2D, 3D or both side by side) of the current latent seen from a
camera label. The latent is a seed's ws (mapped with the frontal conditioning camera of the model's
camera preset, as every tool does, so the subject does not change as the camera moves), optionally
blended linearly in W towards a second seed (the StyleGAN3/EG3D visualisers' interpolation) and
style-mixed with a third seed at some ws layers (``style_mix``). Its tri-planes are computed once and
cached (``LatentCache``), so moving the camera only re-renders.

A full frame is exactly ``G.synthesis(ws, c, branch, noise_mode="const", perturb=False)`` at the
chosen render resolution (the 3D branch's frame size; the 2D branch's neural rendering resolution,
super-resolved to the model's image size). A preview (while the camera moves) is the volume render
alone at ``preview_resolution``: the 2D branch's raw RGB (no super-resolution) or the 3D branch at
that size. Depth and normal maps come from the branch's volume render (``normals_from_depth``);
"planes" shows the tri-plane feature norms (``plane_norm_picture``), which no camera changes.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mimic3d.camera import CameraPreset
from mimic3d.models.triplanes import Triplanes
from mimic3d.tools.imaging import depth_range, depth_to_images, normals_to_images, resize_images, to_uint8
from mimic3d.tools.latents import seed_ws, style_mix
from mimic3d.tools.normals import normals_from_depth
from mimic3d.tools.parsing import MAX_SEED, check_positive_int
from mimic3d.tools.planes import plane_norm_picture
from mimic3d.tools.rendering import check_branches

SHOWS = ("image", "depth", "normals", "planes")


@dataclass(frozen=True)
class Capabilities:
    """What the viewer can show of a generator: its branches (a subset of "2d", "3d"), whether it has
    tri-planes (the plane cache, the "planes" view, mesh export) and depth maps (depth and normals)."""

    branches: tuple[str, ...]
    planes: bool
    depth: bool

    @property
    def branch_choices(self) -> tuple[str, ...]:
        return self.branches + (("both",) if len(self.branches) == 2 else ())

    @property
    def shows(self) -> tuple[str, ...]:
        return tuple(s for s in SHOWS if (s != "planes" or self.planes) and (s == "image" or self.depth))


def capabilities(G: nn.Module) -> Capabilities:
    """Tri-plane generators have planes, depth and a "3d" branch (the field rendered directly at any
    size: Mimic3D's 3D branch, EG3D's raw volume render, EpiGRAF's only image); those with a 2D
    super-resolution (EG3D, Mimic3D) also the "2d" branch. Any other generator with ``mapping`` and
    ``synthesis(ws, c)`` (e.g. a distilled 2D student) is shown through its default branch, image only."""
    if not (callable(getattr(G, "mapping", None)) and callable(getattr(G, "synthesis", None))):
        raise ValueError(f"{type(G).__name__}: the viewer needs a generator with mapping() and synthesis()")
    planes = all(callable(getattr(G, name, None)) for name in ("planes", "render", "sample_density"))
    if not planes:
        return Capabilities(branches=("2d",), planes=False, depth=False)
    branches = ("2d", "3d") if getattr(G, "superresolution", None) is not None else ("3d",)
    return Capabilities(branches=branches, planes=True, depth=True)


@dataclass(frozen=True)
class ViewSettings:
    """Everything the GUI chooses; frames are functions of (settings, camera label, preview)."""

    seed: int = 0
    truncation_psi: float = 0.7
    blend_seed: int | None = None  # interpolate in W towards this seed ...
    blend: float = 0.0  # ... by this fraction (0: ``seed``, 1: ``blend_seed``)
    style_seed: int | None = None  # take the ws at ``style_layers`` from this seed
    style_layers: tuple[int, ...] = ()
    branch: str = "2d"  # "2d", "3d" or "both" (``Capabilities.branch_choices``)
    show: str = "image"  # one of SHOWS
    resolution_2d: int | None = None  # 2D branch's neural rendering resolution (None: the model's)
    resolution_3d: int = 128  # 3D branch's frame size
    preview_resolution: int = 32  # volume-render size while the camera moves

    def validate(self, caps: Capabilities, num_ws: int) -> ViewSettings:
        for name in ("seed", "blend_seed", "style_seed"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int) and 0 <= value <= MAX_SEED):
                raise ValueError(f"{name}: expected an integer seed in [0, {MAX_SEED}], got {value!r}")
        if not 0.0 <= self.blend <= 1.0:
            raise ValueError(f"blend: expected a fraction in [0, 1], got {self.blend}")
        if not all(isinstance(i, int) and 0 <= i < num_ws for i in self.style_layers):
            raise ValueError(f"style_layers: expected ws indices in [0, {num_ws}), got {self.style_layers}")
        if self.branch not in caps.branch_choices:
            raise ValueError(f"branch: expected one of {caps.branch_choices}, got {self.branch!r}")
        if self.show not in caps.shows:
            raise ValueError(f"show: expected one of {caps.shows}, got {self.show!r}")
        for name in ("resolution_3d", "preview_resolution"):
            check_positive_int(getattr(self, name), name, minimum=4)
        if self.resolution_2d is not None:
            check_positive_int(self.resolution_2d, "resolution_2d", minimum=4)
        return self

    def latent_key(self) -> tuple:
        """What the ws (and so the tri-planes) depend on."""
        blend = (self.blend_seed, self.blend) if self.blend_seed is not None and self.blend > 0 else None
        style = (
            (self.style_seed, self.style_layers)
            if self.style_seed is not None and self.style_layers
            else None
        )
        return (self.seed, self.truncation_psi, blend, style)


@dataclass
class Frame:
    """A rendered frame: one uint8 picture [S, S, 3] per panel (the "planes" view: one of any shape)."""

    panels: list[np.ndarray]
    settings: ViewSettings
    label: Tensor  # [25], the camera of every panel
    preview: bool
    seconds: float  # wall time of the render, tri-planes included
    planes_seconds: float = 0.0  # of which computing the tri-planes (0: cached)
    meta: dict[str, Any] = field(default_factory=dict)

    def picture(self) -> np.ndarray:
        """The panels side by side, uint8 [S, panels * S, 3] (what "save PNG" writes)."""
        return np.concatenate(self.panels, axis=1)


class LatentCache:
    """ws and tri-planes of the most recent latents (least recently used dropped), thread-safe."""

    def __init__(self, G: nn.Module, preset: CameraPreset, caps: Capabilities, size: int = 4) -> None:
        self.G, self.preset, self.caps = G, preset, caps
        self.size = check_positive_int(size, "cache size")
        self._entries: OrderedDict[tuple, tuple[Tensor, Triplanes | None]] = OrderedDict()
        self._lock = threading.Lock()

    def ws(self, settings: ViewSettings) -> Tensor:
        """ws [1, num_ws, w_dim] of the settings' latent (module docs)."""
        mapping = dict(truncation_psi=settings.truncation_psi)
        ws = seed_ws(self.G, [settings.seed], self.preset, **mapping)
        if settings.blend_seed is not None and settings.blend > 0:
            ws = torch.lerp(
                ws, seed_ws(self.G, [settings.blend_seed], self.preset, **mapping), settings.blend
            )
        if settings.style_seed is not None and settings.style_layers:
            style = seed_ws(self.G, [settings.style_seed], self.preset, **mapping)
            ws = style_mix(ws, style, settings.style_layers)
        return ws

    def get(self, settings: ViewSettings, residual: bool) -> tuple[Tensor, Triplanes | None, float]:
        """(ws, tri-planes or None, seconds spent computing them); ``residual`` asks for P^r too."""
        key = settings.latent_key()
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                ws, planes = entry
                if planes is None or not residual or planes.residual is not None or not self._has_sr3d():
                    self._entries.move_to_end(key)
                    return ws, planes, 0.0
            started = time.perf_counter()
            with torch.no_grad():
                ws = self.ws(settings)
                planes = None
                if self.caps.planes:
                    planes = self.G.planes(ws, noise_mode="const", residual=residual and self._has_sr3d())
            self._entries[key] = (ws, planes)
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
            return ws, planes, time.perf_counter() - started

    def _has_sr3d(self) -> bool:
        return bool(getattr(getattr(self.G, "config", None), "sr3d", False))


class FrameRenderer:
    """Frames of a generator (module docs); safe to call from several threads."""

    def __init__(self, G: nn.Module, preset: CameraPreset, cache_size: int = 4) -> None:
        self.G, self.preset = G, preset
        self.caps = capabilities(G)
        self.cache = LatentCache(G, preset, self.caps, cache_size)
        self.device = next(G.parameters()).device

    @property
    def num_ws(self) -> int:
        return int(self.G.num_ws)

    def render(self, settings: ViewSettings, label: Tensor, preview: bool = False) -> Frame:
        """The frame of ``settings`` at camera ``label`` [25]."""
        settings.validate(self.caps, self.num_ws)
        started = time.perf_counter()
        c = label.reshape(1, -1).float().to(self.device)
        branches = check_branches(settings.branch)
        ws, planes, planes_seconds = self.cache.get(settings, residual="3d" in branches)
        if settings.show == "planes":
            panels = [plane_norm_picture(planes)]
        else:
            pictures = [self._picture(settings, ws, planes, c, branch, preview) for branch in branches]
            size = max(p.shape[-1] for p in pictures)
            panels = [to_uint8(resize_images(p, size))[0] for p in pictures]
        seconds = time.perf_counter() - started
        return Frame(panels, settings, label.detach().reshape(-1).cpu(), preview, seconds, planes_seconds)

    def _picture(
        self,
        settings: ViewSettings,
        ws: Tensor,
        planes: Triplanes | None,
        c: Tensor,
        branch: str,
        preview: bool,
    ) -> Tensor:
        """One panel [1, 3, S, S] in [-1, 1]."""
        G = self.G
        if planes is None:  # a generator without tri-planes: its image, nothing else
            with torch.no_grad():
                return G.synthesis(ws, c, noise_mode="const")["image"]
        if branch == "3d":
            resolution = settings.resolution_3d
        else:
            resolution = settings.resolution_2d or G.config.neural_rendering_resolution
        if preview:
            resolution = min(resolution, settings.preview_resolution)
        with torch.no_grad():
            if settings.show == "image" and not preview:
                out = G.synthesis(
                    ws,
                    c,
                    branch=branch,
                    noise_mode="const",
                    perturb=False,
                    planes=planes,
                    neural_rendering_resolution=resolution,
                )
                return out["image"]
            field_planes = planes if branch == "3d" else dataclasses.replace(planes, residual=None)
            rgb, depth = G.render(field_planes, c, resolution, perturb=False, channels=3)
        if settings.show == "image":
            return rgb
        if settings.show == "depth":
            return depth_to_images(depth, depth_range(depth))
        return normals_to_images(normals_from_depth(depth, c))
