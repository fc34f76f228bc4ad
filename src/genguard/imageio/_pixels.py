"""Pixel conversion for the loader: one decoded frame to the RGB views a person could see.

A frame without transparency has one view, its colours. A frame whose alpha
channel is not trivial (any pixel below 255) has up to three, because a viewer
may show it over any background and a later pipeline may drop the alpha:

- ``over_white``: composited over white;
- ``over_black``: composited over black;
- ``colour``: the colour channels with the alpha channel ignored.

Views that come out identical are kept once. 16-bit and 32-bit integer images
are mapped by their real range (``I;16`` by 0..65535, ``I`` and ``F`` by their
finite minimum and maximum, ``F`` in [0, 1] kept as is).

>>> import numpy as np
>>> rgb_from_channels(np.zeros((2, 2, 1), np.uint8))[0][1].shape
(2, 2, 3)
>>> [name for name, _ in alpha_views(np.zeros((2, 2, 4), np.uint8))]
['over_white', 'over_black']
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt
from PIL import Image

from genguard._types import RGBArray

__all__ = ["ALPHA_VIEWS", "OPAQUE", "View", "alpha_views", "frame_views", "has_alpha", "readonly", "rgb_from_channels"]

OPAQUE: Final = ""
"""The name of the one view of a frame without (or with fully opaque) alpha."""

ALPHA_VIEWS: Final = ("over_white", "over_black", "colour")
"""The views of a frame with a non-trivial alpha channel, in the order they are scored."""

View = tuple[str, RGBArray]
_ALPHA_MODES: Final = frozenset({"RGBA", "LA", "RGBa", "La", "PA"})
_WIDE_MODES: Final = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I", "F"})


def has_alpha(img: Image.Image) -> bool:
    """True when the frame's mode or palette carries transparency."""
    return img.mode in _ALPHA_MODES or "transparency" in img.info


def frame_views(img: Image.Image) -> list[View]:
    """The views of one loaded frame of any Pillow mode (orientation is the caller's business)."""
    mode = img.mode
    if mode in _WIDE_MODES:
        return [(OPAQUE, _wide_to_rgb(img))]
    if has_alpha(img):
        rgba = img if mode == "RGBA" else img.convert("RGBA")
        return alpha_views(np.asarray(rgba, dtype=np.uint8))
    rgb = img if mode == "RGB" else img.convert("RGB")
    return [(OPAQUE, readonly(np.asarray(rgb, dtype=np.uint8)))]


def alpha_views(rgba: npt.NDArray[np.uint8]) -> list[View]:
    """Views of an ``HxWx4`` array: its colours when every pixel is opaque, else the alpha views, duplicates dropped."""
    alpha = rgba[:, :, 3]
    colour = rgba[:, :, :3]
    if int(alpha.min()) == 255:
        return [(OPAQUE, readonly(colour))]
    a = alpha[:, :, None].astype(np.uint16)
    premultiplied = colour.astype(np.uint16)
    premultiplied *= a
    over_black = ((premultiplied + 127) // 255).astype(np.uint8)
    premultiplied += 255 * (255 - a)
    premultiplied += 127
    premultiplied //= 255
    over_white = premultiplied.astype(np.uint8)
    del premultiplied, a
    views: list[View] = []
    for name, arr in zip(ALPHA_VIEWS, (over_white, over_black, colour)):
        if not any(np.array_equal(arr, kept) for _, kept in views):
            views.append((name, readonly(arr)))
    return views


def _wide_to_rgb(img: Image.Image) -> RGBArray:
    arr = np.array(img, dtype=np.float32)  # a writable copy: converted in place below
    finite = np.isfinite(arr)
    if not finite.any():
        gray = np.zeros(arr.shape, dtype=np.uint8)
    else:
        lo, hi = _range_of(img.mode, arr[finite] if not finite.all() else arr)
        np.nan_to_num(arr, copy=False, nan=lo, posinf=hi, neginf=lo)
        arr -= lo
        arr *= 255.0 / max(hi - lo, 1e-12)
        np.clip(arr, 0.0, 255.0, out=arr)
        gray = np.rint(arr).astype(np.uint8)
    return readonly(np.repeat(gray[:, :, None], 3, axis=2))


def _range_of(mode: str, values: npt.NDArray[np.float32]) -> tuple[float, float]:
    if mode.startswith("I;16"):
        return 0.0, 65535.0
    lo, hi = float(values.min()), float(values.max())
    if mode == "F" and lo >= 0.0 and hi <= 1.0:
        return 0.0, 1.0
    return lo, hi


def rgb_from_channels(array: npt.NDArray[np.uint8]) -> list[View]:
    """The views of an ``HxWx1``, ``HxWx3`` or ``HxWx4`` uint8 array."""
    c = array.shape[2]
    if c == 1:
        return [(OPAQUE, readonly(np.repeat(array, 3, axis=2)))]
    if c == 4:
        return alpha_views(array)
    return [(OPAQUE, readonly(array))]


def readonly(array: npt.NDArray[np.uint8]) -> RGBArray:
    view = np.ascontiguousarray(array).view()
    view.flags.writeable = False
    return view
