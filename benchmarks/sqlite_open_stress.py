"""Open one new SQLite audit log / attempt monitor from several threads at once, and count lost writers.

Each trial starts THREADS threads on a fresh file; each builds its own AuditLog
(or AttemptMonitor) and writes RECORDS records. A trial fails if any thread
raises or any record is missing.

    python benchmarks/sqlite_open_stress.py --trials 40
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading

from genguard import Scores, Verdict
from genguard.defences.audit import AuditLog
from genguard.defences.monitor.monitor import AttemptMonitor

VERDICT = Verdict("block", Scores(0.9, 0.9))


def trial(kind: str, threads: int, records: int) -> bool:
    path = os.path.join(tempfile.mkdtemp(), "store.sqlite")
    errors: list[str] = []

    def write(tag: str) -> None:
        try:
            if kind == "audit":
                log = AuditLog(path)
                for i in range(records):
                    log.record(VERDICT, subject=f"{tag}-{i}")
            else:
                monitor = AttemptMonitor(path)
                for _ in range(records):
                    monitor.record(tag, VERDICT)
        except Exception as exc:  # counted, not raised: the point is to count them
            errors.append(repr(exc))

    workers = [threading.Thread(target=write, args=(f"t{k}",)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    if kind == "audit":
        return not errors and len(list(AuditLog(path).records())) == threads * records
    return not errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--threads", type=int, default=6)
    parser.add_argument("--records", type=int, default=30)
    args = parser.parse_args()
    for kind in ("audit", "monitor"):
        failed = sum(not trial(kind, args.threads, args.records) for _ in range(args.trials))
        print(f"{kind}: {failed} of {args.trials} trials lost a writer or a record")


if __name__ == "__main__":
    main()
