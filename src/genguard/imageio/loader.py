"""Image loading: the one door every input comes through.

:func:`load_image` accepts a path, bytes, a binary file object, a PIL image or
a uint8 array and returns a :class:`LoadedImage`: the RGB views of every
distinct frame, ready for the embedders and the PDQ hash. It knows the format
rules once, for every entry point:

- limits are checked before decoding: the byte size (:data:`MAX_BYTES`), the
  pixel count read from the header (:data:`MAX_PIXELS`), and the memory plan
  (:data:`MAX_WORK_BYTES`): every buffer the decode will hold at once, counted
  before the work; a path is opened only when it is a regular file;
- only the formats in :data:`SUPPORTED_FORMATS` are decoded;
- large frames are decoded reduced where the format allows (JPEG) and shrunk
  with a box filter to 2048-4095 px otherwise; EXIF orientation is applied;
- transparency: a frame whose alpha is not fully opaque is scored as a person
  could see it, over white, over black, and as its colours without alpha;
- animations and multi-page files: every frame is decoded, near-identical ones
  kept once, and more than ``max_frames`` distinct frames is refused.
The caller's objects are never modified (arrays read, PIL images copied first).
"""

from __future__ import annotations

import hashlib
import io
import logging
from dataclasses import dataclass, replace
from typing import Final

import numpy as np
import numpy.typing as npt
from PIL import Image, UnidentifiedImageError

from genguard._digest import arrays_sha256
from genguard._types import ImageInput, RGBArray
from genguard.errors import GenguardError, ImageLoadError, ImageTooLargeError, UnsupportedFormatError
from genguard.imageio._budget import MAX_WORK_BYTES, plan_reduction
from genguard.imageio._formats import count_gif_frames, sniff_unsupported
from genguard.imageio._read import read_bytes, read_limited
from genguard.imageio._frames import Frame, orientation_of, shrink, walk_frames
from genguard.imageio._pixels import OPAQUE, frame_views, has_alpha, rgb_from_channels

__all__ = [
    "MAX_ANIMATION_FRAMES",
    "MAX_BYTES",
    "MAX_DECODED_PIXELS",
    "MAX_FRAMES",
    "MAX_PIXELS",
    "MAX_WORK_BYTES",
    "SUPPORTED_FORMATS",
    "LoadedImage",
    "check_pixels",
    "load_image",
    "read_limited",
]

logger = logging.getLogger(__name__)

MAX_BYTES: Final = 64 * 1024 * 1024
"""Default byte limit for encoded input (64 MiB)."""

MAX_PIXELS: Final = 50_000_000
"""Default limit on width x height of one frame (50 megapixels), read from the header."""

MAX_FRAMES: Final = 16
"""Default limit on distinct frames scored in an animation; a file with more is refused."""

MAX_ANIMATION_FRAMES: Final = 1_000
"""Animations with more frames than this are refused before decoding (every frame must be walked)."""

MAX_DECODED_PIXELS: Final = 100_000_000
"""Refuse an animation when frames x width x height is over this: every frame is decoded, so this
bounds the decode time (about a second on one core)."""

SUPPORTED_FORMATS: Final = frozenset({"JPEG", "MPO", "PNG", "GIF", "WEBP", "BMP", "TIFF", "PPM", "ICO"})
"""Pillow format names that :func:`load_image` decodes; APNG is ``"PNG"``. Only these decoders are ever run."""

_DRAFT_FORMATS: Final = frozenset({"JPEG"})


@dataclass(frozen=True, slots=True)
class LoadedImage:
    """A decoded image: the RGB views of its distinct frames, ready for the embedders.

    Attributes
    ----------
    frames : tuple of ndarray
        ``HxWx3`` uint8 RGB arrays, read-only: every view of every distinct frame, in display order.
    frame_indices : tuple of int
        The index in the source of each entry of ``frames`` (``(0,)`` for an opaque still image).
    n_frames : int
        How many frames the source has in all.
    format : str or None
        Pillow's format name (``"PNG"``, ``"JPEG"``, ...) or None for arrays and in-memory images.
    sha256 : str or None
        Hex sha256 of the input as given: the encoded bytes of a file, bytes or stream; the
        pixel bytes of an array; the decoded RGB frames of a PIL image. What the audit log records.
    views : tuple of str
        How each entry of ``frames`` shows its frame: ``""`` for an opaque frame, else
        ``"over_white"``, ``"over_black"`` or ``"colour"`` (alpha ignored).
    """

    frames: tuple[RGBArray, ...]
    frame_indices: tuple[int, ...]
    n_frames: int
    format: str | None
    sha256: str | None = None
    views: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.views:
            object.__setattr__(self, "views", (OPAQUE,) * len(self.frames))

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` of the first frame as scored."""
        h, w = self.frames[0].shape[:2]
        return (int(w), int(h))

    @property
    def distinct_frames(self) -> int:
        """How many distinct source frames are scored."""
        return len(set(self.frame_indices))


def load_image(
    source: ImageInput,
    *,
    max_bytes: int = MAX_BYTES,
    max_pixels: int = MAX_PIXELS,
    max_frames: int = MAX_FRAMES,
    max_work_bytes: int = MAX_WORK_BYTES,
) -> LoadedImage:
    """Decode any supported input into the RGB views of its distinct frames.

    Parameters
    ----------
    source : path, bytes, binary file, PIL.Image.Image or ndarray
        The image. Arrays must be ``uint8`` with shape ``HxW``, ``HxWx1``, ``HxWx3`` (RGB) or ``HxWx4`` (RGBA).
        A path must name a regular file (not a FIFO, device or folder).
    max_bytes : int, default MAX_BYTES
        Refuse encoded input larger than this.
    max_pixels : int, default MAX_PIXELS
        Refuse frames with more pixels than this, judged from the header before decoding.
    max_frames : int, default MAX_FRAMES
        Refuse animations with more distinct frames than this.
    max_work_bytes : int, default MAX_WORK_BYTES
        Refuse an image whose decode would hold more pixel buffers than this at once (estimated from the header).

    Returns
    -------
    LoadedImage

    Raises
    ------
    ImageTooLargeError
        Over one of the limits above, or an animation over :data:`MAX_ANIMATION_FRAMES`
        frames or :data:`MAX_DECODED_PIXELS` frame-pixels.
    UnsupportedFormatError
        A known image or document format outside :data:`SUPPORTED_FORMATS` (PDF, SVG, PSD,
        HEIC, AVIF, JPEG 2000, ...), named in the message.
    ImageLoadError
        Anything else that cannot be read: empty, truncated, corrupt, not an image, not a regular file, a bad array.
    TypeError
        ``source`` is of a type genguard does not accept.

    Examples
    --------
    >>> import numpy as np
    >>> img = load_image(np.zeros((4, 6, 3), dtype=np.uint8))
    >>> img.size, img.n_frames, img.views
    ((6, 4), 1, ('',))
    """
    if max_frames < 1:
        raise ValueError(f"max_frames must be at least 1, got {max_frames}")
    if isinstance(source, np.ndarray):  # sha256 of the pixels, hashed in place (no copy)
        return replace(_from_array(source, max_pixels, max_work_bytes), sha256=arrays_sha256([source]))
    if isinstance(source, Image.Image):
        check_pixels(source.size, max_pixels)
        loaded = _from_pil(source, fmt=source.format, max_frames=max_frames, max_pixels=max_pixels, budget=max_work_bytes, own=False)
        return replace(loaded, sha256=arrays_sha256(loaded.frames))
    data = read_bytes(source, max_bytes)
    loaded = _decode(data, max_pixels=max_pixels, max_frames=max_frames, budget=max_work_bytes)
    return replace(loaded, sha256=hashlib.sha256(data).hexdigest())


def _decode(data: bytes, *, max_pixels: int, max_frames: int, budget: int) -> LoadedImage:
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
        # The message never quotes the input: it may be any file the caller was tricked into naming.
        raise ImageLoadError(
            f"not a recognised image ({len(data)} bytes); supported formats: {', '.join(sorted(SUPPORTED_FORMATS))}"
        ) from exc
    except Exception as exc:  # Pillow's header parsers raise many types on hostile input
        raise ImageLoadError(f"could not read image header: {type(exc).__name__}") from exc
    with img:
        check_pixels(img.size, max_pixels)
        if img.format == "GIF" and count_gif_frames(data, MAX_ANIMATION_FRAMES) > MAX_ANIMATION_FRAMES:
            raise ImageTooLargeError(f"GIF has more than {MAX_ANIMATION_FRAMES} frames; refused before decoding")
        return _from_pil(img, fmt=img.format, max_frames=max_frames, max_pixels=max_pixels, budget=budget, own=True)


def _open_formats() -> list[str]:
    Image.init()
    return [f for f in sorted(SUPPORTED_FORMATS) if f in Image.OPEN]  # MPO is opened by the JPEG plugin


def check_pixels(size: tuple[int, int], max_pixels: int) -> None:
    """Raise unless ``size`` is non-empty and at most ``max_pixels``."""
    w, h = size
    if w <= 0 or h <= 0:
        raise ImageLoadError(f"image has an empty size {w}x{h}")
    if w * h > max_pixels:
        raise ImageTooLargeError(
            f"image is {w}x{h} = {w * h} pixels, over the limit of {max_pixels}; raise max_pixels to accept it"
        )


def _still(img: Image.Image, *, fmt: str | None, budget: int, own: bool) -> list[Frame]:
    factor = plan_reduction(img.size, img.mode, frames=1, max_frames=1, budget=budget, alpha=has_alpha(img))
    if factor > 1 and own and fmt in _DRAFT_FORMATS:
        w = img.size[0]
        img.draft(img.mode, (-(-img.size[0] // factor), -(-img.size[1] // factor)))  # DCT scaling: 1/2, 1/4, 1/8
        scale = max(1, round(w / img.size[0]))
        factor = -(-factor // scale)
    img.load()
    small = shrink(img, factor, orientation_of(img))
    if own and small is not img:
        img.close()  # the full-size decode is not needed any more: free it before the views are made
    return [(0, frame_views(small))]


def _from_pil(img: Image.Image, *, fmt: str | None, max_frames: int, max_pixels: int, budget: int, own: bool) -> LoadedImage:
    try:
        n_frames = int(getattr(img, "n_frames", 1) or 1)
    except Exception as exc:
        raise ImageLoadError(f"could not count the frames of {fmt or 'image'}: {type(exc).__name__}") from exc
    w, h = img.size
    if n_frames > MAX_ANIMATION_FRAMES or (n_frames > 1 and n_frames * w * h > MAX_DECODED_PIXELS):
        raise ImageTooLargeError(
            f"animation of {n_frames} frames of {w}x{h} is over the limits of {MAX_ANIMATION_FRAMES} frames "
            f"and {MAX_DECODED_PIXELS} decoded pixels; refused before decoding"
        )
    start = img.tell() if n_frames > 1 else 0
    try:
        if n_frames == 1:
            frames = _still(img, fmt=fmt, budget=budget, own=own)
        else:
            frames = walk_frames(img, n_frames=n_frames, max_frames=max_frames, max_pixels=max_pixels, budget=budget,
                                 max_walked=MAX_DECODED_PIXELS)
    except GenguardError:
        raise
    except MemoryError as exc:
        raise ImageTooLargeError(f"ran out of memory decoding {fmt or 'image'}") from exc
    except Exception as exc:  # truncated data, bad CRC, broken LZW...: never a crash
        raise ImageLoadError(f"could not decode image data ({fmt or 'image'}): {type(exc).__name__}: {exc}") from exc
    finally:
        if n_frames > 1:
            try:
                img.seek(start)  # leave a caller's PIL image on the frame it was on
            except Exception:  # noqa: BLE001 - a broken stream already reported above
                logger.debug("could not seek back to frame %d", start)
    if not frames:
        raise ImageLoadError(f"no decodable frame in {fmt or 'image'}")
    return _assemble(frames, n_frames=n_frames, fmt=fmt)


def _assemble(frames: list[Frame], *, n_frames: int, fmt: str | None) -> LoadedImage:
    arrays = tuple(arr for _, views in frames for _, arr in views)
    indices = tuple(i for i, views in frames for _ in views)
    names = tuple(name for _, views in frames for name, _ in views)
    return LoadedImage(frames=arrays, frame_indices=indices, n_frames=n_frames, format=fmt, views=names)


def _from_array(array: npt.NDArray[np.generic], max_pixels: int, budget: int) -> LoadedImage:
    if array.dtype != np.uint8:
        raise ImageLoadError(
            f"arrays must be uint8, got {array.dtype}; convert with (x * 255).astype(np.uint8) for floats in [0, 1]"
        )
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise ImageLoadError(f"arrays must be HxW, HxWx1, HxWx3 (RGB) or HxWx4 (RGBA), got shape {array.shape}")
    h, w = array.shape[:2]
    check_pixels((w, h), max_pixels)
    if array.shape[2] == 4:  # the views are new pixels: planned and shrunk like a decoded RGBA frame
        factor = plan_reduction((w, h), "RGBA", frames=1, max_frames=1, budget=budget, alpha=True)
        if factor > 1:
            return _assemble([(0, frame_views(shrink(Image.fromarray(array, "RGBA"), factor)))], n_frames=1, fmt=None)
    return _assemble([(0, rgb_from_channels(array.view(np.uint8)))], n_frames=1, fmt=None)
