"""What a scan reads: SOURCE arguments planned into shards, and shards read into records.

A *shard* is the unit of work, of output and of resume: a group of image
files, a slice of a CSV/Parquet manifest, or one WebDataset ``.tar``. Shard
names are stable across runs (a digest of where the shard comes from), so a
rerun recognises the shards it has finished.

Reading never raises for bad data: a missing file, an oversized member or a
damaged tar header becomes a :class:`Record` with ``error`` set, which the
scan turns into a fail-closed error row.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import json
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from genguard.errors import GenguardError

__all__ = ["Record", "ScanSourceError", "Shard", "iter_records", "plan_shards"]

ShardKind = Literal["files", "manifest", "tar"]

IMAGE_EXTENSIONS: Final = frozenset({"jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff", "ppm", "ico"})
"""Extensions of loose image files and of a WebDataset sample's image member (img2dataset writes jpg, png or webp)."""

_IMAGE_COLUMNS: Final = ("image", "jpg", "png", "webp", "bytes", "path", "file", "filepath", "filename")
"""Columns tried, in order, when ``image_column`` is not given."""


class ScanSourceError(GenguardError, ValueError):
    """A SOURCE argument cannot be planned: missing, of an unknown kind, or a manifest without the named column."""


@dataclass(frozen=True, slots=True)
class Shard:
    """One unit of work: where its images come from and how to read them.

    Attributes
    ----------
    name : str
        Stable, file-system safe name; the shard's output is ``shards/NAME.parquet``.
    kind : {"files", "manifest", "tar"}
    source : str
        The folder or glob (files), manifest file or tar file.
    paths : tuple of str
        The image files of a ``files`` shard.
    ids : tuple of str
        The ids of a CSV manifest shard's rows (empty: ids are row numbers or paths).
    start, stop, first_row : int
        Row groups of a Parquet manifest shard, and the manifest row number of its first image.
    image_column, id_column : str or None
        Manifest columns: image bytes or path, and the id.
    size : int or None
        Number of images when known before reading (not for tars).
    """

    name: str
    kind: ShardKind
    source: str
    paths: tuple[str, ...] = ()
    ids: tuple[str, ...] = ()
    start: int = 0
    stop: int = 0
    first_row: int = 0
    image_column: str | None = None
    id_column: str | None = None
    size: int | None = None

    def to_json(self) -> str:
        """This shard as JSON (to travel as a row of a Ray dataset); :meth:`from_json` reverses it.

        Examples
        --------
        >>> shard = Shard("imgs-0123456789", "files", "imgs", paths=("imgs/a.png", "imgs/b.png"), size=2)
        >>> Shard.from_json(shard.to_json()) == shard
        True
        """
        return json.dumps({f: getattr(self, f) for f in self.__dataclass_fields__})

    @classmethod
    def from_json(cls, text: str) -> Shard:
        """Rebuild a shard from :meth:`to_json` output."""
        data: dict[str, Any] = json.loads(text)
        data["paths"], data["ids"] = tuple(data["paths"]), tuple(data["ids"])
        return cls(**data)


@dataclass(frozen=True, slots=True)
class Record:
    """One image of a shard, read but not decoded: ``data`` is its encoded bytes, or None with ``error`` set."""

    shard: str
    index: int
    source: str
    id: str
    data: bytes | None
    error: str | None = None


# ------------------------------------------------------------------ planning
def plan_shards(
    sources: Sequence[str],
    *,
    shard_size: int = 1000,
    image_column: str | None = None,
    id_column: str | None = None,
) -> list[Shard]:
    """Shards for SOURCE arguments: folders and globs of images, CSV/Parquet manifests, ``.tar`` shards.

    Raises
    ------
    ScanSourceError
        A source matches nothing, or a manifest lacks the image column.
    """
    if shard_size < 1:
        raise ValueError(f"shard_size must be at least 1, got {shard_size}")
    shards: list[Shard] = []
    loose: list[tuple[str, list[str]]] = []
    for src in sources:
        matches = sorted(glob.glob(src, recursive=True)) if glob.has_magic(src) else [src]
        if not matches or not all(os.path.exists(m) for m in matches):
            raise ScanSourceError(f"no such file, folder or glob match: {src!r}")
        images: list[str] = []
        for m in matches:
            suffix = Path(m).suffix.lower()
            if os.path.isdir(m):
                images.extend(_image_files(m))
            elif suffix == ".tar":
                shards.append(Shard(_name(m, "tar"), "tar", m))
            elif suffix in (".csv", ".parquet"):
                shards.extend(_manifest_shards(m, shard_size, image_column, id_column))
            elif suffix.lstrip(".") in IMAGE_EXTENSIONS:
                images.append(m)
            else:
                raise ScanSourceError(f"{m!r} is not a folder, image, .tar, .csv or .parquet file")
        if images:
            loose.append((src, images))
    for src, images in loose:
        for start in range(0, len(images), shard_size):
            part = tuple(images[start : start + shard_size])
            shards.append(Shard(_name(src, f"files:{start}:{len(part)}", *map(os.path.abspath, part)), "files", src,
                                paths=part, size=len(part)))
    names = [s.name for s in shards]
    if len(set(names)) != len(names):
        raise ScanSourceError("the same source was given twice; each shard may be scanned only once")
    return shards


def _image_files(root: str) -> list[str]:
    from genguard.imageio.files import iter_image_files

    return [str(p) for p in iter_image_files(root)]


def _name(path: str, *parts: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(path.rstrip("/*")).stem or "root")[:40]
    digest = hashlib.sha256("\0".join((os.path.abspath(path), *parts)).encode()).hexdigest()[:10]
    return f"{stem}-{digest}"


def _manifest_shards(path: str, shard_size: int, image_column: str | None, id_column: str | None) -> list[Shard]:
    if not path.lower().endswith(".parquet"):
        return _csv_shards(path, shard_size, image_column, id_column)
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path).metadata
    columns = list(meta.schema.names)
    column = _pick_column(path, columns, image_column, id_column)
    shards, start, rows, first = [], 0, 0, 0
    for i in range(meta.num_row_groups):  # whole row groups per shard: each is read on its own
        rows += meta.row_group(i).num_rows
        if rows >= shard_size or i == meta.num_row_groups - 1:
            shards.append(Shard(_name(path, f"groups:{start}:{i + 1}"), "manifest", path, start=start, stop=i + 1,
                                first_row=first, image_column=column, id_column=id_column, size=rows))
            start, first, rows = i + 1, first + rows, 0
    return shards


def _csv_shards(path: str, shard_size: int, image_column: str | None, id_column: str | None) -> list[Shard]:
    # Read once here: each shard carries its rows' paths and ids, like a folder's shard carries its files.
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        column = _pick_column(path, reader.fieldnames or [], image_column, id_column)
        rows = [(r.get(column) or "", r.get(id_column) or "" if id_column else "") for r in reader]
    shards = []
    for start in range(0, len(rows), shard_size):
        part = rows[start : start + shard_size]
        shards.append(Shard(_name(path, f"rows:{start}:{len(part)}"), "manifest", path, paths=tuple(p for p, _ in part),
                            ids=tuple(i for _, i in part) if id_column else (), first_row=start,
                            image_column=column, id_column=id_column, size=len(part)))
    return shards


def _pick_column(path: str, columns: Sequence[str], wanted: str | None, id_column: str | None) -> str:
    if id_column is not None and id_column not in columns:
        raise ScanSourceError(f"manifest {path!r} has no id column {id_column!r}; columns: {list(columns)}")
    if wanted is not None:
        if wanted not in columns:
            raise ScanSourceError(f"manifest {path!r} has no column {wanted!r}; columns: {list(columns)}")
        return wanted
    for c in _IMAGE_COLUMNS:
        if c in columns:
            return c
    raise ScanSourceError(f"manifest {path!r} has none of the columns {list(_IMAGE_COLUMNS)}; name one with --image-column")


# ------------------------------------------------------------------- reading
def iter_records(shard: Shard, *, max_bytes: int) -> Iterator[Record]:
    """The images of ``shard`` in a fixed order, each read into memory (at most ``max_bytes``) or with ``error`` set."""
    if shard.kind == "files":
        for i, p in enumerate(shard.paths):
            data, error = _read_file(p, max_bytes)
            yield Record(shard.name, i, p, p, data, error)
    elif shard.kind == "manifest":
        yield from _manifest_records(shard, max_bytes)
    else:
        from genguard.scan.webdataset import tar_records

        yield from tar_records(shard, max_bytes)


def _read_file(path: str, max_bytes: int) -> tuple[bytes | None, str | None]:
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > max_bytes:
                return None, f"file is {size} bytes, over the limit of {max_bytes}"
            return f.read(max_bytes + 1), None
    except OSError as exc:
        return None, f"cannot read {path!r}: {exc.strerror or exc}"


def _manifest_records(shard: Shard, max_bytes: int) -> Iterator[Record]:
    assert shard.image_column is not None
    images: list[Any]
    ids: list[Any]
    if shard.source.lower().endswith(".parquet"):
        import pyarrow.parquet as pq

        cols = [shard.image_column] + ([shard.id_column] if shard.id_column else [])
        table = pq.ParquetFile(shard.source).read_row_groups(range(shard.start, shard.stop), columns=cols)
        images = table.column(shard.image_column).to_pylist()
        ids = table.column(shard.id_column).to_pylist() if shard.id_column else [None] * len(images)
    else:
        images, ids = list(shard.paths), list(shard.ids) if shard.ids else [None] * len(shard.paths)
    base = Path(shard.source).parent
    for i, (value, ident) in enumerate(zip(images, ids)):
        row = shard.first_row + i
        name = str(row if ident is None else ident)
        if isinstance(value, dict):  # Hugging Face image struct: {"bytes": ..., "path": ...}
            value = value.get("bytes") or value.get("path")
        if isinstance(value, (bytes, bytearray)):
            over = len(value) > max_bytes
            yield Record(shard.name, i, shard.source, name, None if over else bytes(value),
                         f"image bytes are {len(value)} bytes, over the limit of {max_bytes}" if over else None)
        elif isinstance(value, str) and value:
            path = value if os.path.isabs(value) else str(base / value)
            data, error = _read_file(path, max_bytes)
            yield Record(shard.name, i, path, str(value if ident is None else ident), data, error)
        else:
            yield Record(shard.name, i, shard.source, name, None, f"row {row} has no image in column {shard.image_column!r}")
