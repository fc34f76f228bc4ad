"""Which files in a folder are images: the walk every front end and dataset loader shares."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Final, TypeVar

__all__ = ["IMAGE_SUFFIXES", "evenly_spaced", "iter_image_files"]

IMAGE_SUFFIXES: Final = frozenset({".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".ppm", ".apng", ".ico"})

T = TypeVar("T")


def iter_image_files(root: str | os.PathLike[str]) -> Iterator[Path]:
    """Image files under ``root`` (recursively, sorted, hidden files skipped), by suffix."""
    base = Path(root)
    if base.is_file():
        yield base
        return
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames.sort()
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            p = Path(dirpath) / name
            if p.suffix.lower() in IMAGE_SUFFIXES:
                yield p


def evenly_spaced(items: Sequence[T], limit: int | None) -> list[T]:
    """An evenly spaced, deterministic subset of ``limit`` items (all of them when None).

    >>> evenly_spaced(list(range(10)), 3)
    [0, 3, 6]
    """
    if limit is None or limit >= len(items):
        return list(items)
    step = len(items) / limit
    return [items[int(i * step)] for i in range(limit)]
