"""The browser viewer: a viser server, one render worker per browser client, the GUI and the save buttons.

Each browser tab is a client with its own camera; a camera change submits a preview request to the
client's worker (refined when the camera stops), a GUI change a full one to every client's worker.
The frame goes back as the scene's background image, padded to the canvas so that it sits where
the browser's camera would draw it (``mimic3d.viewer.camera``). Files are written only by the save
buttons, only into ``outdir``, under names the server makes up; the share-URL tunnel viser offers
(a connection to an outside server) is switched off.
"""

from __future__ import annotations

import dataclasses
import errno
import ipaddress
import json
import math
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

from torch import Tensor, nn

from mimic3d.camera import CameraPreset
from mimic3d.checkpoints.atomic import write_text_atomic
from mimic3d.export import save_mesh
from mimic3d.tools.imaging import save_png
from mimic3d.tools.mesh import EG3D_LEVEL, seed_mesh, seed_volume
from mimic3d.tools.trajectories import trajectory_labels
from mimic3d.tools.viewpoints import camera_preset_for
from mimic3d.viewer.camera import BrowserPose, browser_label, canvas_fov, canvas_frame, label_pose
from mimic3d.viewer.frames import Frame, FrameRenderer, ViewSettings, capabilities
from mimic3d.viewer.panels import Actions, Panels
from mimic3d.viewer.worker import RenderWorker

PAD_COLOUR = (16, 17, 19)  # the dark theme's background, around the square renders
ANIMATION_FPS = 15.0


def import_viser():
    """The ``viser`` module, or ValueError saying how to install it."""
    try:
        import viser
    except ImportError as err:
        raise ValueError(
            "the viewer needs the optional package viser: pip install 'mimic3d[viewer]'"
        ) from err
    return viser


@dataclasses.dataclass(frozen=True)
class _Request:
    settings: ViewSettings
    label: Tensor  # [25]
    aspect: float


class _ClientView:
    """A browser client: its camera, its worker and its latest frame."""

    def __init__(self, viewer: Viewer, client) -> None:
        self.viewer, self.client = viewer, client
        self.frame: Frame | None = None
        self.frames_delivered = 0
        self.worker: RenderWorker[_Request, tuple[Frame, float]] = RenderWorker(
            viewer._render,
            self._deliver,
            on_error=self._error,
            name=f"mimic3d-viewer-client{client.client_id}",
        )

    def current_request(self, settings: ViewSettings) -> _Request:
        camera = self.client.camera
        aspect = camera.image_width / max(camera.image_height, 1) if camera.image_height else 1.0
        panels = self.viewer.panel_count(settings)
        label = browser_label(camera.wxyz, camera.position, camera.fov, aspect, panels)
        return _Request(settings, label, aspect)

    def submit(self, preview: bool) -> None:
        self.worker.submit(self.current_request(self.viewer.settings), preview)

    def _deliver(self, result: tuple[Frame, float]) -> None:
        frame, aspect = result
        image = canvas_frame(frame.panels, aspect, PAD_COLOUR)
        # Previews go as JPEG (small, fast); full frames as PNG, so the browser shows exact pixels.
        self.client.scene.set_background_image(image, format="jpeg" if frame.preview else "png")
        self.frame = frame
        self.frames_delivered += 1
        if not frame.preview:
            self.viewer._report(frame)

    def _error(self, message: str) -> None:
        print(f"mimic3d view: a frame failed:\n{message}", flush=True)
        self.viewer.notify(self.client, "Render failed", message.strip().splitlines()[-1])


class Viewer:
    """Serves generator ``G`` at http://host:port until ``close()``.

    ``settings`` are the initial view settings, ``camera`` the camera preset name (default: from the
    model); files go to ``outdir``. ``port=0`` picks a free port (``url`` says which).
    """

    def __init__(
        self,
        G: nn.Module,
        host: str = "127.0.0.1",
        port: int = 8080,
        outdir: str | os.PathLike = "out",
        settings: ViewSettings | None = None,
        camera: str | None = None,
    ) -> None:
        viser = import_viser()
        self.G = G
        self.preset: CameraPreset = camera_preset_for(G, camera)
        self.renderer = FrameRenderer(G, self.preset)
        self.outdir = Path(outdir)
        self.caps = self.renderer.caps
        settings = (settings or self.default_settings(G)).validate(self.caps, self.renderer.num_ws)
        self.frontal = self.preset.frontal_label().float()
        self._clients: dict[int, _ClientView] = {}
        self._clients_lock = threading.Lock()
        self._animation: tuple[threading.Thread, threading.Event] | None = None
        self._save_lock = threading.Lock()
        self._closed = False

        self.server = viser.ViserServer(host=host, port=check_listen(host, port), verbose=False)
        try:
            self._set_up(G, settings)
        except BaseException:
            self.server.stop()
            raise

    def _set_up(self, G: nn.Module, settings: ViewSettings) -> None:
        """The scene, the GUI and the client callbacks of a fresh server."""
        # The tunnel would connect to share.viser.studio on a client's request: never.
        self.server.request_share_url = lambda *args, **kwargs: None
        self.server.scene.set_up_direction("+y")  # EG3D's world: +y up
        self.server.gui.configure_theme(dark_mode=True, show_share_button=False, control_width="medium")
        self.server.gui.main_panel.dock_right()  # beside the canvas, so it never covers the frame
        pose = self._pose(self.frontal, 1.0, 1)
        initial = self.server.initial_camera
        initial.position, initial.look_at, initial.up, initial.fov = (
            pose.position,
            pose.look_at,
            pose.up,
            pose.fov,
        )
        config = getattr(G, "config", None)
        img_resolution = int(getattr(G, "img_resolution", 0) or 0)
        self.panels = Panels(
            self.server.gui,
            settings,
            self.caps,
            self.renderer.num_ws,
            img_resolution,
            int(getattr(config, "neural_rendering_resolution", 0) or img_resolution),
            str(self.outdir),
            Actions(
                front=self.front,
                play=self.play,
                stop=self.stop,
                save_png=self.save_png,
                save_camera=self.save_camera,
                export_mesh=self.export_mesh,
                notify=self.notify,
            ),
            self._settings_changed,
        )
        self.server.on_client_connect(self._connect)
        self.server.on_client_disconnect(self._disconnect)

    # ------------------------------------------------------------------ state

    @staticmethod
    def default_settings(G: nn.Module) -> ViewSettings:
        """Seed 0, psi 0.7, the model's first branch (2D where it has one); the 3D branch at the image
        size (at most 128 on CPU)."""
        device = next(G.parameters()).device
        size = int(getattr(G, "img_resolution", 128))
        return ViewSettings(
            branch=capabilities(G).branches[0],
            resolution_3d=size if device.type != "cpu" else min(size, 128),
            preview_resolution=64 if device.type != "cpu" else 32,
        )

    @property
    def settings(self) -> ViewSettings:
        return self.panels.settings

    @property
    def url(self) -> str:
        host = self.server.get_host()
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{self.server.get_port()}"

    def panel_count(self, settings: ViewSettings) -> int:
        return 2 if settings.branch == "both" and settings.show != "planes" else 1

    def clients(self) -> list[_ClientView]:
        with self._clients_lock:
            return list(self._clients.values())

    # ------------------------------------------------------------------ clients and rendering

    def _connect(self, client) -> None:
        view = _ClientView(self, client)
        with self._clients_lock:
            self._clients[client.client_id] = view
        client.camera.on_update(lambda camera: view.submit(preview=True))
        # A browser's first camera message can precede its move to the initial camera; moving it
        # explicitly makes the camera update (and the refined frame) follow at once.
        self.set_camera(client, self.frontal)
        view.submit(preview=True)

    def _disconnect(self, client) -> None:
        with self._clients_lock:
            view = self._clients.pop(client.client_id, None)
        if view is not None:
            view.worker.close()

    def _settings_changed(self, settings: ViewSettings) -> None:
        for view in self.clients():
            view.submit(preview=False)

    def _render(self, request: _Request, preview: bool) -> tuple[Frame, float]:
        return self.renderer.render(request.settings, request.label, preview), request.aspect

    def _report(self, frame: Frame) -> None:
        s = frame.settings
        planes = (
            f", tri-planes {frame.planes_seconds:.2f} s" if frame.planes_seconds else " (tri-planes cached)"
        )
        size = "x".join(str(n) for n in frame.panels[0].shape[:2])
        self.panels.set_status([f"seed {s.seed}: {size} frame in {frame.seconds:.2f} s{planes}"])

    # ------------------------------------------------------------------ camera

    def _pose(self, label: Tensor, aspect: float, panels: int) -> BrowserPose:
        return label_pose(label, aspect, self.preset.pivot, panels)

    def set_camera(self, client, label: Tensor) -> None:
        """Move ``client``'s browser camera to ``label`` [25] (keeping its canvas, so its focal length)."""
        camera = client.camera
        aspect = camera.image_width / max(camera.image_height, 1) if camera.image_height else 1.0
        pose = self._pose(label, aspect, self.panel_count(self.settings))
        with client.atomic():
            camera.fov = pose.fov
            camera.position = pose.position
            camera.look_at = pose.look_at
            camera.up_direction = pose.up

    def front(self, client=None) -> None:
        for view in self._targets(client):
            self.set_camera(view.client, self.frontal)

    def play(self, trajectory: str, loop_seconds: float = 8.0) -> None:
        """Move every browser camera along ``trajectory`` (``mimic3d.tools.trajectories``) until ``stop``."""
        self.stop()
        frames = max(2, round(loop_seconds * ANIMATION_FPS))
        labels = trajectory_labels(trajectory, frames, self.preset)
        stop = threading.Event()

        def animate() -> None:
            step = 0
            while not stop.wait(1 / ANIMATION_FPS):
                for view in self.clients():
                    self.set_camera(view.client, labels[step % frames])
                step += 1

        thread = threading.Thread(target=animate, name="mimic3d-viewer-animation", daemon=True)
        self._animation = (thread, stop)
        thread.start()

    def stop(self) -> None:
        if self._animation is not None:
            thread, stop = self._animation
            stop.set()
            thread.join(5.0)
            self._animation = None

    # ------------------------------------------------------------------ saving (into outdir only)

    def _targets(self, client) -> list[_ClientView]:
        views = self.clients()
        if client is not None:
            views = [v for v in views if v.client.client_id == client.client_id] or views
        return views

    def _current(self, client) -> tuple[ViewSettings, Tensor, object]:
        """Settings, camera label and client of a save: ``client``'s view, else the first client's,
        else the frontal camera."""
        settings = self.settings
        views = self._targets(client)
        if views:
            request = views[0].current_request(settings)
            return settings, request.label, views[0].client
        return settings, self.frontal, None

    def _write_new(self, stem: str, suffix: str, write: Callable[[Path], object]) -> Path:
        """``write(path)`` to outdir/STEM_NNNN.SUFFIX, the first such name not taken (none is left
        behind when ``write`` fails)."""
        with self._save_lock:
            self.outdir.mkdir(parents=True, exist_ok=True)
            index = 0
            while (path := self.outdir / f"{stem}_{index:04d}{suffix}").exists():
                index += 1
            path.touch()  # reserve the name for this save
        try:
            write(path)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return path

    def save_png(self, client=None) -> Path:
        """Render the current frame in full and write it (the panels side by side) as a PNG."""
        settings, label, target = self._current(client)
        picture = self.renderer.render(settings, label).picture()
        path = self._write_new(
            f"seed{settings.seed:04d}_{settings.show}", ".png", lambda p: save_png(p, picture)
        )
        self.notify(target, "Saved", str(path))
        return path

    def save_camera(self, client=None) -> Path:
        """Write the current camera as JSON: the 25-float EG3D label and the view settings."""
        settings, label, target = self._current(client)
        record = {
            "label": [float(v) for v in label.tolist()],
            "format": "EG3D camera label: cam2world 4x4 row-major (OpenCV axes, world +y up) "
            "then normalised intrinsics 3x3 row-major",
            "fov_degrees": math.degrees(canvas_fov(float(label[16]), 1.0)),
            "settings": dataclasses.asdict(settings),
        }
        text = json.dumps(record, indent=2) + "\n"
        path = self._write_new(
            f"seed{settings.seed:04d}_camera", ".json", lambda p: write_text_atomic(p, text)
        )
        self.notify(target, "Saved", str(path))
        return path

    def export_mesh(self, client=None, resolution: int = 128, level: float = EG3D_LEVEL) -> Path:
        """Marching-cubes mesh of the current latent's density at raw-sigma ``level`` (``mimic3d mesh``'s
        defaults otherwise), with vertex colours, as PLY."""
        if not self.caps.planes:
            raise ValueError("export mesh: this generator has no density field")
        settings, _, target = self._current(client)
        self.notify(target, "Exporting mesh", f"{resolution}^3 density grid ...")
        ws = self.renderer.cache.ws(settings)
        volume, planes = seed_volume(self.G, ws, resolution)
        mesh, report = seed_mesh(self.G, planes, volume, level)
        path = self._write_new(f"seed{settings.seed:04d}_mesh", ".ply", lambda p: save_mesh(mesh, p))
        self.notify(target, "Saved", f"{path}: {report.describe()}")
        return path

    def notify(self, client, title: str, body: str) -> None:
        targets = [client] if client is not None else [v.client for v in self.clients()]
        for target in targets:
            try:
                target.add_notification(title, body, auto_close_seconds=6.0)
            except Exception:  # a client that just left
                pass

    # ------------------------------------------------------------------ shutdown

    def close(self, timeout: float = 30.0) -> None:
        """Stop the animation, every worker (after its frame in progress) and the server; returns once
        nothing listens on the port any more (or after ``timeout``)."""
        if self._closed:
            return
        self._closed = True
        self.stop()
        for view in self.clients():
            view.worker.close(timeout)
        host, port = self.server.get_host(), self.server.get_port()
        self.server.stop()
        deadline = time.monotonic() + timeout
        while is_listening(host, port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def __enter__(self) -> Viewer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine only (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_listening(host: str, port: int) -> bool:
    """Whether a server accepts connections on (host, port); a wildcard host is asked on the loopback."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def check_listen(host: str, port: int) -> int:
    """``port`` if a server can listen on (host, port) now; a free port when ``port`` is 0. ValueError
    naming --host or --port otherwise (viser itself would move to the next free port silently)."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"--port: expected a port number in [0, 65535], got {port!r}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise ValueError(f"--host: cannot resolve {host!r}: {err.strerror}") from err
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As the server will: a port in TIME_WAIT is free, one with a listener is not.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                raise ValueError(
                    f"--port: port {port} on {host} is in use; pick another (0: any free port)"
                ) from err
            raise ValueError(f"--host: cannot listen on {host}:{port}: {err.strerror}") from err
        return int(probe.getsockname()[1])
