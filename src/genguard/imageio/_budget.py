"""The memory plan of one decode, made from the header before any pixel is decoded.

Every buffer the loader holds at once counts: the decoder's own image (for an
animation, its canvas, the previous canvas and the disposal copy), a mode
conversion where Pillow cannot shrink the mode directly, the shrunk copy, the
temporaries of the alpha views, and every view of every frame kept for
scoring. :func:`plan_reduction` picks the smallest integer shrink factor whose
peak fits the budget, or refuses the image.

>>> plan_reduction((1024, 768), "RGB", frames=1, max_frames=16, budget=300_000_000)
1
>>> plan_reduction((7000, 7000), "RGBA", frames=1, max_frames=16, budget=300_000_000)
3
"""

from __future__ import annotations

import math
from typing import Final

from genguard.errors import ImageTooLargeError

__all__ = ["ANALYSIS_SIDE", "MAX_WORK_BYTES", "bytes_per_pixel", "plan_reduction"]

MAX_WORK_BYTES: Final = 300_000_000
"""Default budget for the pixel buffers alive at once while one image is decoded (bytes)."""

ANALYSIS_SIDE: Final = 2048
"""Frames are shrunk by ``sqrt(width x height) // ANALYSIS_SIDE`` (box filter) once decoded: the
embedders look at 1024 px at most, so frames keep 4 to 16 megapixels of detail (more where memory allows
nothing less); images up to 2048 x 2048 are never shrunk."""

_BYTES: Final = {"1": 1, "L": 1, "P": 1, "LA": 2, "La": 2, "PA": 2, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2}
_REDUCIBLE: Final = frozenset({"L", "LA", "La", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "I", "F"})
_VIEW_TEMP: Final = 4 + 6 + 3 + 3  # RGBA copy, uint16 premultiplied, over-black, over-white per pixel
_ANIMATION_BUFFERS: Final = 3  # canvas, previous canvas, disposal copy


def bytes_per_pixel(mode: str) -> int:
    """Bytes Pillow stores per pixel in ``mode`` (4 for the 32-bit and RGB-like modes)."""
    return _BYTES.get(mode, 4)


def reducible(mode: str) -> bool:
    """True when ``Image.reduce`` works on ``mode`` without a conversion first."""
    return mode in _REDUCIBLE


def plan_reduction(
    size: tuple[int, int],
    mode: str,
    *,
    frames: int,
    max_frames: int,
    budget: int,
    alpha: bool | None = None,
    convert: bool | None = None,
) -> int:
    """The shrink factor for a frame of ``size`` in ``mode``, or :class:`ImageTooLargeError` when none fits ``budget``.

    Parameters
    ----------
    size : (width, height)
        Of one frame (the canvas of an animation).
    mode : str
        Pillow mode as decoded.
    frames : int
        Frames in the file; above 1 the decoder's animation buffers are counted.
    max_frames : int
        Distinct frames that may be kept for scoring.
    budget : int
        Bytes of pixel buffers allowed at once.
    alpha : bool or None
        Whether the frames carry transparency (three views each); None guesses from ``mode``.
    convert : bool or None
        Whether a frame is converted at full size before shrinking; None: when Pillow cannot shrink ``mode``.
    """
    w, h = size
    native_pixels = w * h
    animated = frames > 1
    bpp = bytes_per_pixel(mode)
    decoder = native_pixels * bpp * (_ANIMATION_BUFFERS if animated else 1)
    converted = native_pixels * 4 if (convert if convert is not None else not reducible(mode)) else 0  # P, 1, I;16
    views = 3 if (alpha if alpha is not None else mode in ("RGBA", "LA", "RGBa", "La", "PA", "P")) else 1
    kept_frames = min(frames, max_frames)
    factor = max(1, math.isqrt(native_pixels) // ANALYSIS_SIDE)
    while True:
        small = math.ceil(w / factor) * math.ceil(h / factor)
        shrunk = small * 4 if factor > 1 else 0
        decode_peak = decoder + converted + shrunk
        work_peak = (decoder if animated else 0) + small * (4 + _VIEW_TEMP) + kept_frames * views * small * 3
        peak = max(decode_peak, work_peak)
        if peak <= budget:
            return factor
        if decoder + converted > budget or small <= 1:
            need = decoder + converted
            raise ImageTooLargeError(
                f"decoding this {w}x{h} {mode} {'animation' if animated else 'image'} needs about "
                f"{max(need, peak) // 1_000_000} MB of pixel buffers, over the budget of {budget // 1_000_000} MB; "
                "refused before decoding (raise max_work_bytes to accept it)"
            )
        factor = factor + 1 if factor < 8 else factor * 2
