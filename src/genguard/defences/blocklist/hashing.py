"""PDQ hashes of frames: the plain hash, its 8 dihedral variants, and a contrast-normalised fallback.

PDQ (Meta's open perceptual hash, computed with the ``pdqhash`` package) maps
an image to 256 bits; copies that are resized or re-encoded stay within a few
bits, unrelated images sit near 128. A mirrored or rotated copy does not, so
:func:`frame_hash` also keeps the hashes of the frame's 8 dihedral transforms
(``pdqhash.compute_dihedral``: one pass, about the cost of one hash), and the
blocklist matches each of them. A frame of low contrast hashes with low
quality (PDQ's own reliability score); such a frame is stretched to full
contrast and hashed again, and the stretched hashes are matched when their
quality is good.
"""

from __future__ import annotations

from typing import Final, NamedTuple

import numpy as np

from genguard._types import ImageInput, RGBArray
from genguard.errors import BlocklistError

__all__ = ["DEFAULT_MIN_QUALITY", "VARIANTS", "FrameHash", "frame_hash", "hash_image", "pdq_hash"]

DEFAULT_MIN_QUALITY: Final = 50
"""Frames whose PDQ quality is below this are not matched as they are (Meta's threshold)."""

VARIANTS: Final = ("original", "rotate90", "rotate180", "rotate270", "flip_vertical", "flip_horizontal", "transpose", "transverse")
"""Names of ``pdqhash.compute_dihedral``'s 8 hashes, in its order: the transform applied to the frame
(rotations counter-clockwise; ``transpose`` mirrors along the main diagonal, ``transverse`` along the other)."""

_MIN_SPREAD: Final = 8  # grey levels between the 1st and 99th percentile below which a frame is left alone


class FrameHash(NamedTuple):
    """The PDQ hash of one frame (64 lowercase hex digits) and its quality (0-100).

    ``variants`` holds the 8 dihedral hashes in :data:`VARIANTS` order (``variants[0] == hash``)
    when they were computed; ``normalised`` is the hash of the contrast-stretched frame (and
    ``normalised_quality`` its quality) when the frame's own quality was low.
    """

    hash: str
    quality: int
    variants: tuple[str, ...] = ()
    normalised: tuple[str, ...] = ()
    normalised_quality: int = 0


HashLike = str | bytes | np.ndarray | FrameHash
"""A PDQ hash as 64 hex digits, 32 raw bytes, a ``(256,)`` 0/1 array, or a :class:`FrameHash`."""


def to_bytes(value: HashLike) -> bytes:
    """32 bytes from a hex string, raw bytes, a 256-bit 0/1 array or a :class:`FrameHash`."""
    if isinstance(value, FrameHash):
        value = value.hash
    if isinstance(value, str):
        try:
            raw = bytes.fromhex(value) if len(value) == 64 else b""
        except ValueError:
            raw = b""
        if len(raw) != 32:
            raise BlocklistError(f"a PDQ hash is 64 hex digits, got {value!r}")
        return raw
    if isinstance(value, (bytes, bytearray, memoryview)):
        if len(value) != 32:
            raise BlocklistError(f"a raw PDQ hash is 32 bytes, got {len(value)}")
        return bytes(value)
    if isinstance(value, np.ndarray):
        if value.shape != (256,) or not np.isin(value, (0, 1)).all():
            raise BlocklistError(f"a PDQ bit vector has shape (256,) with 0/1 entries, got shape {value.shape}")
        return np.packbits(value.astype(np.uint8)).tobytes()
    raise TypeError(f"expected a hex string, 32 bytes or a (256,) bit array, got {type(value).__name__}")


def _hex(bits: object) -> str:
    return np.packbits(np.asarray(bits, dtype=np.uint8)).tobytes().hex()


def pdq_hash(frame: RGBArray) -> FrameHash:
    """PDQ hash and quality of one ``HxWx3`` uint8 RGB frame (no variants).

    Examples
    --------
    >>> from skimage import data
    >>> h = pdq_hash(data.coffee())
    >>> len(h.hash), h.quality > 50
    (64, True)
    """
    import pdqhash

    bits, quality = pdqhash.compute(np.ascontiguousarray(frame))
    return FrameHash(_hex(bits), int(quality))


def _dihedral(frame: RGBArray) -> tuple[tuple[str, ...], int]:
    import pdqhash

    vectors, quality = pdqhash.compute_dihedral(np.ascontiguousarray(frame))
    return tuple(_hex(v) for v in vectors), int(quality)


def stretch_contrast(frame: RGBArray) -> RGBArray | None:
    """The frame with its 1st-99th percentile of grey stretched to 0-255, or None when it is nearly flat."""
    grey = frame.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    lo, hi = np.percentile(grey, (1.0, 99.0))
    if hi - lo < _MIN_SPREAD:
        return None
    scaled = (frame.astype(np.float32) - float(lo)) * (255.0 / float(hi - lo))
    out: RGBArray = np.clip(scaled + 0.5, 0, 255).astype(np.uint8)
    return out


def frame_hash(frame: RGBArray, *, min_quality: int = DEFAULT_MIN_QUALITY) -> FrameHash:
    """PDQ hash of a frame with its 8 dihedral variants, and the contrast-normalised ones when its quality is low.

    Examples
    --------
    >>> from skimage import data
    >>> h = frame_hash(data.coffee())
    >>> h.hash == pdq_hash(data.coffee()).hash, len(h.variants), h.normalised
    (True, 8, ())
    """
    variants, quality = _dihedral(frame)
    if quality >= min_quality:
        return FrameHash(variants[0], quality, variants)
    stretched = stretch_contrast(frame)
    if stretched is None:
        return FrameHash(variants[0], quality, variants)
    normalised, nq = _dihedral(stretched)
    return FrameHash(variants[0], quality, variants, normalised, nq)


def hash_image(image: ImageInput) -> str:
    """Hex PDQ hash of an image's first frame, loaded with :func:`genguard.load_image`.

    Raises
    ------
    ImageLoadError
        The image cannot be read.

    Examples
    --------
    >>> from skimage import data
    >>> hash_image(data.chelsea()) == pdq_hash(data.chelsea()).hash
    True
    """
    from genguard.imageio import load_image

    return pdq_hash(load_image(image).frames[0]).hash
