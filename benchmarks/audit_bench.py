"""Benchmark the tamper-evident audit log: cost per record (with and without fsync), and verification speed.

Usage::

    python benchmarks/audit_bench.py                    # 2,000 records per setting (200 with fsync)
    python benchmarks/audit_bench.py --records 5000 --folder /var/tmp   # measure on the disk you will log to

Each setting appends records of a typical blocked verdict (two reasons, one
PDQ hash) from one thread to a fresh log in ``--folder`` and reports the time
per ``AuditLog.record`` call (wall and CPU time): JSON Lines and SQLite, with and without an HMAC
key, with and without ``fsync=True``. Then it times ``verify`` over the JSON
Lines log. fsync cost depends on the disk (and on a shared VM, on the
neighbours); measure where the log will live.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from genguard import Reason, Scores, Verdict
from genguard.defences.audit import AuditLog, verify

VERDICT = Verdict(
    "block", Scores(0.91, 0.87),
    (Reason("both_high", {"minor": 0.91, "sexual": 0.87}), Reason("hash_match", {"distance": 4, "hash": "ab" * 32, "frame": 0})),
    backbone="bundled", head="head@1", sha256="cd" * 32, pdq=("ab" * 32,),
)


def per_record(path: Path, n: int, **kw: object) -> dict[str, float]:
    log = AuditLog(path, **kw)  # type: ignore[arg-type]
    log.record(VERDICT, subject="warm-up")
    times, cpu = [], []
    for i in range(n):
        t0, c0 = time.perf_counter(), time.process_time()
        log.record(VERDICT, subject=f"user-{i % 50}", source=f"out/{i}.png")
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    log.close()
    a, c = np.array(times) * 1000, np.array(cpu) * 1000
    return {"records": n, "mean_ms": float(a.mean()), "median_ms": float(np.median(a)), "p95_ms": float(np.percentile(a, 95)),
            "cpu_mean_ms": float(c.mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=2000, help="records per setting without fsync")
    parser.add_argument("--fsync-records", type=int, default=200, help="records per setting with fsync")
    parser.add_argument("--folder", default=None, help="where the logs are written (default: a temporary folder)")
    parser.add_argument("--out", default="/tmp/genguard_audit_bench.json", help="JSON results path")
    args = parser.parse_args()
    results: dict[str, object] = {"machine": platform.platform(), "cpus": os.cpu_count(), "load_average_at_start": os.getloadavg()}
    key = b"k" * 32
    with tempfile.TemporaryDirectory(dir=args.folder) as tmp:
        folder = Path(tmp)
        settings = [
            ("jsonl", "audit.jsonl", {}, args.records),
            ("jsonl+hmac", "hmac.jsonl", {"key": key}, args.records),
            ("jsonl+fsync", "fsync.jsonl", {"fsync": True}, args.fsync_records),
            ("sqlite", "audit.sqlite", {}, args.records),
            ("sqlite+fsync", "fsync.sqlite", {"fsync": True}, args.fsync_records),
        ]
        print(f"{'setting':>14} {'records':>8} {'mean ms':>8} {'median':>8} {'p95':>8} {'cpu mean':>9}")
        for name, file, kw, n in settings:
            r = per_record(folder / file, n, **kw)
            results[name] = r
            print(f"{name:>14} {n:>8} {r['mean_ms']:>8.3f} {r['median_ms']:>8.3f} {r['p95_ms']:>8.3f} {r['cpu_mean_ms']:>9.3f}")
        t0 = time.perf_counter()
        report = verify([folder / "hmac.jsonl"], key=key)
        seconds = time.perf_counter() - t0
        assert report.ok
        results["verify"] = {"records": report.records, "seconds": seconds, "records_per_s": report.records / seconds}
        print(f"verify (HMAC checked): {report.records} records in {seconds:.3f} s ({report.records / seconds:,.0f}/s)")
    results["load_average_at_end"] = os.getloadavg()
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(f"load average {results['load_average_at_start']} -> {results['load_average_at_end']}; wrote {args.out}")


if __name__ == "__main__":
    main()
