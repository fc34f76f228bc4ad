"""The whole-frame models' inputs: NudeNet's letterbox and open_nsfw's centre view.

Both follow their packages' own preprocessing (NudeNet pads bottom and right to a square;
open_nsfw resizes to 256 px bilinear and crops the centre 224 px, BGR minus its means),
with the large-frame shrink of :func:`~genguard.embedders.bundled.resizing.resize`.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt
from PIL import Image

from genguard._types import FloatArray, RGBArray
from genguard.embedders.bundled.resizing import resize

__all__ = ["letterbox", "nsfw_view"]

_NSFW_MEAN_BGR: Final = np.array([104.0, 117.0, 123.0], dtype=np.float32)


def letterbox(frame: RGBArray, size: int) -> FloatArray:
    """NudeNet's input: pad bottom/right to a square, resize to ``size``, RGB in [0, 1], CHW."""
    h, w = frame.shape[:2]
    side = max(h, w)
    if side * side > 4 * h * w:
        # Extreme aspect ratio (1x20000): shrink first, so the canvas is never side x side (a MemoryError).
        scale = size / side
        frame = resize(frame, max(1, round(w * scale)), max(1, round(h * scale)))
        h, w, side = frame.shape[0], frame.shape[1], size
    if h == w:
        square = frame  # nothing to pad: skip the canvas and its copy
    else:
        square = np.zeros((side, side, 3), dtype=np.uint8)
        square[:h, :w] = frame
    resized = square if side == size else resize(square, size, size)
    out = np.empty((3, size, size), dtype=np.float32)
    return np.divide(resized.transpose(2, 0, 1), np.float32(255.0), out=out)


def nsfw_view(frame: RGBArray) -> FloatArray:
    """open_nsfw's input for a whole frame: bilinear 256x256, centre crop 224, BGR minus mean.

    Pillow resamples only the centre's source box (the ``box`` argument): the same pixels as
    resizing the whole frame to 256 px and cropping, bit for bit (``tests/test_resizing.py``),
    for three quarters of the work.
    """
    h, w = frame.shape[:2]
    sx, sy = w / 256, h / 256
    img = Image.fromarray(np.ascontiguousarray(frame)).resize(
        (224, 224), Image.Resampling.BILINEAR, box=(16 * sx, 16 * sy, 240 * sx, 240 * sy)
    )
    return _nsfw_normalise(np.asarray(img, dtype=np.uint8))


def _nsfw_normalise(rgb224: npt.NDArray[np.uint8]) -> FloatArray:
    return np.ascontiguousarray(rgb224[:, :, ::-1].astype(np.float32) - _NSFW_MEAN_BGR)
