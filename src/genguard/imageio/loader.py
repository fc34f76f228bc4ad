"""Image loading: the one door every input comes through.

:func:`load_image` accepts a path, bytes, a binary file object, a PIL image or
a uint8 array and returns a :class:`LoadedImage`: one or more C-contiguous RGB
``uint8`` frames. It knows the format rules once, for every entry point:

- limits are checked before decoding: the byte size (:data:`MAX_BYTES`) and the
  pixel count read from the header (:data:`MAX_PIXELS`), so a decompression bomb
  is refused without allocating its pixels;
- only the formats in :data:`SUPPORTED_FORMATS` are decoded;
- EXIF orientation is applied; every Pillow mode is converted to RGB, 16-bit and
  float images by their real range, transparency composited over white;
- animated GIF, WebP and APNG: every frame up to ``max_frames``, frames sampled
  evenly beyond it, with their indices kept for the verdict's reasons.

The caller's objects are never modified: arrays are only read, PIL images are
copied before conversion.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from dataclasses import dataclass, replace
from typing import IO, Final

import numpy as np
import numpy.typing as npt
from PIL import Image, UnidentifiedImageError

from genguard.imageio._formats import count_gif_frames, sniff_unsupported
from genguard.imageio._pixels import rgb_from_channels, to_rgb
from genguard._types import ImageInput, RGBArray
from genguard.errors import GenguardError, ImageLoadError, ImageTooLargeError, UnsupportedFormatError

__all__ = [
    "MAX_ANIMATION_FRAMES",
    "MAX_BYTES",
    "MAX_DECODED_PIXELS",
    "MAX_FRAMES",
    "MAX_PIXELS",
    "SUPPORTED_FORMATS",
    "LoadedImage",
    "load_image",
]

logger = logging.getLogger(__name__)

MAX_BYTES: Final = 64 * 1024 * 1024
"""Default byte limit for encoded input (64 MiB)."""

MAX_PIXELS: Final = 50_000_000
"""Default limit on width x height of one frame (50 megapixels), read from the header."""

MAX_FRAMES: Final = 16
"""Default number of frames scored in an animated image; beyond it frames are sampled evenly."""

MAX_ANIMATION_FRAMES: Final = 10_000
"""Animations with more frames than this are refused (every frame must be walked to reach the sampled ones)."""

MAX_DECODED_PIXELS: Final = 400_000_000
"""Refuse an animation when frames x width x height is over this: decoders walk every frame up to the last one
sampled, so this bounds the decode time (a few seconds on one core)."""

SUPPORTED_FORMATS: Final = frozenset({"JPEG", "MPO", "PNG", "GIF", "WEBP", "BMP", "TIFF", "PPM", "ICO"})
"""Pillow format names that :func:`load_image` decodes; APNG is ``"PNG"``. Only these decoders are ever run."""

@dataclass(frozen=True, slots=True)
class LoadedImage:
    """A decoded image: RGB frames ready for the embedders.

    Attributes
    ----------
    frames : tuple of ndarray
        ``HxWx3`` uint8 RGB arrays, read-only, in display order.
    frame_indices : tuple of int
        The index of each frame in the source animation (``(0,)`` for a still image).
    n_frames : int
        How many frames the source has in all.
    format : str or None
        Pillow's format name (``"PNG"``, ``"JPEG"``, ...) or None for arrays and in-memory images.
    sha256 : str or None
        Hex sha256 of the input as given: the encoded bytes of a file, bytes or stream; the
        pixel bytes of an array or PIL image. What the audit log records.
    """

    frames: tuple[RGBArray, ...]
    frame_indices: tuple[int, ...]
    n_frames: int
    format: str | None
    sha256: str | None = None

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` of the first frame."""
        h, w = self.frames[0].shape[:2]
        return (int(w), int(h))


def load_image(
    source: ImageInput,
    *,
    max_bytes: int = MAX_BYTES,
    max_pixels: int = MAX_PIXELS,
    max_frames: int = MAX_FRAMES,
) -> LoadedImage:
    """Decode any supported input into RGB frames.

    Parameters
    ----------
    source : path, bytes, binary file, PIL.Image.Image or ndarray
        The image. Arrays must be ``uint8`` with shape ``HxW``, ``HxWx1``, ``HxWx3`` (RGB) or ``HxWx4`` (RGBA).
    max_bytes : int, default MAX_BYTES
        Refuse encoded input larger than this.
    max_pixels : int, default MAX_PIXELS
        Refuse frames with more pixels than this, judged from the header before decoding.
    max_frames : int, default MAX_FRAMES
        Decode at most this many frames of an animation, sampled evenly.

    Returns
    -------
    LoadedImage

    Raises
    ------
    ImageTooLargeError
        Over ``max_bytes`` or ``max_pixels``, or an animation over :data:`MAX_ANIMATION_FRAMES`
        frames or :data:`MAX_DECODED_PIXELS` frame-pixels; all checked before decoding.
    UnsupportedFormatError
        A known image or document format outside :data:`SUPPORTED_FORMATS` (PDF, SVG, PSD,
        HEIC, AVIF, JPEG 2000, ...), named in the message.
    ImageLoadError
        Anything else that cannot be read: empty, truncated, corrupt, not an image, a bad array.
    TypeError
        ``source`` is of a type genguard does not accept.

    Examples
    --------
    >>> import numpy as np
    >>> img = load_image(np.zeros((4, 6, 3), dtype=np.uint8))
    >>> img.size, img.n_frames
    ((6, 4), 1)
    """
    if max_frames < 1:
        raise ValueError(f"max_frames must be at least 1, got {max_frames}")
    if isinstance(source, np.ndarray):
        loaded = _from_array(source, max_pixels)
        return replace(loaded, sha256=hashlib.sha256(np.ascontiguousarray(source).tobytes()).hexdigest())
    if isinstance(source, Image.Image):
        _check_pixels(source.size, max_pixels)
        loaded = _from_pil(source, fmt=source.format, max_frames=max_frames)
        return replace(loaded, sha256=hashlib.sha256(source.tobytes()).hexdigest())
    data = _read_bytes(source, max_bytes)
    loaded = _decode(data, max_pixels=max_pixels, max_frames=max_frames)
    return replace(loaded, sha256=hashlib.sha256(data).hexdigest())


def _read_bytes(source: ImageInput, max_bytes: int) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        try:
            size = os.path.getsize(path)
            if size > max_bytes:
                raise ImageTooLargeError(
                    f"{path}: {size} bytes is over the limit of {max_bytes} bytes; "
                    "raise max_bytes to accept it"
                )
            with open(path, "rb") as fh:
                data = fh.read(max_bytes + 1)
        except IsADirectoryError as exc:
            raise ImageLoadError(f"{path} is a directory, not an image file") from exc
        except OSError as exc:
            raise ImageLoadError(f"could not read {path}: {exc.strerror or exc}") from exc
    elif hasattr(source, "read"):
        stream: IO[bytes] = source  # type: ignore[assignment]
        try:
            data = stream.read(max_bytes + 1)
        except OSError as exc:
            raise ImageLoadError(f"could not read from file object: {exc}") from exc
        if not isinstance(data, bytes):
            raise TypeError("file objects must be opened in binary mode ('rb')")
    else:
        raise TypeError(
            f"cannot load an image from {type(source).__name__}; pass a path, bytes, "
            "a binary file object, a PIL.Image.Image or a uint8 numpy array"
        )
    if len(data) > max_bytes:
        raise ImageTooLargeError(f"input is over the limit of {max_bytes} bytes; raise max_bytes to accept it")
    if not data:
        raise ImageLoadError("input is empty (0 bytes)")
    return data


def _decode(data: bytes, *, max_pixels: int, max_frames: int) -> LoadedImage:
    try:
        # Only genguard's own formats are tried: no other Pillow plugin ever parses hostile bytes.
        img = Image.open(io.BytesIO(data), formats=_open_formats())
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"refused as a decompression bomb: {exc}") from exc
    except UnidentifiedImageError as exc:
        other = sniff_unsupported(data)
        if other is not None:
            raise UnsupportedFormatError(
                f"{other} is not a supported image format; supported: {', '.join(sorted(SUPPORTED_FORMATS))}"
            ) from exc
        raise ImageLoadError(
            f"not a recognised image ({len(data)} bytes starting {data[:8]!r}); "
            f"supported formats: {', '.join(sorted(SUPPORTED_FORMATS))}"
        ) from exc
    except Exception as exc:  # Pillow's header parsers raise many types on hostile input
        raise ImageLoadError(f"could not read image header: {type(exc).__name__}: {exc}") from exc
    with img:
        _check_pixels(img.size, max_pixels)
        if img.format == "GIF" and count_gif_frames(data, MAX_ANIMATION_FRAMES) > MAX_ANIMATION_FRAMES:
            raise ImageTooLargeError(f"GIF has more than {MAX_ANIMATION_FRAMES} frames; refused before decoding")
        return _from_pil(img, fmt=img.format, max_frames=max_frames)


def _open_formats() -> list[str]:
    Image.init()
    return [f for f in sorted(SUPPORTED_FORMATS) if f in Image.OPEN]  # MPO is opened by the JPEG plugin


def _check_pixels(size: tuple[int, int], max_pixels: int) -> None:
    w, h = size
    if w <= 0 or h <= 0:
        raise ImageLoadError(f"image has an empty size {w}x{h}")
    if w * h > max_pixels:
        raise ImageTooLargeError(
            f"image is {w}x{h} = {w * h} pixels, over the limit of {max_pixels}; "
            "raise max_pixels to accept it"
        )


def _frame_indices(n_frames: int, max_frames: int) -> list[int]:
    if n_frames <= max_frames:
        return list(range(n_frames))
    picks = np.linspace(0, n_frames - 1, num=max_frames)
    return sorted({int(round(p)) for p in picks})


def _from_pil(img: Image.Image, *, fmt: str | None, max_frames: int) -> LoadedImage:
    try:
        n_frames = int(getattr(img, "n_frames", 1) or 1)
    except Exception as exc:
        raise ImageLoadError(f"could not count the frames of {fmt or 'image'}: {exc}") from exc
    w, h = img.size
    if n_frames > MAX_ANIMATION_FRAMES or (n_frames > 1 and n_frames * w * h > MAX_DECODED_PIXELS):
        raise ImageTooLargeError(
            f"animation of {n_frames} frames of {w}x{h} is over the limits of {MAX_ANIMATION_FRAMES} frames "
            f"and {MAX_DECODED_PIXELS} decoded pixels; refused before decoding"
        )
    wanted = _frame_indices(n_frames, max_frames)
    frames: list[RGBArray] = []
    start = img.tell() if n_frames > 1 else 0
    try:
        if n_frames == 1:
            frames.append(to_rgb(img))
        else:
            wanted_set = set(wanted)
            for i in range(wanted[-1] + 1):  # decoders compose each frame on the last: walk them in order
                img.seek(i)
                if i in wanted_set:
                    frames.append(to_rgb(img))
    except GenguardError:
        raise
    except Exception as exc:  # truncated data, bad CRC, broken LZW, MemoryError...: never a crash
        raise ImageLoadError(f"could not decode image data ({fmt or 'image'}): {type(exc).__name__}: {exc}") from exc
    finally:
        if n_frames > 1:
            try:
                img.seek(start)  # leave a caller's PIL image on the frame it was on
            except Exception:  # noqa: BLE001 - a broken stream already reported above
                logger.debug("could not seek back to frame %d", start)
    if len(frames) != len(wanted):
        raise ImageLoadError(f"no decodable frame in {fmt or 'image'}")
    return LoadedImage(frames=tuple(frames), frame_indices=tuple(wanted), n_frames=n_frames, format=fmt)


def _from_array(array: npt.NDArray[np.generic], max_pixels: int) -> LoadedImage:
    if array.dtype != np.uint8:
        raise ImageLoadError(
            f"arrays must be uint8, got {array.dtype}; convert with (x * 255).astype(np.uint8) "
            "for floats in [0, 1]"
        )
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise ImageLoadError(
            f"arrays must be HxW, HxWx1, HxWx3 (RGB) or HxWx4 (RGBA), got shape {array.shape}"
        )
    h, w = array.shape[:2]
    _check_pixels((w, h), max_pixels)
    return LoadedImage(frames=(rgb_from_channels(array.view(np.uint8)),), frame_indices=(0,), n_frames=1, format=None)
