"""Labelled image sets: UTKFace folders, CSV manifests, and plain folders.

Each loader returns a list of :class:`Record`. Labels are ``1``, ``0`` or
``None`` (unknown) per axis, so a record may label one axis, both, or neither.

>>> parse_utkface_name("23_1_2_20170116172624127.jpg.chip.jpg")
(23, 'female', 'Asian')
>>> parse_utkface_name("61_1_20170109150557335.jpg.chip.jpg")
(61, 'female', None)
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from genguard.imageio.files import IMAGE_SUFFIXES, evenly_spaced, iter_image_files

__all__ = [
    "IMAGE_SUFFIXES",
    "Record",
    "guess_format",
    "iter_image_files",
    "load_csv",
    "load_dataset",
    "load_folder",
    "load_utkface",
    "parse_utkface_name",
    "split_of",
]

logger = logging.getLogger(__name__)

_GENDERS: Final = {0: "male", 1: "female"}
_RACES: Final = {0: "White", 1: "Black", 2: "Asian", 3: "Indian", 4: "Others"}

Format = Literal["utkface", "csv", "folder"]


@dataclass(frozen=True, slots=True)
class Record:
    """One labelled image: its path, labels per axis (1, 0 or None) and group columns."""

    path: Path
    minor: int | None = None
    sexual: int | None = None
    age: int | None = None
    groups: Mapping[str, str] = field(default_factory=dict)


def parse_utkface_name(name: str) -> tuple[int, str | None, str | None] | None:
    """``(age, gender, race)`` from a UTKFace file name; None when even the age is unreadable."""
    parts = name.split("_")
    if not (parts[0].isascii() and parts[0].isdigit()):
        return None  # int() would also take "-5", "+7" and " 8", which are not UTKFace ages
    age = int(parts[0])
    fields: list[int | None] = []
    for part in parts[1:3]:
        fields.append(int(part) if part.isdigit() and len(part) == 1 else None)
    while len(fields) < 2:
        fields.append(None)
    # A missing field shifts the timestamp left: a long number is never a gender or race.
    gender = _GENDERS.get(fields[0]) if fields[0] is not None else None
    race = _RACES.get(fields[1]) if fields[1] is not None else None
    return age, gender, race


def load_utkface(root: str | os.PathLike[str], *, limit: int | None = None) -> list[Record]:
    """Records for a UTKFace folder: minor = age < 18, sexual = 0 (the faces are benign portraits)."""
    records = []
    skipped = 0
    for path in iter_image_files(root):
        parsed = parse_utkface_name(path.name)
        if parsed is None:
            skipped += 1
            continue
        age, gender, race = parsed
        groups = {"gender": gender or "unknown", "race": race or "unknown"}
        records.append(Record(path, minor=int(age < 18), sexual=0, age=age, groups=groups))
    if skipped:
        logger.warning("skipped %d files in %s whose names carry no age", skipped, root)
    return evenly_spaced(records, limit)


def _label(value: str | None, column: str, path: Path, line: int) -> int | None:
    if value is None or value.strip() == "":
        return None
    v = value.strip().lower()
    if v in ("1", "true", "yes"):
        return 1
    if v in ("0", "false", "no"):
        return 0
    raise ValueError(f"{path}:{line}: column {column!r} must be 0, 1 or blank, got {value!r}")


def load_csv(manifest: str | os.PathLike[str], *, limit: int | None = None) -> list[Record]:
    """Records from a CSV manifest with a ``path`` column (relative to the CSV), optional ``minor``,
    ``sexual`` (0/1/blank), ``age``, and any other columns kept as groups."""
    manifest = Path(manifest)
    records = []
    with manifest.open(newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or "path" not in reader.fieldnames:
            raise ValueError(f"{manifest}: a manifest needs a 'path' column, got columns {reader.fieldnames}")
        for row in reader:
            line = reader.line_num  # the file's line, also past blank lines and quoted newlines
            if None in row or not (row["path"] or "").strip():
                raise ValueError(f"{manifest}:{line}: a row needs a path and at most one value per column")
            path = Path(row["path"])
            path = path if path.is_absolute() else manifest.parent / path
            age = (row.get("age") or "").strip()
            if age and not (age.isascii() and age.isdigit()):
                raise ValueError(f"{manifest}:{line}: column 'age' must be whole years or blank, got {age!r}")
            groups = {k: v for k, v in row.items() if k not in ("path", "minor", "sexual", "age") and v}
            records.append(
                Record(
                    path,
                    minor=_label(row.get("minor"), "minor", manifest, line),
                    sexual=_label(row.get("sexual"), "sexual", manifest, line),
                    age=int(age) if age else None,
                    groups=groups,
                )
            )
    return evenly_spaced(records, limit)


def load_folder(
    root: str | os.PathLike[str], *, minor: int | None = None, sexual: int | None = None, limit: int | None = None
) -> list[Record]:
    """Records for a folder of unlabelled images; ``minor``/``sexual`` declare labels for all of them
    (for example a benign set: ``minor=0, sexual=0``)."""
    return evenly_spaced([Record(p, minor=minor, sexual=sexual) for p in iter_image_files(root)], limit)


def guess_format(path: str | os.PathLike[str]) -> Format:
    """``csv`` for a .csv file, ``utkface`` for a folder whose images are named like UTKFace, else ``folder``."""
    p = Path(path)
    if p.is_file() and p.suffix.lower() == ".csv":
        return "csv"
    files = [f for _, f in zip(range(20), iter_image_files(p))]
    if files and all(parse_utkface_name(f.name) is not None and f.name.count("_") >= 2 for f in files):
        return "utkface"
    return "folder"


def load_dataset(
    path: str | os.PathLike[str],
    *,
    format: Format | None = None,
    assume: Mapping[str, int] | None = None,
    limit: int | None = None,
) -> list[Record]:
    """Load any supported dataset; ``format`` guessed when None. ``assume`` labels a plain folder."""
    fmt = format or guess_format(path)
    if fmt == "utkface":
        return load_utkface(path, limit=limit)
    if fmt == "csv":
        return load_csv(path, limit=limit)
    if fmt == "folder":
        assume = dict(assume or {})
        unknown = set(assume) - {"minor", "sexual"}
        if unknown:
            raise ValueError(f"--assume takes minor and sexual, got {sorted(unknown)}")
        return load_folder(path, minor=assume.get("minor"), sexual=assume.get("sexual"), limit=limit)
    raise ValueError(f"unknown dataset format {fmt!r}; use utkface, csv or folder")


def split_of(
    path: str | os.PathLike[str], *, val_fraction: float = 0.2, calib_fraction: float = 0.15, salt: str = "genguard-split-v1"
) -> str:
    """``"val"``, ``"calib"`` or ``"train"``, decided by a hash of the file name (deterministic, order-independent).

    ``val_fraction`` of all files are validation; ``calib_fraction`` of the rest calibrate and stop training.
    """
    digest = hashlib.sha256(f"{salt}:{Path(path).name}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    if u < val_fraction:
        return "val"
    return "calib" if (u - val_fraction) / (1 - val_fraction) < calib_fraction else "train"
