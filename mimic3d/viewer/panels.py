"""The viewer's GUI panel (viser): latent, interpolation, style mixing, view, camera and save controls.

Every control writes into one ``ViewSettings`` (``Panels.settings``); a change calls ``on_change``
with the new settings. Seeds come from a slider (0..999, for scrubbing) or a typed number (any seed);
whichever was changed last is the seed. Style-mixing layers are typed like ``mimic3d video
--mix-layers`` ("7-", "0-3", "2,5"); nothing typed in the browser names a file.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Sequence

from mimic3d.tools.mesh import EG3D_LEVEL
from mimic3d.tools.parsing import MAX_SEED, parse_layers
from mimic3d.tools.trajectories import TRAJECTORIES
from mimic3d.viewer.frames import Capabilities, ViewSettings

SLIDER_SEEDS = 999
MESH_RESOLUTIONS_SHOWN = ("64", "128", "256", "512")
BRANCH_NAMES = {"2d": "2D", "3d": "3D", "both": "2D + 3D"}


def resolution_choices(largest: int, current: int, smallest: int = 16) -> tuple[str, ...]:
    """Powers of two from ``smallest`` up to ``largest``, ``largest`` and ``current``, as dropdown strings."""
    sizes = {largest, current}
    size = smallest
    while size < largest:
        sizes.add(size)
        size *= 2
    return tuple(str(s) for s in sorted(sizes))


@dataclasses.dataclass
class Actions:
    """What the buttons do (the viewer supplies them); each gets the GUI event's client or None."""

    front: Callable[[object], None]
    play: Callable[[str, float], None]
    stop: Callable[[], None]
    save_png: Callable[[object], None]
    save_camera: Callable[[object], None]
    export_mesh: Callable[[object, int, float], None]
    notify: Callable[[object, str, str], None]


class Panels:
    """Builds the controls on ``gui`` (a viser ``GuiApi``) and keeps ``settings`` in step with them."""

    def __init__(
        self,
        gui,
        settings: ViewSettings,
        caps: Capabilities,
        num_ws: int,
        img_resolution: int,
        neural_resolution: int,
        outdir: str,
        actions: Actions,
        on_change: Callable[[ViewSettings], None],
    ) -> None:
        self.caps, self.num_ws, self.actions = caps, num_ws, actions
        self._settings = settings
        self._on_change = on_change
        self._lock = threading.Lock()
        self._syncing = False  # set while one seed control updates the other

        with gui.add_folder("Latent"):
            self.seed_slider = gui.add_slider(
                "Seed", 0, SLIDER_SEEDS, 1, min(settings.seed, SLIDER_SEEDS), hint="drag to scrub seeds"
            )
            self.seed_number = gui.add_number(
                "Typed seed", settings.seed, min=0, max=MAX_SEED, step=1, hint=f"any seed in [0, {MAX_SEED}]"
            )
            self.psi = gui.add_slider("Truncation psi", 0.0, 1.0, 0.05, settings.truncation_psi)
        with gui.add_folder("Interpolation", expand_by_default=False):
            self.blend_seed = gui.add_number("To seed", 1, min=0, max=MAX_SEED, step=1)
            self.blend = gui.add_slider("Blend", 0.0, 1.0, 0.01, 0.0, hint="0: the seed, 1: 'To seed' (in W)")
        with gui.add_folder("Style mixing", expand_by_default=False):
            self.mix = gui.add_checkbox("Mix styles", False)
            self.style_seed = gui.add_number("Style seed", 2, min=0, max=MAX_SEED, step=1)
            default_layers = f"{num_ws // 2}-"
            self.style_layers = gui.add_text(
                "Layers", default_layers, hint=f"ws indices from the style seed (0..{num_ws - 1}), e.g. '7-'"
            )
        with gui.add_folder("View"):
            self.branch = gui.add_dropdown(
                "Branch",
                [BRANCH_NAMES[b] for b in caps.branch_choices],
                initial_value=BRANCH_NAMES[settings.branch],
            )
            self.show = gui.add_dropdown("Show", list(caps.shows), initial_value=settings.show)
            self.resolution_3d = gui.add_dropdown(
                "3D size",
                resolution_choices(max(512, img_resolution), settings.resolution_3d),
                initial_value=str(settings.resolution_3d),
                hint="frame size of the 3D branch's volume render",
                visible="3d" in caps.branches,
            )
            self.resolution_2d = gui.add_dropdown(
                "2D render",
                resolution_choices(
                    max(2 * neural_resolution, 16), settings.resolution_2d or neural_resolution
                ),
                initial_value=str(settings.resolution_2d or neural_resolution),
                hint=f"neural rendering resolution before the super-resolution to {img_resolution}",
                visible=caps.planes and "2d" in caps.branches,
            )
            self.preview = gui.add_dropdown(
                "While moving",
                resolution_choices(128, settings.preview_resolution),
                initial_value=str(settings.preview_resolution),
                hint="volume-render size while the camera moves (no super-resolution)",
            )
        with gui.add_folder("Camera"):
            self.front = gui.add_button("Front")
            self.trajectory = gui.add_dropdown("Trajectory", list(TRAJECTORIES), initial_value="orbit")
            self.loop_seconds = gui.add_slider("Seconds per loop", 2.0, 30.0, 1.0, 8.0)
            self.play = gui.add_button("Play")
            self.stop = gui.add_button("Stop")
        with gui.add_folder("Save"):
            gui.add_markdown(f"Files go to `{outdir}`.")
            self.save_png = gui.add_button("Save PNG")
            self.save_camera = gui.add_button("Save camera label")
            self.mesh_resolution = gui.add_dropdown(
                "Mesh resolution", MESH_RESOLUTIONS_SHOWN, initial_value="128", visible=caps.planes
            )
            self.mesh_level = gui.add_number(
                "Mesh level", EG3D_LEVEL, step=0.5, hint="raw-sigma iso level", visible=caps.planes
            )
            self.export_mesh = gui.add_button("Export mesh", visible=caps.planes)
        self.status = gui.add_markdown("")
        self._connect()

    @property
    def settings(self) -> ViewSettings:
        with self._lock:
            return self._settings

    def _connect(self) -> None:
        for handle in (
            self.psi,
            self.blend_seed,
            self.blend,
            self.mix,
            self.style_seed,
            self.style_layers,
            self.branch,
            self.show,
            self.resolution_3d,
            self.resolution_2d,
            self.preview,
        ):
            handle.on_update(lambda event: self._changed(event.client))
        self.seed_slider.on_update(
            lambda event: self._seed_changed(self.seed_slider, self.seed_number, event)
        )
        self.seed_number.on_update(
            lambda event: self._seed_changed(self.seed_number, self.seed_slider, event)
        )
        a = self.actions
        buttons = [
            (self.front, lambda client: a.front(client)),
            (self.play, lambda client: a.play(self.trajectory.value, float(self.loop_seconds.value))),
            (self.stop, lambda client: a.stop()),
            (self.save_png, a.save_png),
            (self.save_camera, a.save_camera),
            (
                self.export_mesh,
                lambda client: a.export_mesh(
                    client, int(self.mesh_resolution.value), float(self.mesh_level.value)
                ),
            ),
        ]
        for button, action in buttons:
            button.on_click(lambda event, action=action, button=button: self._click(action, button, event))

    def _click(self, action: Callable[[object], object], button, event) -> None:
        """Run a button's action; a failure becomes a notification, not a traceback."""
        try:
            action(event.client)
        except Exception as err:  # bad input (ValueError) or a failed render: tell the user, go on
            self.actions.notify(event.client, f"{button.label} failed", str(err))

    def _seed_changed(self, source, other, event) -> None:
        if self._syncing:
            return
        seed = int(source.value)
        self._syncing = True
        try:
            if other is self.seed_number or seed <= SLIDER_SEEDS:
                other.value = seed
        finally:
            self._syncing = False
        self._changed(event.client, seed=seed)

    def _changed(self, client, seed: int | None = None) -> None:
        try:
            layers = tuple(parse_layers(self.style_layers.value, self.num_ws, "Layers"))
        except ValueError as err:
            self.actions.notify(client, "Style mixing", str(err))
            return
        branch = {name: key for key, name in BRANCH_NAMES.items()}[self.branch.value]
        with self._lock:
            self._settings = dataclasses.replace(
                self._settings,
                seed=self._settings.seed if seed is None else seed,
                truncation_psi=float(self.psi.value),
                blend_seed=int(self.blend_seed.value),
                blend=float(self.blend.value),
                style_seed=int(self.style_seed.value) if self.mix.value else None,
                style_layers=layers if self.mix.value else (),
                branch=branch,
                show=self.show.value,
                resolution_3d=int(self.resolution_3d.value),
                resolution_2d=int(self.resolution_2d.value),
                preview_resolution=int(self.preview.value),
            )
            settings = self._settings
        self._on_change(settings)

    def set_status(self, lines: Sequence[str]) -> None:
        self.status.content = "  \n".join(lines)
