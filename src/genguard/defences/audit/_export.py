"""Exports for investigators: the records of one subject and time window, with a proof against the chain head.

The proof lists, from the first exported record to the head, the content
digest of every record (not its content) and the ``prev`` of the first one.
Anyone holding an anchored head recomputes ``hash = sha256(prev || digest)``
along the list and checks that it ends at the head and that each exported
record sits where its ``seq`` says. Records of other subjects stay private.
The proof shows that every exported record is genuine and unaltered; it does
not show that no record of the subject was left out.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Final

from genguard.errors import AuditError

from . import _chain
from ._verify import Head, VerifyReport, verify

__all__ = ["PROOF_FORMAT", "Export", "export", "verify_export"]

PROOF_FORMAT: Final = "genguard-audit-proof/1"
CSV_COLUMNS: Final = ("seq", "time", "subject", "decision", "minor", "sexual", "sha256", "pdq", "reasons", "error", "models", "hash", "record")


@dataclass
class Export:
    """Selected record lines (as chained, byte for byte) and the proof that ties them to the head."""

    lines: list[bytes] = field(default_factory=list)
    proof: dict[str, Any] = field(default_factory=dict)

    def jsonl(self) -> str:
        """The records as JSON Lines, exactly as the log holds them."""
        return "".join(line.decode("utf-8") + "\n" for line in self.lines)

    def csv(self) -> str:
        """The records as CSV: readable columns, and the chained line in ``record`` for checking."""
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(CSV_COLUMNS)
        for line in self.lines:
            rec = json.loads(line)
            scores = rec.get("scores") or {}
            writer.writerow([
                rec.get("seq"), rec.get("time"), rec.get("subject"), rec.get("decision"), scores.get("minor"),
                scores.get("sexual"), rec.get("sha256"), rec.get("pdq"), json.dumps(rec.get("reasons")),
                rec.get("error"), json.dumps(rec.get("models")), rec.get("hash"), line.decode("utf-8"),
            ])
        return out.getvalue()


def parse_time(text: str) -> datetime:
    """An ISO 8601 time or date; without a zone it is UTC."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"expected an ISO 8601 time such as 2026-12-02 or 2026-12-02T10:00:00Z, got {text!r}") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)


def export(
    paths: Sequence[str | os.PathLike[str]],
    *,
    subject: str | None = None,
    since: str | datetime | None = None,
    until: str | datetime | None = None,
    key: bytes | None = None,
    anchor: Head | None = None,
) -> Export:
    """The records of ``subject`` between ``since`` and ``until`` (inclusive), with a chain proof.

    The log is verified while it is read; a log that does not verify is not exported.

    Raises
    ------
    AuditError
        The log does not verify (the message names the first problem).
    """
    lo = parse_time(since) if isinstance(since, str) else since
    hi = parse_time(until) if isinstance(until, str) else until
    out = Export()
    digests: list[str] = []
    start: dict[str, Any] | None = None

    def take(link: _chain.Link, line: bytes) -> None:
        nonlocal start
        rec = link.record
        try:
            when = parse_time(rec["time"]) if isinstance(rec.get("time"), str) else None
        except ValueError:  # a record with an odd time is never inside a window
            when = None
        wanted = (subject is None or rec.get("subject") == subject) and (
            (lo is None or (when is not None and when >= lo)) and (hi is None or (when is not None and when <= hi))
        )
        if wanted and start is None:
            start = {"seq": link.seq, "prev": link.prev}
        if start is not None:
            digests.append(link.digest)
        if wanted:
            out.lines.append(line)

    report = verify(paths, key=key, anchor=anchor, on_record=take)
    if not report.ok:
        raise AuditError(f"the audit log does not verify, so it is not exported: {report.problem}")
    assert report.head is not None or not out.lines
    out.proof = {
        "format": PROOF_FORMAT,
        "query": {"subject": subject, "since": lo.isoformat() if lo else None, "until": hi.isoformat() if hi else None},
        "selected": [json.loads(line)["seq"] for line in out.lines],
        "start": start,
        "digests": digests,
        "head": None if report.head is None else {"seq": report.head.seq, "hash": report.head.hash},
    }
    return out


def verify_export(lines: Sequence[bytes], proof: dict[str, Any], *, anchor: Head | None = None) -> VerifyReport:
    """Check exported record lines against their proof and, if given, an anchored head.

    Examples
    --------
    >>> import tempfile, os
    >>> from genguard import Verdict, Scores
    >>> from genguard.defences.audit import AuditLog, head
    >>> path = os.path.join(tempfile.mkdtemp(), "audit.jsonl")
    >>> log = AuditLog(path)
    >>> for who in ("a", "b", "a", "c"):
    ...     _ = log.record(Verdict("allow", Scores(0.1, 0.0)), subject=who)
    >>> ex = export([path], subject="a")
    >>> verify_export(ex.lines, ex.proof, anchor=head([path])).ok
    True
    """
    report = VerifyReport()

    def fail(message: str) -> VerifyReport:
        report.ok, report.problem = False, message
        return report

    if not isinstance(proof, dict) or proof.get("format") != PROOF_FORMAT:
        return fail(f"not a {PROOF_FORMAT} proof")
    start, digests, top = proof.get("start"), proof.get("digests") or [], proof.get("head")
    if top is None or start is None:
        return fail("the proof has no records") if lines else report
    first, hashes, h = int(start["seq"]), [], str(start["prev"])
    try:
        for d in digests:
            h = _chain.chain_hash(h, d)
            hashes.append(h)
    except ValueError:
        return fail("the proof holds a digest that is not 64 hex digits")
    if not hashes or first + len(hashes) - 1 != top["seq"] or hashes[-1] != top["hash"]:
        return fail("the proof's digests do not lead to the head it names")
    report.head = Head(int(top["seq"]), str(top["hash"]))
    if anchor is not None:
        if not first <= anchor.seq <= top["seq"]:
            return fail(f"the proof covers records {first} to {top['seq']}, not the anchored head {anchor.seq}")
        if hashes[anchor.seq - first] != anchor.hash:
            return fail(f"the proof does not lead to the anchored head {anchor.anchor}")
    seen = []
    for n, line in enumerate(lines, start=1):
        try:
            link = _chain.decode(line)
        except ValueError as exc:
            return fail(f"exported record {n} is not intact: {exc}")
        i = link.seq - first
        if not 0 <= i < len(hashes) or digests[i] != link.digest or hashes[i] != link.hash:
            return fail(f"exported record {n} (seq {link.seq}) is not the record the proof holds at that place")
        seen.append(link.seq)
        report.records += 1
    if seen != list(proof.get("selected", [])):
        return fail(f"the export holds records {seen}, the proof names {proof.get('selected')}")
    return report
