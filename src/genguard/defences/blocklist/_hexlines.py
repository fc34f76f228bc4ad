"""Decode a file of hex PDQ hashes, one per line, without a Python step per line.

A file that holds only hashes (the common shape of a million-hash list) goes
through ``bytes.fromhex`` in one call; otherwise every line that is exactly
``prefix + 64 hex digits`` is decoded with numpy in blocks, and the other lines
are handed back (with their line numbers) for the format's own reader.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = ["hex_lines"]

_BLOCK: Final = 1 << 16  # lines decoded at once by the vectorised path


def _nibbles(chars: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.bool_]]:
    """Hex digit values of ``(M, 64)`` ASCII codes, and which rows are all hex digits."""
    lower = chars | 0x20  # "A"-"F" to "a"-"f"; digits are unchanged
    digit = (chars >= 48) & (chars <= 57)
    letter = (lower >= 97) & (lower <= 102)
    values = np.where(digit, chars - 48, lower - 87).astype(np.uint8)
    ok: npt.NDArray[np.bool_] = np.asarray((digit | letter).all(axis=1))
    return values, ok


def hex_lines(data: bytes, prefix: bytes) -> tuple[list[npt.NDArray[np.uint8]], list[tuple[int, bytes]]]:
    """Decode every line that is exactly ``prefix + 64 hex digits`` at once; return the other lines."""
    arr = np.frombuffer(data, dtype=np.uint8)
    width = len(prefix) + 64
    pure = len(arr) // (width + 1)
    if len(arr) == pure * (width + 1) and not (arr[width :: width + 1] != 10).any():
        # every line has the same length: decode through a reshaped view, no line index needed
        rows = arr.reshape(pure, width + 1)

        def take(sel: npt.NDArray[np.intp]) -> npt.NDArray[np.uint8]:
            return rows[sel, :width]

        candidates = np.arange(pure)
        others: list[tuple[int, bytes]] = []
        starts = np.arange(pure, dtype=np.int64) * (width + 1)
    else:
        nl = np.flatnonzero(arr == 10)
        starts = np.concatenate(([0], nl + 1)).astype(np.int64)
        ends = np.concatenate((nl, [len(arr)])).astype(np.int64)
        if len(starts) and starts[-1] == len(arr):
            starts, ends = starts[:-1], ends[:-1]
        ends = ends - ((ends > starts) & (arr[np.maximum(ends - 1, 0)] == 13))
        fits = (ends - starts) == width
        others = [(int(i) + 1, data[starts[i] : ends[i]]) for i in np.flatnonzero(~fits)]
        candidates = np.flatnonzero(fits)
        offsets = np.arange(width, dtype=np.int64)

        def take(sel: npt.NDArray[np.intp]) -> npt.NDArray[np.uint8]:
            chars: npt.NDArray[np.uint8] = arr[starts[sel][:, None] + offsets]
            return chars

    blocks: list[npt.NDArray[np.uint8]] = []
    if not prefix and not others and len(candidates) == pure:
        try:  # the common case, a file of bare hashes: bytes.fromhex skips the newlines
            raw = bytes.fromhex(data.decode("ascii"))
            if len(raw) == 32 * pure:
                return [np.frombuffer(raw, np.uint8).reshape(pure, 32)], []
        except (UnicodeDecodeError, ValueError):
            pass  # the vectorised path below finds the bad lines
    expected = np.frombuffer(prefix, np.uint8)
    for b in range(0, len(candidates), _BLOCK):
        sel = candidates[b : b + _BLOCK]
        chars = take(sel)
        nib, ok = _nibbles(chars[:, len(prefix) :])
        if prefix:
            ok &= (chars[:, : len(prefix)] == expected).all(axis=1)
        if not ok.all():
            others += [(int(i) + 1, data[starts[i] : starts[i] + width]) for i in sel[~ok]]
            nib = nib[ok]
        blocks.append(((nib[:, 0::2] << 4) | nib[:, 1::2]).astype(np.uint8))
    others.sort()
    return blocks, others
