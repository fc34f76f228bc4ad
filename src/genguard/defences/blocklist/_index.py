"""Exact nearest-hash search over many 256-bit hashes, for several queries at once.

Up to 47 bits it uses multi-index hashing: the 256 bits split into sixteen
16-bit chunks; by pigeonhole a hash within ``d`` bits of a query agrees with it
on some chunk to within ``d // 16`` bits, so only those buckets are read. All
buckets of all queries are gathered in one vectorised step. Beyond 47 bits, or
for small lists, it computes every distance (a vectorised popcount).
"""

from __future__ import annotations

from itertools import combinations
from typing import Final

import numpy as np
import numpy.typing as npt

CHUNKS: Final = 16
MIH_MAX_DISTANCE: Final = 47  # radius per chunk <= 2: at most 137 probes per chunk
MIH_MIN_SIZE: Final = 4096

Words = npt.NDArray[np.uint64]


def words_from_bytes(raw: bytes | npt.NDArray[np.uint8]) -> Words:
    """``(N, 4)`` uint64 rows (most significant word first) from ``32 * N`` bytes."""
    return np.frombuffer(raw, dtype=">u8").astype(np.uint64).reshape(-1, 4)


def hex_of(row: npt.NDArray[np.uint64]) -> str:
    return row.astype(">u8").tobytes().hex()


def unique_rows(words: Words) -> npt.NDArray[np.intp]:
    """Indexes of the first occurrence of each distinct row (sorted by row)."""
    if len(words) < 2:
        return np.arange(len(words))
    order = np.argsort(words[:, 0], kind="stable")  # rows that share a first word are rare: sort them fully
    w = np.take(words, order, axis=0)
    same = w[1:, 0] == w[:-1, 0]
    if not same.any():
        return order
    run = np.zeros(len(w), dtype=bool)
    run[1:] |= same
    run[:-1] |= same
    idx = np.flatnonzero(run)
    sub = np.lexsort(w[idx].T[::-1])
    order[idx], w[idx] = order[idx][sub], w[idx][sub]
    dup = np.zeros(len(w), dtype=bool)
    dup[1:] = same & np.all(w[1:] == w[:-1], axis=1)
    return order[~dup]


def _probe_masks(radius: int) -> npt.NDArray[np.uint16]:
    masks = [0]
    for r in range(1, radius + 1):
        masks += [sum(1 << b for b in bits) for bits in combinations(range(16), r)]
    return np.array(masks, dtype=np.uint16)


class HashIndex:
    """Distinct listed hashes and what finds the nearest one to each of several queries."""

    def __init__(self, words: Words, max_distance: int) -> None:
        self.words = np.ascontiguousarray(words)
        self.max_distance = max_distance
        self._columns: Words | None = None
        self._offsets: npt.NDArray[np.int64] | None = None
        self._rows: npt.NDArray[np.int32] | None = None
        if max_distance <= MIH_MAX_DISTANCE and len(words) >= MIH_MIN_SIZE:
            self._build()

    @property
    def indexed(self) -> bool:
        return self._offsets is not None

    @property
    def nbytes(self) -> int:
        extra = sum(a.nbytes for a in (self._offsets, self._rows, self._columns) if a is not None)
        return int(self.words.nbytes + extra)

    def _build(self) -> None:
        n = len(self.words)
        chunks = self.words.view(np.uint16)  # (N, 16); queries are cut the same way
        offsets = np.empty((CHUNKS, 65537), dtype=np.int64)
        rows = np.empty(CHUNKS * n, dtype=np.int32)
        for k in range(CHUNKS):
            column = np.ascontiguousarray(chunks[:, k])
            rows[k * n : (k + 1) * n] = np.argsort(column, kind="stable")
            offsets[k, 0] = k * n
            np.cumsum(np.bincount(column, minlength=65536), out=offsets[k, 1:])
            offsets[k, 1:] += k * n
        self._offsets, self._rows = offsets, rows
        self._masks = _probe_masks(self.max_distance // CHUNKS)

    def nearest(self, queries: Words) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """``(distance, row)`` of the nearest listed hash for each query row; distance 256 and row -1 when none
        is within ``max_distance``."""
        q = np.ascontiguousarray(queries, dtype=np.uint64).reshape(-1, 4)
        best = np.full(len(q), 256, dtype=np.int64)
        row = np.full(len(q), -1, dtype=np.int64)
        if not len(self.words) or not len(q):
            return best, row
        if self._offsets is None:
            if self._columns is None:
                self._columns = np.ascontiguousarray(self.words.T)
            cols = self._columns
            for i, qi in enumerate(q):
                dist = np.bitwise_count(cols[0] ^ qi[0]).astype(np.uint16)
                for w in range(1, 4):
                    dist += np.bitwise_count(cols[w] ^ qi[w])
                j = int(np.argmin(dist))
                best[i], row[i] = int(dist[j]), j
        else:
            assert self._rows is not None and self._offsets is not None
            n = len(q)
            probes = (q.view(np.uint16)[:, :, None] ^ self._masks[None, None, :]).astype(np.int64)  # (Q, 16, P)
            flat = (probes + (np.arange(CHUNKS) * 65537)[None, :, None]).ravel()
            offsets = self._offsets.ravel()
            starts, ends = np.take(offsets, flat), np.take(offsets, flat + 1)
            lengths = ends - starts
            per_query = lengths.reshape(n, -1).sum(axis=1)
            total = int(per_query.sum())
            if total:
                # every bucket of every query in one gather, grouped by query
                first = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
                cand = np.take(self._rows, first + np.arange(total))
                found = np.take(self.words, cand, axis=0)
                end = np.cumsum(per_query)
                for i in np.flatnonzero(per_query).tolist():
                    lo, hi = int(end[i] - per_query[i]), int(end[i])
                    x = np.bitwise_count(found[lo:hi] ^ q[i])
                    dist = x[:, 0].astype(np.uint16) + x[:, 1] + x[:, 2] + x[:, 3]
                    j = int(np.argmin(dist))
                    best[i], row[i] = int(dist[j]), int(cand[lo + j])
        miss = best > self.max_distance
        best[miss], row[miss] = 256, -1
        return best, row
