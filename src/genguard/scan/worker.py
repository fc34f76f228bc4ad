"""One scan worker: a Screening (Guard, blocklist, audit log) that turns read records into output rows.

Both engines run :class:`ShardScanner`, so they produce the same rows. The
Guard always sees a shard's records in index order, unreadable ones included
(as input that fails to load), so it forms the same model batches in either
engine and the scores agree to the bit.
"""

from __future__ import annotations

import hashlib
import json
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import pyarrow as pa

from genguard.scan.output import SCHEMA
from genguard.scan.sources import Record

if TYPE_CHECKING:
    from genguard.policy import Policy
    from genguard.serving.screening import Screening
    from genguard.verdict import Verdict

__all__ = ["ScreeningFactory", "ScreeningSettings", "ShardScanner"]

_UNREADABLE = b""  # stands in for a record that could not be read: the loader refuses it, the Guard fails closed


class ScreeningFactory(Protocol):
    """How a worker builds its Screening; must pickle, to travel to worker processes and Ray actors."""

    def build(self) -> Screening: ...

    def policy(self) -> Policy: ...


@dataclass(frozen=True)
class ScreeningSettings:
    """The Screening every scan worker builds: the Guard's options, the blocklist file and the audit log.

    Parameters
    ----------
    backbone, head, device, batch_size, threads, skip_minor_below_review
        As for :class:`~genguard.Guard` (``threads`` None: onnxruntime's default).
    blocklist : str or None
        File of PDQ hashes to block on sight; ``max_distance`` overrides its match distance.
    audit_log : str or None
        Every verdict is appended here (JSON Lines, or SQLite for ``.sqlite``/``.db``);
        safe for several workers on one machine.

    The Guard always hashes frames (each row stores its PDQ hash) and always
    fails closed on unreadable input.
    """

    backbone: str = "bundled"
    head: str | None = None
    device: str = "cpu"
    batch_size: int = 8
    threads: int | None = None
    skip_minor_below_review: bool = False
    blocklist: str | None = None
    max_distance: int | None = None
    audit_log: str | None = None

    def build(self) -> Screening:
        """A Guard (``hash_frames=True``, ``on_error="block"``) with the audit log, as one Screening."""
        from genguard.guard import Guard
        from genguard.serving.screening import Screening

        blocklist: Any = None
        if self.blocklist:
            from genguard.defences.blocklist import Blocklist

            if self.max_distance is None:
                blocklist = Blocklist.from_file(self.blocklist)
            else:
                blocklist = Blocklist.from_file(self.blocklist, max_distance=self.max_distance)
        options: dict[str, Any] = {} if self.threads is None else {"threads": self.threads}
        guard = Guard(self.backbone, head=self.head, device=self.device, batch_size=self.batch_size, blocklist=blocklist,
                      on_error="block", skip_minor_below_review=self.skip_minor_below_review, hash_frames=True, **options)
        audit = None
        if self.audit_log:
            from genguard.defences.audit import AuditLog

            audit = AuditLog(self.audit_log)
        return Screening(guard, audit=audit)

    def policy(self) -> Policy:
        """The thresholds the workers' Guard applies, read from its head (no backbone is loaded for a shipped head)."""
        if self.head is not None:
            from genguard.heads.head import load_head

            return load_head(self.head).policy
        if self.backbone == "bundled":
            from genguard.heads.shipped import load_shipped_head

            return load_shipped_head("bundled").policy
        return self.build().guard.policy


class ShardScanner:
    """Score records with one Screening and make their output rows.

    Parameters
    ----------
    factory : ScreeningFactory
        Builds the Screening (in this process).
    """

    def __init__(self, factory: ScreeningFactory) -> None:
        from genguard import __version__

        self.screening = factory.build()
        self.version = __version__

    def iter_tables(
        self, records: Iterable[Record], *, rows_per_table: int = 256, progress: Callable[[int], None] | None = None
    ) -> Iterator[pa.Table]:
        """Score ``records`` (one shard, index order) and yield their rows in tables of ``rows_per_table``.

        ``progress`` is called with the number of images scored after each Guard batch.
        """
        held: deque[Record] = deque()

        def inputs() -> Iterator[bytes]:
            for r in records:
                held.append(r)
                yield r.data if r.data is not None else _UNREADABLE

        rows: list[dict[str, Any]] = []
        for verdict in self.screening.guard.iter_classify(inputs(), progress=progress):
            rec = held.popleft()
            self.screening.record(verdict, source=rec.source if rec.source == rec.id else f"{rec.source}:{rec.id}")
            rows.append(self._row(rec, verdict))
            if len(rows) >= rows_per_table:
                yield pa.Table.from_pylist(rows, schema=SCHEMA)
                rows = []
        if rows:
            yield pa.Table.from_pylist(rows, schema=SCHEMA)

    def table(self, records: Sequence[Record]) -> pa.Table:
        """All rows of ``records`` in one table."""
        tables = list(self.iter_tables(records, rows_per_table=max(1, len(records))))
        return pa.concat_tables(tables) if tables else SCHEMA.empty_table()

    def _row(self, rec: Record, verdict: Verdict) -> dict[str, Any]:
        return {
            "shard": rec.shard,
            "index": rec.index,
            "source": rec.source,
            "id": rec.id,
            "sha256": None if rec.data is None else verdict.sha256 or hashlib.sha256(rec.data).hexdigest(),
            "pdq": verdict.pdq[0] if verdict.pdq else None,
            "decision": verdict.decision,
            "minor": verdict.scores.minor,
            "sexual": verdict.scores.sexual,
            "reasons": json.dumps([r.to_dict() for r in verdict.reasons], sort_keys=True, separators=(",", ":"), default=str),
            "error": rec.error if rec.error is not None else verdict.error,
            "frame": verdict.frame,
            "backbone": verdict.backbone,
            "head": verdict.head,
            "genguard_version": self.version,
        }
