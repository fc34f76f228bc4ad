"""The JSON Lines sink: whole-line appends under a lock, rollback of torn writes, rotation that keeps every file.

Files: ``PATH`` is written; when it would pass ``max_bytes`` it is renamed to
``PATH.<seq of its first record, 12 digits>`` and a new ``PATH`` starts, so
the names sort in chain order and rotation never deletes or overwrites one.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from . import _chain

try:
    import fcntl
except ImportError:  # Windows: only threads of one process are serialised
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

_ROTATED = re.compile(r"\.(\d{12})$")
_TAIL_READ = 64 * 1024


def log_files(path: Path) -> list[Path]:
    """The rotated files of the log at ``path``, oldest first, then ``path`` itself if it exists."""
    prefix = path.name + "."
    rotated = sorted(
        p for p in path.parent.glob(glob_escape(prefix) + "[0-9]" * 12) if _ROTATED.search(p.name) and p.name.startswith(prefix)
    )
    return rotated + ([path] if path.exists() else [])


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def last_line(path: Path) -> tuple[bytes | None, int]:
    """``(last complete line without newline or None, offset just after it)``; a torn tail is not included.

    Reads backwards in blocks, each byte once, however long the lines.
    """
    with open(path, "rb") as f:
        pos = f.seek(0, os.SEEK_END)
        end: int | None = None
        parts: list[bytes] = []
        while pos > 0:
            step = min(_TAIL_READ, pos)
            pos -= step
            f.seek(pos)
            chunk = f.read(step)
            if end is None:
                cut = chunk.rfind(b"\n")
                if cut < 0:
                    continue  # still inside the torn tail
                end, chunk = pos + cut + 1, chunk[:cut]
            start = chunk.rfind(b"\n")
            if start >= 0:
                parts.append(chunk[start + 1 :])
                return b"".join(reversed(parts)), end
            parts.append(chunk)
        return (b"".join(reversed(parts)), end) if end is not None else (None, 0)


class JsonlSink:
    """Append chained lines to ``path`` (thread- and process-safe through ``PATH.lock``)."""

    def __init__(self, path: Path, max_bytes: int, fsync: bool) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.fsync = fsync
        self.thread_lock = threading.Lock()
        self._cache: tuple[int, int, int, str] | None = None  # (inode, size, next seq, prev hash)

    @contextmanager
    def lock(self) -> Iterator[None]:
        with self.thread_lock, open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            if fcntl is not None:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX)  # released when the file closes
            yield

    def append(self, encode: Callable[[int, str], tuple[bytes, str]]) -> bytes:
        """Write the line ``encode(seq, prev)`` returns after the chain's head; returns the line."""
        with self.lock():
            seq, prev, size = self._head()
            line, chain = encode(seq, prev)
            data = line + b"\n"
            if self.max_bytes and size and size + len(data) > self.max_bytes:
                self._rotate(seq)
                size = 0
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                try:
                    written = os.write(fd, data)
                    if written != len(data):
                        raise OSError(f"short write: {written} of {len(data)} bytes (disk full?)")
                    if self.fsync:
                        os.fsync(fd)
                except BaseException:
                    self._cache = None
                    try:  # leave no torn line behind; if this fails too, the next append rolls it back
                        os.ftruncate(fd, size)
                    except OSError:
                        pass
                    raise
                st = os.fstat(fd)
            finally:
                os.close(fd)
            self._cache = (st.st_ino, st.st_size, seq + 1, chain)
            return line

    # ------------------------------------------------------------ internals
    def _head(self) -> tuple[int, str, int]:
        """``(next seq, prev hash, size of PATH)``, rolling back a torn tail first."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            st = None
        if st is not None and self._cache is not None and self._cache[:2] == (st.st_ino, st.st_size):
            return self._cache[2], self._cache[3], st.st_size
        if st is not None and st.st_size:
            line, end = last_line(self.path)
            if end != st.st_size:
                self._roll_back(end, st.st_size)
            if line is not None:
                return (*self._after(line, self.path), end)
            size = end
        else:
            size = 0
        for older in reversed(log_files(self.path)):
            if older == self.path:
                continue
            line, _ = last_line(older)
            if line is not None:
                return (*self._after(line, older), size)
        return 0, _chain.GENESIS, size

    def _after(self, line: bytes, where: Path) -> tuple[int, str]:
        try:
            link = _chain.decode(line)
            return link.seq + 1, link.hash
        except ValueError as exc:
            # The last line is not a valid record (edited, or written by another tool). Chain on
            # from the last valid one; `audit verify` reports the bad line.
            logger.error("audit log %s: its last line is not a valid record (%s); chaining on from the last valid one", where, exc)
            for raw in reversed(where.read_bytes().split(b"\n")):
                try:
                    link = _chain.decode(raw)
                except ValueError:
                    continue
                return link.seq + 1, link.hash
            return 0, _chain.GENESIS

    def _roll_back(self, end: int, size: int) -> None:
        """Truncate a torn write (no final newline) to the last complete record; keep its bytes in ``PATH.torn``."""
        with open(self.path, "rb") as f:
            f.seek(end)
            torn = f.read()
        with open(self.path.with_name(self.path.name + ".torn"), "ab") as keep:
            keep.write(torn + b"\n")
        os.truncate(self.path, end)
        logger.warning(
            "audit log %s: rolled back a partial record of %d bytes after byte %d (an interrupted write; kept in %s.torn)",
            self.path, size - end, end, self.path.name,
        )

    def _rotate(self, next_seq: int) -> None:
        first, _ = _first_seq(self.path)
        target = self.path.with_name(f"{self.path.name}.{first if first is not None else next_seq:012d}")
        os.link(self.path, target)  # raises FileExistsError rather than overwrite a rotated file
        os.unlink(self.path)
        if self.fsync:
            _fsync_dir(self.path.parent)
        self._cache = None
        logger.info("rotated audit log %s to %s", self.path, target.name)



def _first_seq(path: Path) -> tuple[int | None, bytes]:
    with open(path, "rb") as f:
        line = f.readline().rstrip(b"\n")
    try:
        return _chain.decode(line).seq, line
    except ValueError:
        return None, line


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
