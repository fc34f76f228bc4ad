"""Shrinking frames for the bundled models: exact halvings first, then one final resize.

Every whole-frame model input (NudeNet's 320 px letterbox, open_nsfw's 256 px view, the
face finder's views) is a large frame shrunk several times. Area averaging straight
from 1024 to 320 px costs OpenCV several times as much as an exact 2 x 2 average, so
:func:`halve_to` first takes exact halvings while the result stays at least the
target size (times 1.5), and the last step shrinks by 1.5 to 3. Each output pixel is still
an average over the input pixels it covers; only where its edge cuts a 2 x 2 block are
that block's pixels weighted alike (under one grey level on average on photos,
``tests/test_resizing.py``).
"""

from __future__ import annotations

import numpy as np

from genguard._types import RGBArray

__all__ = ["halve_to", "resize"]


def halve_to(image: RGBArray, w: int, h: int) -> RGBArray:
    """``image`` halved (2 x 2 averages) while both sides are even and the half is at least 1.5 times ``w`` x ``h``.

    Stopping at 1.5 times the target keeps the last, exact area step over at least 1.5 x 1.5
    half-pixels, so the 2 x 2 blocks its edges cut weigh little.
    """
    import cv2

    while image.shape[1] >= 3 * w and image.shape[0] >= 3 * h and image.shape[1] % 2 == 0 and image.shape[0] % 2 == 0:
        half = (image.shape[1] // 2, image.shape[0] // 2)
        image = np.asarray(cv2.resize(np.ascontiguousarray(image), half, interpolation=cv2.INTER_AREA), dtype=np.uint8)
    return image


def resize(image: RGBArray, w: int, h: int) -> RGBArray:
    """``image`` resized to ``w`` x ``h`` (area averaging when shrinking, bilinear when growing)."""
    import cv2

    image = halve_to(image, w, h)
    if image.shape[1] == w and image.shape[0] == h:
        return np.ascontiguousarray(image)
    interp = cv2.INTER_AREA if w < image.shape[1] else cv2.INTER_LINEAR
    return np.asarray(cv2.resize(np.ascontiguousarray(image), (w, h), interpolation=interp), dtype=np.uint8)
