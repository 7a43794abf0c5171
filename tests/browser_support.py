"""A real headless browser for the viewer tests: Debian's ``chromium``, driven over the DevTools protocol.

The browser runs with a fresh profile, no background networking and a host resolver that maps every
name except 127.0.0.1 to "not found", so a page can reach nothing but the local test server. The
DevTools endpoint itself listens on 127.0.0.1 only.
"""

from __future__ import annotations

import base64
import io
import ipaddress
import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

CHROMIUM_NAMES = ("chromium", "chromium-browser")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--no-default-browser-check",
    "--metrics-recording-only",
    "--force-device-scale-factor=1",
    # WebGL (the viewer draws with three.js) on the CPU rasteriser, as --disable-gpu leaves it.
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    # Nothing but 127.0.0.1 resolves, and no proxy is consulted.
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    "--no-proxy-server",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
)


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


class HeadlessBrowser:
    """One chromium process with one page; ``navigate``, ``evaluate``, ``screenshot``, ``close``."""

    def __init__(self, executable: str, width: int, height: int, timeout: float = 60.0) -> None:
        from websockets.sync.client import connect

        self.profile = Path(tempfile.mkdtemp(prefix="mimic3d-chromium-"))
        self.process = subprocess.Popen(
            [
                executable,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={self.profile}",
                f"--window-size={width},{height}",
            ]
            + ["about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._id = 0
        try:
            port = self._devtools_port(timeout)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=timeout) as response:
                pages = [t for t in json.load(response) if t.get("type") == "page"]
            self.socket = connect(pages[0]["webSocketDebuggerUrl"], max_size=None, open_timeout=timeout)
        except BaseException:
            self.close()
            raise
        self.send("Page.enable")
        self.send("Runtime.enable")

    def _devtools_port(self, timeout: float) -> int:
        """The DevTools port chromium picked (it writes it into the profile's DevToolsActivePort)."""
        active = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                error = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                raise RuntimeError(f"chromium exited with status {self.process.returncode}: {error[-2000:]}")
            if active.exists() and active.read_text().strip():
                return int(active.read_text().split()[0])
            time.sleep(0.1)
        raise TimeoutError("chromium did not open its DevTools port")

    def send(self, method: str, params: dict | None = None, timeout: float = 60.0) -> dict:
        """One DevTools command; returns its result (events in between are skipped)."""
        self._id += 1
        self.socket.send(json.dumps({"id": self._id, "method": method, "params": params or {}}))
        deadline = time.monotonic() + timeout
        while True:
            message = json.loads(self.socket.recv(timeout=max(0.1, deadline - time.monotonic())))
            if message.get("id") == self._id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def navigate(self, url: str) -> None:
        if not url.startswith("http://127.0.0.1:"):
            raise ValueError(f"the test browser only visits 127.0.0.1, not {url}")
        self.send("Page.navigate", {"url": url})

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        return result.get("result", {}).get("value")

    def screenshot(self) -> np.ndarray:
        """uint8 [H, W, 3] of the page as shown."""
        data = self.send("Page.captureScreenshot", {"format": "png"})["data"]
        return np.asarray(PIL.Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))

    def close(self) -> None:
        socket = getattr(self, "socket", None)
        if socket is not None:
            try:
                self.send("Browser.close", timeout=10)
            except Exception:
                pass
            socket.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        if self.process.stderr:
            self.process.stderr.close()
        shutil.rmtree(self.profile, ignore_errors=True)


def chromium_unavailable_reason() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if find_chromium() is None:
        return "no chromium on PATH (Debian: apt-get install -y chromium; .ci/run installs it)"
    return None


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    """Fail any connection from the test process to an address other than the loopback."""
    connect = socket.socket.connect

    def guarded(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            host = address[0]
            if host != "localhost" and not ipaddress.ip_address(host).is_loopback:
                raise AssertionError(f"a test tried to reach {address}")
        return connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
