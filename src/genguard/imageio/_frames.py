"""Walking the frames of one decoded image: shrink, orient, deduplicate, and take every view.

Every frame of an animation or multi-page file is decoded in order (decoders
compose each frame on the last). A frame identical to one already kept (same
pixels after shrinking), or near-identical (its 32x32 area-averaged RGBA
thumbnail within :data:`NEAR_LEVELS` grey levels of a kept frame's at every
pixel), is skipped; every other frame is kept, with all its views. A file with
more distinct frames than ``max_frames`` is refused: no frame goes unseen.
Frame durations play no part: a frame shown for 0 ms counts like any other.
"""

from __future__ import annotations

import hashlib
import math
from typing import Final

import numpy as np
import numpy.typing as npt
from PIL import Image

from genguard.errors import ImageTooLargeError
from genguard.imageio._budget import plan_reduction, reducible
from genguard.imageio._pixels import View, frame_views, has_alpha

__all__ = ["NEAR_LEVELS", "Frame", "orientation_of", "shrink", "walk_frames"]

NEAR_LEVELS: Final = 2
"""Two frames whose 32x32 RGBA thumbnails differ by at most this many levels everywhere are one frame."""

Frame = tuple[int, list[View]]
_THUMB: Final = 32
_TRANSPOSE: Final = {
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90,
}


def orientation_of(img: Image.Image) -> int:
    """The EXIF orientation tag of a loaded frame (1 when absent or not a valid orientation)."""
    value = img.getexif().get(0x0112, 1)
    return value if isinstance(value, int) and value in _TRANSPOSE else 1


def shrink(img: Image.Image, factor: int, orientation: int = 1) -> Image.Image:
    """Box-shrink a loaded frame by an integer ``factor`` and apply the EXIF ``orientation``; never modifies ``img``."""
    frame = _reduce(img, factor) if factor > 1 else img
    if orientation != 1:
        frame = frame.transpose(_TRANSPOSE[orientation])
    return frame


def _reduce(frame: Image.Image, factor: int) -> Image.Image:
    if frame.mode.startswith("I;16"):  # keep the 0..65535 -> 0..255 mapping: shrink as 32-bit, then scale to L
        return frame.convert("I").reduce(factor).point(lambda v: v / 257.0).convert("L")
    if not reducible(frame.mode):  # P and 1
        frame = frame.convert("RGBA" if has_alpha(frame) else "RGB" if frame.mode == "P" else "L")
    if frame.mode in ("RGBA", "LA"):
        # Image.reduce would first make a premultiplied copy at full size; the core call averages colour
        # and alpha as they are, with no copy (the colour view wants unpremultiplied colours anyway).
        frame.load()
        return frame._new(frame.im.reduce((factor, factor), (0, 0) + frame.size))
    return frame.reduce(factor)


def _thumbnail(frame: Image.Image) -> npt.NDArray[np.int16]:
    rgba = frame if frame.mode == "RGBA" else frame.convert("RGBA")
    return np.asarray(rgba.resize((_THUMB, _THUMB), Image.Resampling.BOX), dtype=np.int16)


def walk_frames(
    img: Image.Image, *, n_frames: int, max_frames: int, max_pixels: int, budget: int, max_walked: int
) -> list[Frame]:
    """Decode every frame of ``img`` in order; the distinct ones, each with its views and source index.

    Raises
    ------
    ImageTooLargeError
        A frame over ``max_pixels`` or the memory budget, more than ``max_walked`` pixels decoded in all
        (pages of a TIFF may each have their own size), or more than ``max_frames`` distinct frames.
    """
    from genguard.imageio.loader import check_pixels

    kept: list[Frame] = []
    digests: set[bytes] = set()
    thumbs: list[npt.NDArray[np.int16]] = []
    factors: dict[tuple[int, int], int] = {}
    orientation = 1
    walked = 0
    for i in range(n_frames):
        img.seek(i)
        size = img.size
        check_pixels(size, max_pixels)
        walked += size[0] * size[1]
        if walked > max_walked:
            raise ImageTooLargeError(
                f"decoding frames 0-{i} of {n_frames} would walk over {max_walked} pixels; refused before frame {i}"
            )
        if size not in factors:  # pages of a TIFF may differ in size; animation frames share the canvas
            factors[size] = plan_reduction(size, "RGBA", frames=n_frames, max_frames=max_frames, budget=budget,
                                           alpha=True, convert=True)
        img.load()
        if i == 0:
            orientation = orientation_of(img)
        frame = shrink(img, factors[size], orientation)
        digest = hashlib.blake2b(frame.tobytes(), digest_size=16, person=frame.mode.encode()[:16]).digest()
        if digest in digests:
            continue
        digests.add(digest)
        thumb = _thumbnail(frame)
        if any(int(np.abs(thumb - t).max()) <= NEAR_LEVELS for t in thumbs):
            continue
        if len(kept) == max_frames:
            raise ImageTooLargeError(
                f"more than {max_frames} distinct frames (frame {i} of {n_frames} is the {max_frames + 1}th); "
                "every distinct frame is scored, so this is refused; raise max_frames to accept it"
            )
        thumbs.append(thumb)
        kept.append((i, frame_views(frame)))
    return kept


def shrunk_size(size: tuple[int, int], factor: int) -> tuple[int, int]:
    return math.ceil(size[0] / factor), math.ceil(size[1] / factor)
