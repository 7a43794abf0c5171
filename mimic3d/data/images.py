"""Image decoding/encoding and the dataset tool's pixel transforms (crop, resize, alpha)."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator

import numpy as np
import PIL
import PIL.Image

# Modes stored in EG3D-format datasets and their channel counts.
_MODE_CHANNELS = {"L": 1, "RGB": 3, "RGBA": 4}
BACKGROUNDS = {"white": 255, "black": 0}


@contextlib.contextmanager
def _decoding(where: str) -> Iterator[None]:
    """Turn PIL's errors on unreadable image files into a ValueError naming ``where``."""
    try:
        yield
    except PIL.UnidentifiedImageError:
        raise ValueError(
            f"{where}: cannot decode image (not an image, or a truncated or corrupt file)"
        ) from None
    except (OSError, SyntaxError, EOFError, PIL.Image.DecompressionBombError) as err:
        raise ValueError(f"{where}: cannot decode image (truncated or corrupt file: {err})") from None


def decode_image(data: bytes, where: str) -> np.ndarray:
    """Decode an image file as stored in a dataset.

    Args:
        data: encoded bytes (PNG, JPEG, ...).
        where: file name used in error messages.
    Returns:
        uint8 array [H, W, C] with C in {1, 3, 4}.
    """
    with _decoding(where), PIL.Image.open(io.BytesIO(data)) as img:
        img.load()
        mode = img.mode
        if mode not in _MODE_CHANNELS:
            raise ValueError(
                f"{where}: image mode '{mode}' is not supported (expected L, RGB or RGBA; "
                "convert it with `mimic3d dataset build`)"
            )
        array = np.array(img, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    return array


def encode_png(image: np.ndarray, compress_level: int = 1) -> bytes:
    """PNG bytes of a uint8 [H, W, C] image (C in {1, 3, 4}); low compression keeps decoding fast."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f"image: expected uint8 [H, W, 1|3|4], got {image.dtype} {list(image.shape)}")
    pixels = image[:, :, 0] if image.shape[2] == 1 else image
    buffer = io.BytesIO()
    PIL.Image.fromarray(np.ascontiguousarray(pixels)).save(
        buffer, format="png", compress_level=compress_level
    )
    return buffer.getvalue()


def open_source_image(file: str | io.BytesIO, where: str) -> PIL.Image.Image:
    """Open any image the dataset tool accepts, as RGB or RGBA (palette/LA/16-bit/CMYK converted).

    Args:
        file: path or file object; ``where`` names it in error messages.
    """
    with _decoding(where):
        img = PIL.Image.open(file)
        img.load()
    has_alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
    if img.mode.startswith("I;16") or img.mode == "I":
        # 16-bit grayscale: keep the top 8 bits rather than letting PIL clip at 255.
        img = PIL.Image.fromarray((np.asarray(img, dtype=np.uint32) >> 8).astype(np.uint8), "L")
    return img.convert("RGBA" if has_alpha else "RGB")


def center_crop_box(width: int, height: int) -> tuple[int, int, int]:
    """(left, top, size) of the largest centred square, rounded like PIL integer crops."""
    size = min(width, height)
    return (width - size) // 2, (height - size) // 2, size


def center_crop_resize(img: PIL.Image.Image, resolution: int) -> PIL.Image.Image:
    """Largest centred square, resized with Lanczos to ``resolution`` (alpha kept)."""
    left, top, size = center_crop_box(*img.size)
    img = img.crop((left, top, left + size, top + size))
    if size != resolution:
        img = img.resize((resolution, resolution), PIL.Image.LANCZOS)
    return img


def composite_on_background(img: PIL.Image.Image, background: str) -> np.ndarray:
    """RGB uint8 [H, W, 3]: RGBA images alpha-composited on a white or black background."""
    if background not in BACKGROUNDS:
        raise ValueError(f"background: expected one of {sorted(BACKGROUNDS)}, got '{background}'")
    rgba = np.asarray(img.convert("RGBA"), dtype=np.float32)
    alpha = rgba[:, :, 3:] / 255.0
    rgb = rgba[:, :, :3] * alpha + BACKGROUNDS[background] * (1.0 - alpha)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
