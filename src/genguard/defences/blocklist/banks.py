"""Banks: several named blocklists matched together."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from genguard._types import RGBArray
from genguard.errors import BlocklistError

from .bank import ACTIONS, Blocklist
from .hashing import FrameHash, HashLike, frame_hash, hash_image  # noqa: F401  (hash_image: examples)

__all__ = ["Banks"]


class Banks:
    """Several named blocklists matched together; a ``block`` match outranks a ``review`` one, then the nearest wins.

    Parameters
    ----------
    banks : sequence of Blocklist
        Names must be distinct.

    Examples
    --------
    >>> from skimage import data
    >>> banks = Banks([Blocklist([hash_image(data.coffee())], name="ncmec", action="block"),
    ...                Blocklist([hash_image(data.rocket())], name="internal", action="review", max_distance=20)])
    >>> m = banks.match_frames(banks.hash_frames([data.rocket()]))
    >>> m["bank"], m["action"], m["distance"]
    ('internal', 'review', 0)
    """

    def __init__(self, banks: Sequence[Blocklist]) -> None:
        names = [b.name for b in banks]
        if len(set(names)) != len(names):
            raise ValueError(f"bank names must be distinct, got {names}")
        if not banks:
            raise ValueError("Banks needs at least one Blocklist")
        self.banks = list(banks)
        self.min_quality = min(b.min_quality for b in banks)

    @classmethod
    def from_config(cls, path: str | os.PathLike[str]) -> Banks:
        """Banks described in a JSON file: a list of ``{"path", "name", "action", "max_distance", "min_quality",
        "format", "allow_empty"}`` objects (only ``path`` is required; relative paths are read beside the file).

        Raises
        ------
        BlocklistError
            The file is not such a list, names an unknown key, or a list cannot be read.

        Examples
        --------
        >>> import json, tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / "shared.txt").write_text("ab" * 32 + "\\n")
        >>> _ = (d / "banks.json").write_text(json.dumps([{"path": "shared.txt", "action": "review", "max_distance": 20}]))
        >>> Banks.from_config(d / "banks.json").banks[0]
        Blocklist('shared', 1 hashes, action='review', max_distance=20)
        """
        try:
            entries = json.loads(open(path, encoding="utf-8-sig").read())
        except (OSError, ValueError) as exc:
            raise BlocklistError(f"cannot read bank configuration {os.fspath(path)!r}: {exc}") from exc
        keys = {"path", "name", "action", "max_distance", "min_quality", "format", "allow_empty"}
        if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) and "path" in e and set(e) <= keys for e in entries):
            raise BlocklistError(f"{os.fspath(path)}: expected a non-empty JSON list of objects with a path and only the keys {sorted(keys)}")
        folder = os.path.dirname(os.fspath(path))
        return cls([Blocklist.from_file(os.path.join(folder, e.pop("path")), **e) for e in entries])

    def __len__(self) -> int:
        return sum(len(b) for b in self.banks)

    def __repr__(self) -> str:
        return f"Banks({', '.join(repr(b) for b in self.banks)})"

    def hash_frames(self, frames: Sequence[RGBArray]) -> list[FrameHash]:
        """PDQ hashes of each frame, with variants (the contrast fallback for the lowest ``min_quality``)."""
        return [frame_hash(f, min_quality=self.min_quality) for f in frames]

    def match_frames(self, hashes: Sequence[HashLike]) -> dict[str, Any] | None:
        """The strongest match over all banks (see :meth:`Blocklist.match_frames` for its keys), or None."""
        found = [m for b in self.banks if (m := b.match_frames(hashes)) is not None]
        if not found:
            return None
        return min(found, key=lambda m: (ACTIONS.index(m["action"]), m["distance"]))

