"""PDQ hash blocklist: block images that look like a listed image, whatever their scores.

PDQ (Meta's open perceptual hash, computed here with the ``pdqhash`` package)
maps an image to 256 bits; copies that are resized, re-encoded or lightly
cropped stay within a small Hamming distance of the original, unrelated
images sit near 128. A :class:`Blocklist` holds listed hashes and finds the
closest one within ``max_distance`` of any frame of an image.

Matching is exact (never approximate) and fast for large lists: up to 47 bits
it uses multi-index hashing (the 256 bits split into sixteen 16-bit chunks;
by pigeonhole a hash within ``d`` bits agrees with a listed one on some chunk
to within ``d // 16`` bits, so only those buckets are checked), beyond that a
vectorised popcount over every listed hash.

File format (what ``genguard hash`` prints)::

    # comments and blank lines are allowed
    f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22
    f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b23  # text after the hash
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Sequence
from itertools import combinations
from typing import Any, Final, NamedTuple

import numpy as np
import numpy.typing as npt

from genguard._types import ImageInput, RGBArray
from genguard.errors import BlocklistError

__all__ = ["DEFAULT_MAX_DISTANCE", "DEFAULT_MIN_QUALITY", "Blocklist", "FrameHash", "hash_image", "pdq_hash"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_DISTANCE: Final = 31
"""Meta's confident-match threshold for PDQ (``PDQ_CONFIDENT_MATCH_THRESHOLD`` in ThreatExchange)."""

DEFAULT_MIN_QUALITY: Final = 50
"""Frames whose PDQ quality is below this are not matched (Meta's threshold; featureless images hash unreliably)."""

_HEX: Final = re.compile(r"[0-9a-fA-F]{64}")
_CHUNKS: Final = 16  # 16-bit chunks for multi-index hashing
_MIH_MAX_DISTANCE: Final = 47  # radius per chunk <= 2: at most 137 probes per chunk


class FrameHash(NamedTuple):
    """The PDQ hash of one frame, as 64 lowercase hex digits, and its quality (0-100)."""

    hash: str
    quality: int


def pdq_hash(frame: RGBArray) -> FrameHash:
    """PDQ hash of one ``HxWx3`` uint8 RGB frame.

    Examples
    --------
    >>> from skimage import data
    >>> h = pdq_hash(data.coffee())
    >>> len(h.hash), h.quality > 50
    (64, True)
    """
    import pdqhash

    bits, quality = pdqhash.compute(np.ascontiguousarray(frame))
    return FrameHash(np.packbits(np.asarray(bits, dtype=np.uint8)).tobytes().hex(), int(quality))


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
    from genguard.imageio.loader import load_image

    return pdq_hash(load_image(image).frames[0]).hash


def _to_bytes(value: Any) -> bytes:
    """32 bytes from a hex string, raw bytes, a 256-bit 0/1 array or a :class:`FrameHash`."""
    if isinstance(value, FrameHash):
        value = value.hash
    if isinstance(value, str):
        if not _HEX.fullmatch(value):
            raise BlocklistError(f"a PDQ hash is 64 hex digits, got {value!r}")
        return bytes.fromhex(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        if len(value) != 32:
            raise BlocklistError(f"a raw PDQ hash is 32 bytes, got {len(value)}")
        return bytes(value)
    if isinstance(value, np.ndarray):
        if value.shape != (256,) or not np.isin(value, (0, 1)).all():
            raise BlocklistError(f"a PDQ bit vector has shape (256,) with 0/1 entries, got shape {value.shape}")
        return np.packbits(value.astype(np.uint8)).tobytes()
    raise TypeError(f"expected a hex string, 32 bytes or a (256,) bit array, got {type(value).__name__}")


def _words(raw: bytes) -> npt.NDArray[np.uint64]:
    """``(N, 4)`` uint64 rows from ``32 * N`` bytes."""
    return np.frombuffer(raw, dtype=">u8").astype(np.uint64).reshape(-1, 4)


def _probe_masks(radius: int) -> npt.NDArray[np.uint16]:
    """Every 16-bit mask with at most ``radius`` bits set."""
    masks = [0]
    for r in range(1, radius + 1):
        masks += [sum(1 << b for b in bits) for bits in combinations(range(16), r)]
    return np.array(masks, dtype=np.uint16)


class Blocklist:
    """A set of listed PDQ hashes, matched by Hamming distance.

    Parameters
    ----------
    hashes : iterable of str, bytes or ndarray
        64-digit hex strings, 32 raw bytes, or ``(256,)`` 0/1 arrays from ``pdqhash.compute``.
        Duplicates are kept once.
    max_distance : int, default 31
        A frame matches a listed hash within this many differing bits (0-255).
        31 is Meta's recommended confident-match threshold for PDQ.
    min_quality : int, default 50
        Frames whose PDQ quality is below this are never matched (hashes given as plain strings
        carry no quality and are always matched).

    Raises
    ------
    BlocklistError
        A hash is malformed.

    Examples
    --------
    >>> from skimage import data
    >>> bl = Blocklist([hash_image(data.coffee())])
    >>> bl.match_frames(bl.hash_frames([data.coffee()[4:-4, 4:-4]]))["distance"] <= 31
    True
    >>> bl.match_frames(bl.hash_frames([data.rocket()])) is None
    True
    """

    def __init__(
        self,
        hashes: Iterable[str | bytes | np.ndarray],
        *,
        max_distance: int = DEFAULT_MAX_DISTANCE,
        min_quality: int = DEFAULT_MIN_QUALITY,
    ) -> None:
        if isinstance(max_distance, bool) or not isinstance(max_distance, int) or not 0 <= max_distance < 256:
            raise ValueError(f"max_distance must be an int in [0, 255], got {max_distance!r}")
        if not 0 <= min_quality <= 100:
            raise ValueError(f"min_quality must be in [0, 100], got {min_quality!r}")
        self.max_distance = max_distance
        self.min_quality = min_quality
        raw = b"".join(_to_bytes(h) for h in hashes)
        self._set(_words(raw))

    def _set(self, words: npt.NDArray[np.uint64]) -> None:
        if len(words) > 1:  # drop duplicates (a lexicographic sort is much faster than np.unique(axis=0))
            words = words[np.lexsort(words.T[::-1])]
            words = words[np.concatenate(([True], np.any(words[1:] != words[:-1], axis=1)))]
        self._words = np.ascontiguousarray(words)
        self._columns: npt.NDArray[np.uint64] | None = None  # (4, N) copy for the scan, made when first needed
        self._index: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.int32]]] | None = None
        if self.max_distance <= _MIH_MAX_DISTANCE and len(words) >= 4096:
            self._build_index()

    def _build_index(self) -> None:
        chunks = self._words.view(np.uint16)  # (N, 16)
        self._index = []
        for k in range(_CHUNKS):
            column = chunks[:, k]
            order = np.argsort(column, kind="stable").astype(np.int32)
            offsets = np.zeros(65537, dtype=np.int64)
            np.cumsum(np.bincount(column, minlength=65536), out=offsets[1:])
            self._index.append((offsets, order))
        self._masks = _probe_masks(self.max_distance // _CHUNKS)

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike[str],
        *,
        max_distance: int = DEFAULT_MAX_DISTANCE,
        min_quality: int = DEFAULT_MIN_QUALITY,
    ) -> Blocklist:
        """Read a blocklist file: one hex hash per line, ``#`` comments, blank lines.

        Raises
        ------
        BlocklistError
            A line is not a hash (the message names the file and line), or the file cannot be read.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "list.txt"
        >>> _ = p.write_text("# demo\\n" + "ab" * 32 + "  # an image\\n")
        >>> len(Blocklist.from_file(p))
        1
        """
        try:
            text = open(path, encoding="utf-8").read()
        except (OSError, UnicodeDecodeError) as exc:
            raise BlocklistError(f"cannot read blocklist {os.fspath(path)!r}: {exc}") from exc
        found: list[str] = []
        fullmatch = _HEX.fullmatch
        for lineno, line in enumerate(text.splitlines(), start=1):
            if len(line) == 64 and fullmatch(line):  # the common case, kept fast for million-line lists
                found.append(line)
                continue
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            token, *rest = stripped.split(maxsplit=1)
            if not _HEX.fullmatch(token) or (rest and not rest[0].startswith("#")):
                raise BlocklistError(
                    f"{os.fspath(path)}:{lineno}: expected a 64-digit hex PDQ hash, optionally followed by "
                    f"whitespace and a # comment, got {line.strip()[:100]!r}"
                )
            found.append(token)
        bl = cls((), max_distance=max_distance, min_quality=min_quality)
        bl._set(_words(bytes.fromhex("".join(found))))
        logger.info("loaded %d PDQ hashes from %s", len(bl), os.fspath(path))
        return bl

    def __len__(self) -> int:
        return len(self._words)

    def __contains__(self, item: object) -> bool:
        """True when ``item`` (hex, bytes or bit array) is listed exactly; see :meth:`match` for near copies."""
        try:
            row = _words(_to_bytes(item))[0]
        except (BlocklistError, TypeError):
            return False
        return bool(np.any(np.all(self._words == row, axis=1)))

    def __repr__(self) -> str:
        return f"Blocklist({len(self)} hashes, max_distance={self.max_distance})"

    def hash_frames(self, frames: Sequence[RGBArray]) -> list[FrameHash]:
        """PDQ hash and quality of each ``HxWx3`` uint8 frame (thread-safe; the frames are only read)."""
        return [pdq_hash(f) for f in frames]

    def match(self, value: FrameHash | str | bytes | np.ndarray) -> tuple[int, str] | None:
        """``(distance, listed hex)`` of the closest listed hash within ``max_distance``, or None."""
        if not len(self):
            return None
        q = _words(_to_bytes(value))[0]
        candidates = self._candidates(q)
        if candidates is None:
            if self._columns is None:
                self._columns = np.ascontiguousarray(self._words.T)  # one contiguous pass per word
            cols = self._columns
            dist = np.bitwise_count(cols[0] ^ q[0]).astype(np.uint16)
            for w in range(1, 4):
                dist += np.bitwise_count(cols[w] ^ q[w])
            rows = None
        else:
            if not len(candidates):
                return None
            dist = np.bitwise_count(self._words[candidates] ^ q).sum(axis=1, dtype=np.uint16)
            rows = candidates
        best = int(np.argmin(dist))
        if int(dist[best]) > self.max_distance:
            return None
        row = best if rows is None else int(rows[best])
        return int(dist[best]), self._words[row].astype(">u8").tobytes().hex()

    def _candidates(self, q: npt.NDArray[np.uint64]) -> npt.NDArray[np.int32] | None:
        """Rows that share a chunk within the probe radius with ``q``; None without an index."""
        if self._index is None:
            return None
        q16 = q.reshape(1, 4).view(np.uint16)[0]
        parts: list[npt.NDArray[np.int32]] = []
        for k, (offsets, order) in enumerate(self._index):
            probes = (q16[k] ^ self._masks).astype(np.int64)
            starts, ends = offsets[probes], offsets[probes + 1]
            parts.extend(order[s:e] for s, e in zip(starts.tolist(), ends.tolist()) if e > s)
        return np.unique(np.concatenate(parts)) if parts else np.empty(0, dtype=np.int32)

    def match_frames(self, hashes: Sequence[FrameHash | str | bytes | np.ndarray]) -> dict[str, Any] | None:
        """The closest match over all frames, JSON-ready, or None.

        Returns
        -------
        dict or None
            ``{"distance": int, "hash": listed hex, "frame": position in hashes}``; frames below
            ``min_quality`` are skipped.
        """
        best: dict[str, Any] | None = None
        for i, h in enumerate(hashes):
            if isinstance(h, FrameHash) and h.quality < self.min_quality:
                logger.debug("frame %d skipped: PDQ quality %d < %d", i, h.quality, self.min_quality)
                continue
            found = self.match(h)
            if found is not None and (best is None or found[0] < best["distance"]):
                best = {"distance": found[0], "hash": found[1], "frame": i}
                if found[0] == 0:
                    break
        return best
