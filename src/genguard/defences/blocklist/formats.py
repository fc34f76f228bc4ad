"""Hash-list files: read and write the formats that industry lists come in.

=================  ==========================================================================
``plain``          one 64-digit hex PDQ hash per line; ``#`` comments, blank lines, and a
                   trailing ``# note`` (kept as the hash's label) are allowed. What
                   ``genguard hash`` prints by default.
``threatexchange`` ``SIGNAL_TYPE SIGNAL`` per line, the file format of python-threatexchange
                   (``threatexchange hash photo`` output; its local-file exchange reads it):
                   ``pdq <hash>``. Lines of other signal types (``video_md5 ...``) are skipped.
``pdq-hasher``     ``hash,quality,path`` per line, no header: what Meta's PDQ hashers print
                   (``pdq-photo-hasher``, ``pdq_photo_hasher_tool.py``). The path is the label.
``csv``            a CSV file with a header holding ``signal_type`` and ``signal_value``
                   (``signal_str``, as ``threatexchange dataset -P --csv`` writes, is read too);
                   rows of other signal types are skipped; the other columns are kept as the
                   label (``collab=...; tags=...``).
=================  ==========================================================================

A UTF-8 byte-order mark is accepted in every format. ``auto`` tells them apart
by the first line that is not blank or a comment.
"""

from __future__ import annotations

import csv
import io
import os
import re
from dataclasses import dataclass, field
from typing import Final

import numpy as np

from genguard.errors import BlocklistError

from ._hexlines import hex_lines
from ._index import Words, words_from_bytes

__all__ = ["FORMATS", "HashList", "format_header", "format_line", "read_list", "sniff"]

FORMATS: Final = ("plain", "threatexchange", "pdq-hasher", "csv")
PDQ_SIGNAL: Final = "pdq"  # python-threatexchange's name for PDQ (PdqSignal.get_name())

_HEX: Final = re.compile(r"[0-9a-fA-F]{64}")


@dataclass
class HashList:
    """Hashes read from a file: ``(N, 4)`` uint64 rows, labels by row, and how many entries of other types were skipped."""

    words: Words
    labels: dict[int, str] = field(default_factory=dict)
    skipped: int = 0
    format: str = "plain"


def sniff(text: str) -> str:
    """The format of a list from its text (see the module docstring).

    Examples
    --------
    >>> sniff("# a list\\n" + "ab" * 32 + "\\n"), sniff("pdq " + "ab" * 32), sniff("ab" * 32 + ",100,x.jpg")
    ('plain', 'threatexchange', 'pdq-hasher')
    >>> sniff("collab,signal_type,signal_str\\n")
    'csv'
    """
    for line in text.splitlines():
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        if "signal_type" in [c.strip().lower() for c in next(csv.reader([s]), [])]:
            return "csv"
        token = re.split(r"[\s,]", s, maxsplit=1)[0]
        if _HEX.fullmatch(token):
            return "pdq-hasher" if re.match(r"[0-9a-fA-F]{64},\d+(,|$)", s) else "plain"
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", token):
            return "threatexchange"
        return "plain"  # the plain reader names the bad line
    return "plain"


def _bad(path: str, lineno: int, expected: str, line: str) -> BlocklistError:
    return BlocklistError(f"{path}:{lineno}: expected {expected}, got {line.strip()[:100]!r}")


def _read_lines(data: bytes, path: str, fmt: str) -> HashList:
    prefix = b"pdq " if fmt == "threatexchange" else b""
    skip = lines_skipped = 0
    while skip < len(data) and lines_skipped < 10_000:  # leading comments and blank lines
        end = data.find(b"\n", skip)
        end = len(data) if end < 0 else end + 1
        if data[skip:end].strip() and not data[skip:end].lstrip().startswith(b"#"):
            break
        skip, lines_skipped = end, lines_skipped + 1
    blocks, others = hex_lines(data[skip:] if skip else data, prefix)
    others = [(lineno + lines_skipped, line) for lineno, line in others]
    found: list[str] = []
    labels: dict[int, str] = {}
    skipped = 0
    base = sum(len(b) for b in blocks)
    for lineno, raw in others:
        line = raw.decode("utf-8", errors="replace")
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        if fmt == "plain":
            token, *rest = s.split(maxsplit=1)
            if not _HEX.fullmatch(token) or (rest and not rest[0].startswith("#")):
                raise _bad(path, lineno, "a 64-digit hex PDQ hash, optionally followed by whitespace and a # comment", line)
            note = rest[0][1:].strip() if rest else ""
        else:
            signal_type, _, signal = s.partition(" ")
            if signal_type.lower() != PDQ_SIGNAL:
                skipped += 1
                continue
            token, note = signal.strip(), ""
            if not _HEX.fullmatch(token):
                raise _bad(path, lineno, "'pdq ' and a 64-digit hex PDQ hash (python-threatexchange's file format)", line)
        if note:
            labels[base + len(found)] = note
        found.append(token)
    parts = [words_from_bytes(np.ascontiguousarray(b)) for b in blocks] + [words_from_bytes(bytes.fromhex("".join(found)))]
    return HashList(np.concatenate(parts) if parts else np.empty((0, 4), np.uint64), labels, skipped, fmt)


def _read_hasher(text: str, path: str) -> HashList:
    found: list[str] = []
    labels: dict[int, str] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        token, _, rest = s.partition(",")
        quality, _, name = rest.partition(",")
        if not _HEX.fullmatch(token) or not quality.strip().isdigit():
            raise _bad(path, lineno, "hash,quality,path (a PDQ hasher's output)", line)
        if name:
            labels[len(found)] = name
        found.append(token)
    return HashList(words_from_bytes(bytes.fromhex("".join(found))), labels, 0, "pdq-hasher")


def _read_csv(text: str, path: str) -> HashList:
    reader = csv.reader(io.StringIO(text))
    header: list[str] | None = None
    found: list[str] = []
    labels: dict[int, str] = {}
    skipped = 0
    for row in reader:
        if header is None:
            if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
                continue
            header = [c.strip().lower() for c in row]
            value_col = "signal_value" if "signal_value" in header else "signal_str"
            if "signal_type" not in header or value_col not in header:
                raise BlocklistError(f"{path}:{reader.line_num}: a CSV hash list needs signal_type and signal_value columns, got {row}")
            t, v = header.index("signal_type"), header.index(value_col)
            continue
        if not row or not "".join(row).strip():
            continue
        if len(row) != len(header):
            raise _bad(path, reader.line_num, f"{len(header)} CSV fields ({', '.join(header)})", ",".join(row))
        if row[t].strip().lower() != PDQ_SIGNAL:
            skipped += 1
            continue
        token = row[v].strip()
        if not _HEX.fullmatch(token):
            raise _bad(path, reader.line_num, "a 64-digit hex PDQ hash in signal_value", token)
        note = "; ".join(f"{k}={c.strip()}" for i, (k, c) in enumerate(zip(header, row)) if i not in (t, v) and c.strip())
        if note:
            labels[len(found)] = note
        found.append(token)
    if header is None:
        found = []
    return HashList(words_from_bytes(bytes.fromhex("".join(found))), labels, skipped, "csv")


def read_list(path: str | os.PathLike[str], format: str = "auto") -> HashList:
    """Read a hash list in one of :data:`FORMATS` (``auto``: told apart by its first line).

    Raises
    ------
    BlocklistError
        The file cannot be read, or a line is not what the format expects (the message names
        the file and line).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "list.csv"
    >>> _ = p.write_text("\\ufeffsignal_type,signal_value,tags\\npdq," + "ab" * 32 + ",demo\\nvideo_md5,d41d8cd98f00b204e9800998ecf8427e,\\n")
    >>> hl = read_list(p)
    >>> hl.format, len(hl.words), hl.labels, hl.skipped
    ('csv', 1, {0: 'tags=demo'}, 1)
    """
    name = os.fspath(path)
    if format not in ("auto", *FORMATS):
        raise ValueError(f"format must be 'auto' or one of {', '.join(FORMATS)}, got {format!r}")
    try:
        with open(path, "rb") as f:
            data = f.read()
        if data.startswith(b"\xef\xbb\xbf"):
            data = data[3:]
        head = data[:65536].decode("utf-8", errors="ignore")
        fmt = sniff(head) if format == "auto" else format
        if fmt in ("plain", "threatexchange"):
            return _read_lines(data, name, fmt)
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BlocklistError(f"cannot read blocklist {name!r}: {exc}") from exc
    return _read_hasher(text, name) if fmt == "pdq-hasher" else _read_csv(text, name)


def format_header(fmt: str) -> str | None:
    """The header line a format starts with, if any."""
    return "signal_type,signal_value,quality,path" if fmt == "csv" else None


def format_line(fmt: str, hex_hash: str, quality: int, label: str) -> str:
    """One line of a hash list in ``fmt`` (what ``genguard hash --format`` prints).

    Examples
    --------
    >>> h = "ab" * 32
    >>> format_line("threatexchange", h, 90, "x.png") == "pdq " + h
    True
    >>> format_line("pdq-hasher", h, 90, "x.png") == h + ",90,x.png"
    True
    """
    if fmt == "plain":
        return f"{hex_hash}  # {label}"
    if fmt == "threatexchange":
        return f"{PDQ_SIGNAL} {hex_hash}"  # the format has no room for a label
    if fmt == "pdq-hasher":
        return f"{hex_hash},{quality},{label}"
    if fmt == "csv":
        out = io.StringIO()
        csv.writer(out, lineterminator="").writerow([PDQ_SIGNAL, hex_hash, quality, label])
        return out.getvalue()
    raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
