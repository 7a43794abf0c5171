"""MP4 writing (H.264, yuv420p) and reading through the ffmpeg binary that imageio-ffmpeg ships."""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType

import imageio_ffmpeg
import numpy as np

DEFAULT_BITRATE = "10M"  # EG3D's gen_videos.py


class VideoWriter:
    """Writes uint8 frames [H, W, 3] of one fixed size to an MP4 file.

    H.264 in yuv420p needs even sizes, so an odd height or width gets one black row or column at the
    bottom / right (ffmpeg would otherwise rescale the frames). Use as a context manager.
    """

    def __init__(self, path: str | os.PathLike, fps: float = 30.0, bitrate: str = DEFAULT_BITRATE) -> None:
        if not fps > 0:
            raise ValueError(f"fps: expected a positive number, got {fps}")
        self.path = Path(path)
        self.fps = float(fps)
        self.bitrate = bitrate
        self.frame_size: tuple[int, int] | None = None  # (height, width) of the frames given
        self.frames_written = 0
        self._encoder = None

    def append(self, frame: np.ndarray) -> None:
        """Add one uint8 frame [H, W, 3]; every frame must have the first frame's size."""
        frame = np.asarray(frame)
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"frame: expected uint8 [H, W, 3], got {frame.dtype} {list(frame.shape)}")
        if self.frame_size is None:
            self.frame_size = frame.shape[:2]
            self._open()
        elif frame.shape[:2] != self.frame_size:
            raise ValueError(
                f"frame: size {frame.shape[:2]} differs from the first frame's {self.frame_size}"
            )
        height, width = self.frame_size
        padded = np.zeros((height + height % 2, width + width % 2, 3), np.uint8)
        padded[:height, :width] = frame
        self._encoder.send(np.ascontiguousarray(padded))
        self.frames_written += 1

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        height, width = self.frame_size
        self._encoder = imageio_ffmpeg.write_frames(
            str(self.path),
            (width + width % 2, height + height % 2),
            fps=self.fps,
            codec="libx264",
            bitrate=self.bitrate,
            quality=None,
            macro_block_size=2,
            ffmpeg_log_level="error",
        )
        self._encoder.send(None)

    def close(self) -> None:
        if self._encoder is not None:
            self._encoder.close()
            self._encoder = None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def read_video(path: str | os.PathLike) -> tuple[np.ndarray, float]:
    """All frames of a video as uint8 [F, H, W, 3] and its frame rate."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"video not found: {path}")
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    width, height = meta["size"]
    frames = [np.frombuffer(data, np.uint8).reshape(height, width, 3) for data in reader]
    return np.stack(frames), float(meta["fps"])
