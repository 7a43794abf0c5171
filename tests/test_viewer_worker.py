"""The viewer's render worker: latest request wins, previews are refined once requests stop, errors pass."""

from __future__ import annotations

import threading

import pytest

from mimic3d.viewer.worker import RenderWorker


class _Recorder:
    """A render function that records its calls and can be held at the first one."""

    def __init__(self, hold_first: bool = False) -> None:
        self.calls: list[tuple[object, bool]] = []
        self.delivered: list[tuple[object, bool]] = []
        self.started = threading.Event()
        self.release = threading.Event()
        if not hold_first:
            self.release.set()

    def render(self, request, preview):
        self.calls.append((request, preview))
        self.started.set()
        assert self.release.wait(10)
        return request, preview

    def deliver(self, result):
        self.delivered.append(result)


def test_latest_request_wins_while_rendering():
    recorder = _Recorder(hold_first=True)
    worker = RenderWorker(recorder.render, recorder.deliver, settle_seconds=0.0)
    try:
        worker.submit(1)
        assert recorder.started.wait(10)
        for request in (2, 3, 4, 5):  # arrive while 1 renders
            worker.submit(request)
        recorder.release.set()
        assert worker.wait_idle(10)
    finally:
        assert worker.close()
    assert recorder.calls == [(1, False), (5, False)]
    assert recorder.delivered == recorder.calls


def test_a_preview_is_refined_when_no_newer_request_comes():
    recorder = _Recorder()
    worker = RenderWorker(recorder.render, recorder.deliver, settle_seconds=0.05)
    try:
        worker.submit("a", preview=True)
        assert worker.wait_idle(10)
        assert recorder.calls == [("a", True), ("a", False)]
    finally:
        worker.close()


def test_a_newer_request_within_the_settle_time_replaces_the_refinement():
    recorder = _Recorder()
    worker = RenderWorker(recorder.render, recorder.deliver, settle_seconds=1.0)
    delivered_first = threading.Event()
    deliver = recorder.deliver
    worker._deliver = lambda result: (deliver(result), delivered_first.set())
    try:
        worker.submit("moving", preview=True)
        assert delivered_first.wait(10)
        worker.submit("moved", preview=True)  # the camera moved again: no refinement of "moving"
        assert worker.wait_idle(20)
    finally:
        worker.close()
    assert recorder.calls == [("moving", True), ("moved", True), ("moved", False)]


def test_errors_are_reported_and_the_worker_goes_on():
    errors = []
    delivered = []

    def render(request, preview):
        if request == "bad":
            raise RuntimeError("broken frame")
        return request

    worker = RenderWorker(render, delivered.append, settle_seconds=0.0, on_error=errors.append)
    try:
        worker.submit("bad")
        assert worker.wait_idle(10)
        worker.submit("good")
        assert worker.wait_idle(10)
    finally:
        worker.close()
    assert delivered == ["good"]
    assert len(errors) == 1 and "RuntimeError: broken frame" in errors[0]


def test_close_ends_the_thread_and_ignores_later_requests():
    recorder = _Recorder()
    worker = RenderWorker(recorder.render, recorder.deliver)
    assert worker.alive
    assert worker.close(10)
    assert not worker.alive
    worker.submit("late")
    assert recorder.calls == []
    with pytest.raises(ValueError, match="settle_seconds"):
        RenderWorker(recorder.render, recorder.deliver, settle_seconds=-1)
