"""``mimic3d view``: an interactive browser viewer of any generator, built on viser (``mimic3d[viewer]``).

- ``camera``: the browser camera <-> EG3D label conversion (exact) and the canvas layout of a frame;
- ``frames``: view settings, the per-latent tri-plane cache and frame rendering;
- ``worker``: the render thread (latest request wins, previews while moving, then refinement);
- ``panels``: the GUI; ``app``: the server, its clients and the save buttons.

Only ``app`` and ``panels`` need viser; the rest is importable without it.
"""

from __future__ import annotations

from mimic3d.viewer.camera import browser_label, canvas_fov, canvas_frame, label_pose, square_focal
from mimic3d.viewer.frames import FrameRenderer, ViewSettings, capabilities
from mimic3d.viewer.worker import RenderWorker

__all__ = [
    "FrameRenderer",
    "RenderWorker",
    "ViewSettings",
    "browser_label",
    "canvas_fov",
    "canvas_frame",
    "capabilities",
    "label_pose",
    "square_focal",
]
