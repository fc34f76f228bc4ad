"""Reading encoded input with a byte limit: regular files only, stdin and streams never read to the end.

>>> import io
>>> len(read_limited(io.BytesIO(b"x" * 100), max_bytes=10))
11
"""

from __future__ import annotations

import os
import stat
from typing import IO

from genguard._types import ImageInput
from genguard.errors import ImageLoadError, ImageTooLargeError

__all__ = ["read_bytes", "read_limited"]


def read_limited(stream: IO[bytes], max_bytes: int) -> bytes:
    """Read at most ``max_bytes + 1`` bytes from ``stream`` (one more than allowed, to tell "too big")."""
    chunks: list[bytes] = []
    left = max_bytes + 1
    while left > 0:
        chunk = stream.read(min(left, 1 << 20))
        if not chunk:
            break
        if not isinstance(chunk, bytes):
            raise TypeError("file objects must be opened in binary mode ('rb')")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _read_path(path: str, max_bytes: int) -> bytes:
    try:
        # O_NONBLOCK: opening a FIFO for reading must not wait for a writer; only a regular file is read.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except IsADirectoryError as exc:
        raise ImageLoadError(f"{path!r} is a directory, not an image file") from exc
    except OSError as exc:
        raise ImageLoadError(f"could not read {path!r}: {exc.strerror or type(exc).__name__}") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = "a directory" if stat.S_ISDIR(st.st_mode) else "a FIFO" if stat.S_ISFIFO(st.st_mode) else "not a regular file"
            raise ImageLoadError(f"{path!r} is {kind}; only regular files are read")
        if st.st_size > max_bytes:
            raise ImageTooLargeError(
                f"{path!r}: {st.st_size} bytes is over the limit of {max_bytes} bytes; raise max_bytes to accept it"
            )
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as fh:
            return fh.read(max_bytes + 1)  # a regular file: one read, bounded, whatever its size says
    except OSError as exc:
        raise ImageLoadError(f"could not read {path!r}: {exc.strerror or type(exc).__name__}") from exc
    finally:
        os.close(fd)


def read_bytes(source: ImageInput, max_bytes: int) -> bytes:
    """The encoded bytes of a path, bytes or binary file object, at most ``max_bytes``; errors name the path only."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) > max_bytes:
            raise ImageTooLargeError(f"input is over the limit of {max_bytes} bytes; raise max_bytes to accept it")
        data = bytes(source)
    elif isinstance(source, (str, os.PathLike)):
        data = _read_path(os.fspath(source), max_bytes)
    elif hasattr(source, "read"):
        try:
            data = read_limited(source, max_bytes)  # type: ignore[arg-type]
        except OSError as exc:
            raise ImageLoadError(f"could not read from file object: {type(exc).__name__}") from exc
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
