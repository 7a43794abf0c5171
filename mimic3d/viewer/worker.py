"""The render worker: one thread per browser client, so that rendering never blocks the server.

Requests replace each other: the worker always renders the newest one and drops those that arrived
while it was busy (latest request wins). A request submitted as a preview (the camera is moving) is
rendered at the preview resolution; when no newer request arrives within ``settle_seconds`` after it,
the same request is rendered again in full (refined once the camera stops).
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

Request = TypeVar("Request")
Result = TypeVar("Result")


@dataclass
class _Pending(Generic[Request]):
    request: Request
    preview: bool


class RenderWorker(Generic[Request, Result]):
    """``render(request, preview) -> result`` on a worker thread, ``deliver(result)`` after each.

    Exceptions of ``render`` or ``deliver`` go to ``on_error(message)`` (default: printed) and the
    worker carries on with the next request.
    """

    def __init__(
        self,
        render: Callable[[Request, bool], Result],
        deliver: Callable[[Result], None],
        settle_seconds: float = 0.3,
        on_error: Callable[[str], None] | None = None,
        name: str = "mimic3d-viewer-render",
    ) -> None:
        if not settle_seconds >= 0:
            raise ValueError(f"settle_seconds: expected a non-negative number, got {settle_seconds}")
        self._render, self._deliver = render, deliver
        self._settle = settle_seconds
        self._on_error = on_error or (lambda message: print(message, flush=True))
        self._pending: _Pending[Request] | None = None
        self._closed = False
        self._busy = False
        self._condition = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, request: Request, preview: bool = False) -> None:
        """Queue ``request``, replacing any request not yet started."""
        with self._condition:
            if self._closed:
                return
            self._pending = _Pending(request, preview)
            self._condition.notify_all()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until nothing is pending or rendering (refinements included); False on timeout."""
        with self._condition:
            return self._condition.wait_for(
                lambda: self._closed or not (self._busy or self._pending), timeout
            )

    def close(self, timeout: float = 30.0) -> bool:
        """Stop after the render in progress; True when the thread has ended within ``timeout``."""
        with self._condition:
            self._closed = True
            self._pending = None
            self._condition.notify_all()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _loop(self) -> None:
        while True:
            with self._condition:
                self._condition.wait_for(lambda: self._closed or self._pending is not None)
                if self._closed:
                    return
                job, self._pending = self._pending, None
                self._busy = True
            try:
                self._deliver(self._render(job.request, job.preview))
            except Exception:  # a failed frame must not end the viewer
                self._on_error(traceback.format_exc())
            with self._condition:
                if job.preview and not self._closed:
                    # Refine unless the camera moves again within the settle time.
                    self._condition.wait_for(lambda: self._closed or self._pending is not None, self._settle)
                    if self._pending is None and not self._closed:
                        self._pending = _Pending(job.request, False)
                self._busy = False
                self._condition.notify_all()
