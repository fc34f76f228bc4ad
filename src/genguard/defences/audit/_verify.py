"""Check an audit log's hash chain, and find its head for anchoring elsewhere."""

from __future__ import annotations

import hmac as _hmac
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final
from pathlib import Path

from genguard.errors import AuditError

from . import _chain, _jsonl, _sqlite

__all__ = ["Head", "VerifyReport", "head", "parse_anchor", "verify"]

_SEQ = re.compile(rb'^\{"seq":(\d+)')


@dataclass(frozen=True)
class Head:
    """The last record of a chain: anchor ``"SEQ:HASH"`` somewhere the log's writers cannot edit."""

    seq: int
    hash: str
    time: str | None = None

    @property
    def anchor(self) -> str:
        return f"{self.seq}:{self.hash}"


@dataclass
class VerifyReport:
    """What :func:`verify` found: ``ok`` is False at the first problem, which ``problem`` names."""

    ok: bool = True
    records: int = 0
    head: Head | None = None
    problem: str | None = None
    warnings: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    hmac_checked: bool = False


@dataclass(frozen=True)
class _Entry:
    where: str
    line: bytes
    columns: tuple[object, ...] | None = None  # SQLite query columns (seq, hash, time, subject, ...)
    torn: bool = False  # the end of a file without a newline


def parse_anchor(text: str) -> Head:
    """``"SEQ:HASH"`` (what ``genguard audit head`` prints as ``anchor``) as a :class:`Head`.

    Raises
    ------
    ValueError
        Not ``SEQ:HASH`` with a 64-digit hex hash.
    """
    seq, sep, value = text.strip().partition(":")
    if not sep or not seq.isdigit() or not re.fullmatch(r"[0-9a-f]{64}", value):
        raise ValueError(f"an anchored head is SEQ:HASH (as `genguard audit head` prints it), got {text!r}")
    return Head(int(seq), value)


def sources(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Files to read, in order: a JSON Lines log stands for its rotated files and itself."""
    out: list[Path] = []
    for p in (Path(p) for p in paths):
        if p.suffix.lower() in _sqlite.SUFFIXES or re.search(r"\.\d{12}$", p.name):
            if not p.exists():
                raise AuditError(f"no such audit log: {p}")
            out.append(p)
            continue
        files = _jsonl.log_files(p)
        if not files:
            raise AuditError(f"no such audit log: {p} (and no rotated {p.name}.NNNNNNNNNNNN files beside it)")
        out.extend(files)
    return out


_LIVE_RETRIES: Final = 3
"""Passes :func:`verify` makes over a live log whose files rotate while it reads them."""


def _entries(files: Sequence[Path]) -> Iterator[_Entry]:
    for f in files:
        if f.suffix.lower() in _sqlite.SUFFIXES:
            for seq, chain, cols, line in _sqlite.rows(f):
                yield _Entry(f"{f} row seq={seq}", line, (seq, chain, *cols))
            continue
        with open(f, "rb") as fh:
            for lineno, raw in enumerate(fh, start=1):
                if raw.endswith(b"\n"):
                    yield _Entry(f"{f}:{lineno}", raw[:-1])
                else:
                    yield _Entry(f"{f}:{lineno}", raw, torn=True)


def verify(
    paths: Sequence[str | os.PathLike[str]],
    *,
    key: bytes | None = None,
    anchor: Head | None = None,
    from_seq: int | None = None,
    on_record: Callable[[_chain.Link, bytes], None] | None = None,
) -> VerifyReport:
    """Check the hash chain of an audit log, record by record, and stop at the first problem.

    Parameters
    ----------
    paths : sequence of paths
        A JSON Lines log (its rotated ``PATH.NNNNNNNNNNNN`` files are read first), a SQLite
        log, or several files in chain order.
    key : bytes, optional
        Check every record's HMAC under this key.
    anchor : Head, optional
        A head anchored earlier: the record at its ``seq`` must have its hash (and exist).
    from_seq : int, optional
        The log's older files were archived on purpose: start at this record instead of 0.

    Returns
    -------
    VerifyReport
        ``ok`` and the first ``problem``: a record missing (a gap in ``seq``), edited (its hash
        does not match its content, its HMAC is wrong, or a SQLite column disagrees with it),
        reordered or repeated, or re-chained (its ``prev`` is not the hash of the record before);
        a log that ends before the anchored head is truncated. A partial line at the very end is
        an interrupted write (rolled back at the next append): a warning, not a failure.

    Examples
    --------
    >>> import tempfile, os
    >>> from genguard import Verdict, Scores
    >>> from genguard.defences.audit import AuditLog
    >>> path = os.path.join(tempfile.mkdtemp(), "audit.jsonl")
    >>> log = AuditLog(path)
    >>> for _ in range(3):
    ...     _ = log.record(Verdict("allow", Scores(0.1, 0.0)))
    >>> report = verify([path])
    >>> report.ok, report.records, report.head.seq
    (True, 3, 2)
    >>> from pathlib import Path
    >>> lines = Path(path).read_text().splitlines(keepends=True)
    >>> _ = Path(path).write_text("".join(lines[:1] + lines[2:]))     # delete record 1
    >>> verify([path]).problem  # doctest: +ELLIPSIS
    'record 1 is missing: ...audit.jsonl:2 holds record 2 where record 1 was due'
    """
    for attempt in range(_LIVE_RETRIES):
        files = sources(paths)
        seen: list[tuple[_chain.Link, bytes]] = []
        collect = None if on_record is None else (lambda link, line: seen.append((link, line)))
        try:
            report = _verify_files(files, key=key, anchor=anchor, from_seq=from_seq, on_record=collect)
        except FileNotFoundError:
            if attempt == _LIVE_RETRIES - 1:
                raise
            continue  # a live log rotated between listing its files and reading them: list them again
        if report.ok or attempt == _LIVE_RETRIES - 1 or sources(paths) == files:
            break  # a failure on files that did not change under us is the log's, not the race's
    if on_record is not None:
        for link, line in seen:
            on_record(link, line)
    return report


def _verify_files(
    files: Sequence[Path],
    *,
    key: bytes | None,
    anchor: Head | None,
    from_seq: int | None,
    on_record: Callable[[_chain.Link, bytes], None] | None,
) -> VerifyReport:
    """One pass of :func:`verify` over ``files`` as listed."""
    report = VerifyReport(sources=[str(f) for f in files], hmac_checked=key is not None)
    expected = 0 if from_seq is None else from_seq
    prev: str | None = _chain.GENESIS if from_seq in (None, 0) else None
    last: _chain.Link | None = None
    unsigned_seen = False

    def fail(message: str) -> VerifyReport:
        report.ok, report.problem = False, message
        return report

    pending_torn: _Entry | None = None
    for entry in _entries(files):
        if pending_torn is not None:
            return fail(f"record {expected} is truncated: {pending_torn.where} is a partial line, and records follow it")
        if entry.torn:
            pending_torn = entry
            continue
        if not entry.line.strip():
            report.warnings.append(f"{entry.where}: blank line skipped")
            continue
        try:
            link = _chain.decode(entry.line)
        except ValueError as exc:
            m = _SEQ.match(entry.line)
            which = f"record {int(m.group(1))}" if m else f"the record after record {expected - 1}" if expected else "record 0"
            return fail(f"{which} ({entry.where}) is not intact: {exc}")
        where = entry.where
        if link.seq > expected:
            gap = f"record {expected} is missing" if link.seq == expected + 1 else f"records {expected} to {link.seq - 1} are missing"
            return fail(f"{gap}: {where} holds record {link.seq} where record {expected} was due")
        if link.seq < expected:
            return fail(f"record {link.seq} ({where}) is out of order or repeated: record {expected} was due")
        if prev is not None and link.prev != prev:
            return fail(
                f"record {link.seq} ({where}) does not follow record {link.seq - 1}: its prev is not that record's hash "
                "(a record was edited and re-hashed, replaced or reordered)"
            )
        if entry.columns is not None:
            row_seq, row_hash, *cols = entry.columns
            chained = _sqlite.columns_of(link.record)
            if row_seq != link.seq or row_hash != link.hash or tuple(cols) != chained:
                changed = [f"{c}={v!r} (chained: {w!r})" for c, v, w in zip(_sqlite.COLUMNS, cols, chained) if v != w]
                return fail(f"record {link.seq} ({where}) was edited: its columns disagree with its chained record: {', '.join(changed) or 'seq/hash'}")
        if key is not None:
            if link.hmac is None:
                return fail(f"record {link.seq} ({where}) has no HMAC")
            if not _hmac.compare_digest(_chain.sign(key, link.hash), link.hmac):
                return fail(f"record {link.seq} ({where}) has a wrong HMAC: edited and re-chained without the key, or another key")
        elif link.hmac is not None:
            unsigned_seen = True
        if anchor is not None and link.seq == anchor.seq and link.hash != anchor.hash:
            return fail(f"record {link.seq} ({where}) is not the anchored head {anchor.anchor}: the log was rewritten up to it")
        if on_record is not None:
            on_record(link, entry.line)
        prev, last, expected = link.hash, link, expected + 1
        report.records += 1
    if pending_torn is not None:
        report.warnings.append(
            f"{pending_torn.where}: a partial record of {len(pending_torn.line)} bytes after record {expected - 1} "
            "(an interrupted write; the next append rolls it back)"
        )
    if unsigned_seen:
        report.warnings.append("records carry HMACs that were not checked (no key given)")
    if last is not None:
        report.head = Head(last.seq, last.hash, last.record.get("time"))
    if anchor is not None and (last is None or last.seq < anchor.seq):
        end = "is empty" if last is None else f"ends at record {last.seq}"
        return fail(f"the log {end} but the anchored head is record {anchor.seq}: records after it were removed (truncated)")
    return report


def head(paths: Sequence[str | os.PathLike[str]], *, key: bytes | None = None) -> Head:
    """The head of an intact chain.

    Raises
    ------
    AuditError
        The chain does not verify (the message names the problem), or the log is empty.
    """
    report = verify(paths, key=key)
    if not report.ok:
        raise AuditError(f"the audit log does not verify, so it has no head to anchor: {report.problem}")
    if report.head is None:
        raise AuditError("the audit log is empty")
    return report.head
