"""Pixel conversion for the loader: any Pillow mode or channel layout to read-only RGB uint8.

16-bit and 32-bit integer images are mapped by their real range (``I;16`` by
0..65535, ``I`` and ``F`` by their finite minimum and maximum, ``F`` in [0, 1]
kept as is); transparency is composited over white; EXIF orientation is applied.

>>> import numpy as np
>>> rgb_from_channels(np.zeros((2, 2, 1), np.uint8)).shape
(2, 2, 3)
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageOps

from genguard._types import RGBArray

__all__ = ["readonly", "rgb_from_channels", "to_rgb"]

_WHITE: Final = (255, 255, 255)


def to_rgb(img: Image.Image) -> RGBArray:
    """Convert one frame of any mode to a read-only RGB uint8 array, orientation applied."""
    img.load()
    out = ImageOps.exif_transpose(img) if img.getexif().get(0x0112, 1) != 1 else img
    mode = out.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(out, dtype=np.float64)
        finite = arr[np.isfinite(arr)]
        if finite.size == 0:
            arr = np.zeros(arr.shape, dtype=np.float64)
        else:
            lo, hi = _range_of(mode, finite)
            arr = np.clip((np.nan_to_num(arr, nan=lo) - lo) / max(hi - lo, 1e-12), 0.0, 1.0) * 255.0
        gray = np.rint(arr).astype(np.uint8)
        return readonly(np.repeat(gray[:, :, None], 3, axis=2))
    if mode == "P" and "transparency" in out.info:
        out = out.convert("RGBA")
    elif mode == "P":
        out = out.convert("RGB")
    if out.mode in ("RGBA", "LA", "RGBa", "La", "PA") or "transparency" in out.info:
        rgba = out.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _WHITE + (255,))
        out = Image.alpha_composite(background, rgba).convert("RGB")
    elif out.mode != "RGB":
        out = out.convert("RGB")
    return readonly(np.asarray(out, dtype=np.uint8))


def _range_of(mode: str, values: npt.NDArray[np.float64]) -> tuple[float, float]:
    if mode.startswith("I;16"):
        return 0.0, 65535.0
    if mode == "F" and values.min() >= 0.0 and values.max() <= 1.0:
        return 0.0, 1.0
    return float(values.min()), float(values.max())


def rgb_from_channels(array: npt.NDArray[np.uint8]) -> RGBArray:
    """An ``HxWx1``, ``HxWx3`` or ``HxWx4`` uint8 array as read-only RGB; alpha composited over white."""
    c = array.shape[2]
    if c == 1:
        rgb = np.repeat(array, 3, axis=2)
    elif c == 4:
        alpha = array[:, :, 3:4].astype(np.uint16)
        rgb = ((array[:, :, :3].astype(np.uint16) * alpha + 255 * (255 - alpha) + 127) // 255).astype(np.uint8)
    else:
        rgb = array
    return readonly(rgb)


def readonly(array: npt.NDArray[np.uint8]) -> RGBArray:
    view = np.ascontiguousarray(array).view()
    view.flags.writeable = False
    return view
