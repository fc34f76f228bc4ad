"""Small helpers on files: sha256 (every integrity check and cache key) and genguard's cache folder."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["arrays_sha256", "default_cache_dir", "file_sha256"]


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def arrays_sha256(arrays: Sequence[Any]) -> str:
    """Hex sha256 of the bytes of numpy arrays, in order, hashed in place (no copy of a contiguous array)."""
    import numpy as np

    digest = hashlib.sha256()
    for a in arrays:
        digest.update(np.ascontiguousarray(a).data.cast("B"))
    return digest.hexdigest()


def default_cache_dir() -> Path:
    """``$GENGUARD_CACHE``, else ``$XDG_CACHE_HOME/genguard``, else ``~/.cache/genguard``."""
    env = os.environ.get("GENGUARD_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "genguard"
