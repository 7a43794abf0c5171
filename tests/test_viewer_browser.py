"""The viewer in a real headless browser (Debian's chromium): the page shows the rendered frame, pixel for
pixel; the browser's camera converts to our label; a seed set through the GUI API changes the frame; the
server shuts down cleanly. The browser reaches nothing but 127.0.0.1 (``browser_support``)."""

from __future__ import annotations

import json
import socket
import threading
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from browser_support import (  # noqa: F401  (loopback_only: autouse, connections to 127.0.0.1 only)
    HeadlessBrowser,
    chromium_unavailable_reason,
    find_chromium,
    loopback_only,
)

from mimic3d.models import TriplaneGenerator, generator_preset
from mimic3d.tools.imaging import to_uint8
from mimic3d.tools.latents import seed_ws

pytest.importorskip("viser", reason="the viewer needs viser: pip install 'mimic3d[viewer]'")
if reason := chromium_unavailable_reason():
    pytest.skip(f"no headless browser: {reason}", allow_module_level=True)

from mimic3d.viewer.app import Viewer  # noqa: E402
from mimic3d.viewer.frames import Frame, ViewSettings  # noqa: E402

# The 3D canvas is sized exactly through the viewport (DevTools): 3:1 beside the docked control panel,
# so the 32^2 frame (padded to 96 x 32) is shown magnified 12 times in its middle third.
WIDTH, HEIGHT = 1152, 384
SCALE = HEIGHT // 32
# The browser's bilinear texture filtering matches torch's (align_corners=False) to its 8-bit output
# rounding (0.5 levels); away from the square's rim, where the browser blends in the padding.
MEAN_LEVELS, MAX_LEVELS, RIM = 1.0, 2.0, SCALE // 2
# Labels are float32 and the browser computes in float64: a few ulps of O(1) entries.
LABEL_ATOL = 2e-6


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return TriplaneGenerator(generator_preset("tiny-mimic3d")).eval().requires_grad_(False)


def _settled(viewer: Viewer, predicate, timeout: float = 120.0) -> Frame:
    """The browser client's refined frame once it satisfies ``predicate``, is at the browser's current
    camera, and no further frame follows for half a second."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        views = viewer.clients()
        if views and views[0].worker.wait_idle(max(0.1, deadline - time.monotonic())):
            view = views[0]
            frame, count = view.frame, view.frames_delivered
            current = view.current_request(viewer.settings).label
            if (
                frame is not None
                and not frame.preview
                and predicate(frame)
                and torch.equal(frame.label, current)
            ):
                time.sleep(0.5)
                if view.frames_delivered == count:
                    return frame
        time.sleep(0.1)
    raise AssertionError("the browser's frame did not settle")


def _expected_on_screen(image: np.ndarray) -> np.ndarray:
    """The frame [32, 32, 3] as the browser magnifies it (bilinear) to [HEIGHT, HEIGHT, 3]."""
    tensor = torch.from_numpy(image).permute(2, 0, 1)[None].double()
    return (
        F.interpolate(tensor, scale_factor=SCALE, mode="bilinear", align_corners=False)[0]
        .permute(1, 2, 0)
        .numpy()
    )


def _canvas(browser: HeadlessBrowser) -> list[float] | None:
    """[x, y, width, height] of the page's largest canvas (the 3D scene), None before there is one."""
    rects = browser.evaluate(
        "JSON.stringify([...document.querySelectorAll('canvas')].map(c => {"
        "const r = c.getBoundingClientRect(); return [r.x, r.y, r.width, r.height]; }))"
    )
    rects = json.loads(rects) if rects else []
    return max(rects, key=lambda r: r[2] * r[3]) if rects else None


def _size_canvas(browser: HeadlessBrowser, timeout: float = 60.0) -> None:
    """Size the viewport so that the canvas is WIDTH x HEIGHT at the page's top left (twice in a row,
    a second apart: the layout has settled)."""
    viewport = WIDTH + 400
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        metrics = {"width": viewport, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False}
        browser.send("Emulation.setDeviceMetricsOverride", metrics)
        time.sleep(0.5)
        rect = _canvas(browser)
        if rect == [0, 0, WIDTH, HEIGHT]:
            time.sleep(1.0)
            if _canvas(browser) == rect:
                return
            continue
        if rect is not None and rect[2] > 0:
            viewport += WIDTH - round(rect[2])  # the docked panel keeps its width
    raise AssertionError(f"could not size the canvas to {WIDTH} x {HEIGHT}: {_canvas(browser)}")


def _screen_error(browser: HeadlessBrowser, expected: np.ndarray, timeout: float = 30.0) -> np.ndarray:
    """|screenshot - expected| inside the rendered square, from the first screenshot that shows it (the
    page draws a new background image a few frames after receiving it), or the last one tried."""
    left = (WIDTH - HEIGHT) // 2
    deadline = time.monotonic() + timeout
    while True:
        shot = browser.screenshot().astype(np.float64)
        assert shot.shape[0] == HEIGHT and shot.shape[1] >= WIDTH
        error = np.abs(shot[:, left : left + HEIGHT] - expected)[RIM:-RIM, RIM:-RIM]
        if error.mean() < MEAN_LEVELS or time.monotonic() > deadline:
            return error
        time.sleep(0.5)


def _direct(tiny, viewer: Viewer, seed: int) -> np.ndarray:
    ws = seed_ws(tiny, [seed], viewer.preset, truncation_psi=0.7)
    with torch.no_grad():
        image = tiny.synthesis(ws, viewer.frontal[None], noise_mode="const", perturb=False)["image"]
    return to_uint8(image)[0]


def test_the_browser_shows_the_frame_follows_the_seed_and_the_server_stops(tiny, tmp_path):
    viewer = Viewer(tiny, port=0, outdir=tmp_path, settings=ViewSettings(seed=0))
    port = viewer.server.get_port()
    browser = HeadlessBrowser(find_chromium(), WIDTH, HEIGHT + 200)
    try:
        browser.navigate(viewer.url)
        _settled(viewer, lambda f: True)  # the page is up, its control panel docked
        _size_canvas(browser)
        frame = _settled(viewer, lambda f: f.settings.seed == 0)
        assert _canvas(browser) == [0, 0, WIDTH, HEIGHT]
        # The viewer moved the browser's camera to the frontal preset; what the browser reports back
        # converts to that very label.
        torch.testing.assert_close(frame.label, viewer.frontal, atol=LABEL_ATOL, rtol=0)

        seed0 = _direct(tiny, viewer, 0)
        np.testing.assert_array_equal(frame.panels[0], seed0)
        error = _screen_error(browser, _expected_on_screen(seed0))
        assert error.mean() < MEAN_LEVELS and error.max() <= MAX_LEVELS, (error.mean(), error.max())

        viewer.panels.seed_number.value = 5  # through the GUI API, as the browser's number field does
        frame = _settled(viewer, lambda f: f.settings.seed == 5)
        assert viewer.panels.seed_slider.value == 5  # the two seed controls stay in step
        seed5 = _direct(tiny, viewer, 5)
        np.testing.assert_array_equal(frame.panels[0], seed5)
        error = _screen_error(browser, _expected_on_screen(seed5))
        assert error.mean() < MEAN_LEVELS and error.max() <= MAX_LEVELS, (error.mean(), error.max())
        # The two seeds' frames are far apart on screen, so the match above is not a coincidence.
        shot = browser.screenshot().astype(np.float64)
        left = (WIDTH - HEIGHT) // 2
        stale = np.abs(shot[:, left : left + HEIGHT] - _expected_on_screen(seed0))[RIM:-RIM, RIM:-RIM]
        assert stale.mean() > 10 * MEAN_LEVELS
    finally:
        browser.close()
        viewer.close()
    # Clean shutdown: nothing listens on the port any more and no viewer thread is left.
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still accepts connections"
    assert [t.name for t in threading.enumerate() if t.name.startswith("mimic3d-viewer")] == []
