"""WebDataset ``.tar`` shards, as img2dataset writes them: ``KEY.jpg`` beside ``KEY.json`` and ``KEY.txt``.

Samples are members grouped by key (the member path up to the first dot of its
base name), in archive order. Damage never ends a scan silently:

- an image member that is oversized or cut short is an error record for its key;
- a damaged header is skipped block by block (``ignore_zeros``) up to the next
  good one, and the skipped bytes become one error record (``@OFFSET``);
- a shard cut short, or unreadable from some point on, ends with an ``@end``
  error record (tarfile itself stops without complaint at a header cut short).
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator

from genguard.scan.sources import IMAGE_EXTENSIONS, Record, Shard

__all__ = ["tar_records"]


def tar_records(shard: Shard, max_bytes: int) -> Iterator[Record]:
    """WebDataset samples: members grouped by key (the path up to the first dot of the base name)."""
    index = 0
    problem: str | None
    key: str | None = None
    found: tuple[bytes | None, str | None] | None = None

    def flush() -> Iterator[Record]:
        nonlocal index
        if key is not None:
            data, error = found if found is not None else (None, f"sample {key!r} has no image member")
            yield Record(shard.name, index, shard.source, key, data, error)
            index += 1

    expected = 0
    try:
        # ignore_zeros: a damaged header is skipped block by block until the next good one,
        # instead of ending the shard; the gap is reported as its own error row.
        with tarfile.open(shard.source, mode="r:", ignore_zeros=True) as tf:
            for m in tf:
                if m.offset > expected:
                    yield from flush()
                    key, found = f"@{expected}", (None, f"damaged tar data at bytes {expected}-{m.offset}: skipped")
                expected = m.offset_data + -(-m.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
                if not m.isfile():
                    continue
                head, _, name = m.name.rpartition("/")
                stem, _, ext = name.partition(".")
                mkey = f"{head}/{stem}" if head else stem
                if mkey != key:
                    yield from flush()
                    key, found = mkey, None
                if ext.lower() in IMAGE_EXTENSIONS and found is None:
                    found = _read_member(tf, m, max_bytes)
        problem = _tail_problem(shard.source, expected)
    except (tarfile.TarError, OSError, EOFError) as exc:
        problem = f"tar shard unreadable after {index} samples: {exc}"
    yield from flush()
    if problem is not None:
        key, found = "@end", (None, problem)
        yield from flush()


def _tail_problem(path: str, end: int) -> str | None:
    """Why the bytes after the last member are not a proper end of archive (two or more zero blocks), or None.

    tarfile stops without complaint at a header cut short, so a truncated shard is caught here.
    """
    with open(path, "rb") as f:
        f.seek(end)
        tail = f.read(1 << 16)
    if len(tail) < 2 * tarfile.BLOCKSIZE or tail.count(0) != len(tail):
        return f"tar shard has no end-of-archive marker after byte {end}: truncated or damaged"
    return None


def _read_member(tf: tarfile.TarFile, m: tarfile.TarInfo, max_bytes: int) -> tuple[bytes | None, str | None]:
    if m.size > max_bytes:
        return None, f"member {m.name!r} is {m.size} bytes, over the limit of {max_bytes}"
    try:
        f = tf.extractfile(m)
        data = f.read() if f is not None else b""
    except (tarfile.TarError, OSError, EOFError) as exc:
        return None, f"member {m.name!r} unreadable: {exc}"
    if len(data) != m.size:
        return None, f"member {m.name!r} truncated: {len(data)} of {m.size} bytes"
    return data, None
