"""Blocklist: one named bank of listed PDQ hashes, with its own action, distance and labels."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt

from genguard._types import RGBArray
from genguard.errors import BlocklistError

from ._index import HashIndex, Words, hex_of, unique_rows, words_from_bytes
from .formats import read_list
from .hashing import DEFAULT_MIN_QUALITY, VARIANTS, FrameHash, HashLike, frame_hash, hash_image, to_bytes  # noqa: F401  (hash_image: examples)

__all__ = ["ACTIONS", "DEFAULT_MAX_DISTANCE", "Action", "Blocklist"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_DISTANCE: Final = 31
"""Meta's confident-match threshold for PDQ (``PDQ_CONFIDENT_MATCH_THRESHOLD`` in ThreatExchange)."""

Action = Literal["block", "review"]
ACTIONS: Final = ("block", "review")
"""Bank actions, strongest first."""


class Blocklist:
    """One named bank of listed PDQ hashes, matched by Hamming distance with its own action.

    A frame is compared in all 8 dihedral variants (so mirrored and rotated copies match), and
    a frame of low PDQ quality through its contrast-normalised hash (see :func:`frame_hash`).

    Parameters
    ----------
    hashes : iterable of str, bytes or ndarray
        64-digit hex strings, 32 raw bytes, or ``(256,)`` 0/1 arrays from ``pdqhash.compute``.
        Duplicates are kept once.
    max_distance : int, default 31
        A frame matches a listed hash within this many differing bits (0-255).
    min_quality : int, default 50
        Frames whose PDQ quality is below this are not matched as they are (only through their
        contrast-normalised hash, when that reaches this quality).
    name : str, default "blocklist"
        Named in the reason of a match.
    action : {"block", "review"}, default "block"
        What a match does to the verdict.
    labels : sequence of str or None, optional
        One label per hash (a source, case or category), named in the reason of a match.
    allow_empty : bool, default False
        An empty list is an error (a shared list that failed to download is usually empty);
        set this when an empty bank is intended.

    Raises
    ------
    BlocklistError
        A hash is malformed, or the list is empty without ``allow_empty``.

    Examples
    --------
    >>> from skimage import data
    >>> bl = Blocklist([hash_image(data.coffee())], name="known", labels=["case-1"])
    >>> m = bl.match_frames(bl.hash_frames([data.coffee()[:, ::-1]]))      # a mirror image
    >>> m["bank"], m["label"], m["variant"], m["distance"] <= 31
    ('known', 'case-1', 'flip_horizontal', True)
    >>> bl.match_frames(bl.hash_frames([data.rocket()])) is None
    True
    """

    def __init__(
        self,
        hashes: Iterable[HashLike],
        *,
        max_distance: int = DEFAULT_MAX_DISTANCE,
        min_quality: int = DEFAULT_MIN_QUALITY,
        name: str = "blocklist",
        action: Action = "block",
        labels: Sequence[str | None] | None = None,
        allow_empty: bool = False,
    ) -> None:
        raw = b"".join(to_bytes(h) for h in hashes)
        words = words_from_bytes(raw)
        label_map = {} if labels is None else {i: lab for i, lab in enumerate(labels) if lab}
        if labels is not None and len(labels) != len(words):
            raise ValueError(f"got {len(labels)} labels for {len(words)} hashes")
        self._setup(words, label_map, max_distance, min_quality, name, action, allow_empty, "the hashes given")

    def _setup(
        self, words: Words, labels: dict[int, str], max_distance: int, min_quality: int, name: str, action: str,
        allow_empty: bool, source: str,
    ) -> None:
        self.name, self.action = name, action
        if isinstance(max_distance, bool) or not isinstance(max_distance, int) or not 0 <= max_distance < 256:
            raise ValueError(f"max_distance must be an int in [0, 255], got {max_distance!r}")
        if not 0 <= min_quality <= 100:
            raise ValueError(f"min_quality must be in [0, 100], got {min_quality!r}")
        if action not in ACTIONS:
            raise ValueError(f"action must be 'block' or 'review', got {action!r}")
        if not len(words) and not allow_empty:
            raise BlocklistError(
                f"blocklist {name!r} ({source}) holds no PDQ hashes; a shared list that is empty usually failed to "
                "download or export. Pass allow_empty=True (CLI: --allow-empty-blocklist) if an empty bank is intended"
            )
        self.max_distance, self.min_quality, self.name, self.action = max_distance, min_quality, name, action
        keep = unique_rows(words)
        self._label_of: npt.NDArray[np.int32] | None = None
        self._labels: list[str] = []
        if labels:
            table: dict[str, int] = {}
            ids = np.full(len(words), -1, dtype=np.int32)
            for row, label in labels.items():
                ids[row] = table.setdefault(label, len(table))
            self._labels = list(table)
            self._label_of = np.take(ids, keep)
        self._index = HashIndex(np.take(words, keep, axis=0), max_distance)

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike[str],
        *,
        format: str = "auto",
        max_distance: int = DEFAULT_MAX_DISTANCE,
        min_quality: int = DEFAULT_MIN_QUALITY,
        name: str | None = None,
        action: Action = "block",
        allow_empty: bool = False,
    ) -> Blocklist:
        """Read a hash list (see :mod:`genguard.defences.blocklist.formats` for the formats).

        ``name`` defaults to the file's name without its suffix.

        Raises
        ------
        BlocklistError
            The file cannot be read, a line is malformed (the message names the file and line),
            or it holds no PDQ hash and ``allow_empty`` is False.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "list.txt"
        >>> _ = p.write_text("# demo\\n" + "ab" * 32 + "  # an image\\n")
        >>> bl = Blocklist.from_file(p, action="review")
        >>> len(bl), bl.name, bl.action
        (1, 'list', 'review')
        """
        listed = read_list(path, format)
        bank = cls.__new__(cls)
        source = f"{os.fspath(path)}, read as {listed.format}" + (f"; {listed.skipped} entries of other signal types skipped" if listed.skipped else "")
        bank._setup(listed.words, listed.labels, max_distance, min_quality, name or os.path.splitext(os.path.basename(path))[0], action, allow_empty, source)
        logger.info("loaded %d PDQ hashes into bank %r from %s", len(bank), bank.name, source)
        return bank

    def __len__(self) -> int:
        return len(self._index.words)

    def __contains__(self, item: object) -> bool:
        """True when ``item`` (hex, bytes or bit array) is listed exactly; see :meth:`match` for near copies."""
        if not isinstance(item, (str, bytes, np.ndarray, FrameHash)):
            return False
        try:
            row = words_from_bytes(to_bytes(item))[0]
        except BlocklistError:
            return False
        return bool(np.any(np.all(self._index.words == row, axis=1)))

    def __repr__(self) -> str:
        return f"Blocklist({self.name!r}, {len(self)} hashes, action={self.action!r}, max_distance={self.max_distance})"

    @property
    def nbytes(self) -> int:
        """Memory held by the hashes, the index and the labels' row table (not the label strings)."""
        return self._index.nbytes + (0 if self._label_of is None else self._label_of.nbytes)

    def hash_frames(self, frames: Sequence[RGBArray]) -> list[FrameHash]:
        """PDQ hashes of each ``HxWx3`` uint8 frame with their dihedral variants (thread-safe; frames are only read)."""
        return [frame_hash(f, min_quality=self.min_quality) for f in frames]

    def match(self, value: HashLike) -> tuple[int, str] | None:
        """``(distance, listed hex)`` of the listed hash nearest to one hash, within ``max_distance``, or None."""
        dist, row = self._index.nearest(words_from_bytes(to_bytes(value)))
        return None if row[0] < 0 else (int(dist[0]), hex_of(self._index.words[row[0]]))

    def label(self, row: int) -> str | None:
        if self._label_of is None or self._label_of[row] < 0:
            return None
        return self._labels[int(self._label_of[row])]

    def _queries(self, hashes: Sequence[HashLike]) -> tuple[list[bytes], list[tuple[int, str, bool]]]:
        """Query hashes and ``(frame, variant, contrast-normalised)`` for each."""
        raw: list[bytes] = []
        meta: list[tuple[int, str, bool]] = []
        for i, h in enumerate(hashes):
            if not isinstance(h, FrameHash):
                raw.append(to_bytes(h))
                meta.append((i, VARIANTS[0], False))
                continue
            if h.quality >= self.min_quality:
                group, normalised = (h.variants or (h.hash,)), False
            elif h.normalised and h.normalised_quality >= self.min_quality:
                group, normalised = h.normalised, True
            else:
                logger.debug("frame %d skipped: PDQ quality %d < %d", i, h.quality, self.min_quality)
                continue
            for name, value in zip(VARIANTS, group):
                raw.append(bytes.fromhex(value))
                meta.append((i, name, normalised))
        return raw, meta

    def match_frames(self, hashes: Sequence[HashLike]) -> dict[str, Any] | None:
        """The nearest match over all frames and their variants, JSON-ready, or None.

        Parameters
        ----------
        hashes : sequence of FrameHash, str, bytes or ndarray
            One per frame (or per hashed variant of an image, such as its alpha-flattened
            versions). Bare hashes carry no quality and are matched as they are.

        Returns
        -------
        dict or None
            ``{"distance", "hash": listed hex, "frame": position in hashes, "variant": the
            dihedral transform of the frame that matched (see VARIANTS), "contrast_normalised",
            "bank", "action", "label"}``.
        """
        raw, meta = self._queries(hashes)
        if not raw or not len(self):
            return None
        dist, rows = self._index.nearest(words_from_bytes(b"".join(raw)))
        if (rows < 0).all():
            return None
        best = int(np.lexsort((np.arange(len(dist)), dist))[0])  # nearest, then first frame/variant
        frame, variant, normalised = meta[best]
        row = int(rows[best])
        return {
            "distance": int(dist[best]),
            "hash": hex_of(self._index.words[row]),
            "frame": frame,
            "variant": variant,
            "contrast_normalised": normalised,
            "bank": self.name,
            "action": self.action,
            "label": self.label(row),
        }
