"""Benchmark the attempt monitor: updates per second on SQLite and on Redis.

Usage::

    python benchmarks/monitor_bench.py                        # SQLite, and Redis when redis-server is installed
    python benchmarks/monitor_bench.py --updates 5000 --out /tmp/mon.json
    python benchmarks/monitor_bench.py --redis-url redis://127.0.0.1:6379/0

An update is one ``AttemptMonitor.record`` call that stores an event (blocked or
near miss, alternating) for one of 100 subjects and returns the escalation, i.e.
one write transaction plus the window counts. Each case runs ``--repeat`` times
(the median is reported, with the range). Each backend is measured with one
thread, several threads sharing a monitor, and several processes each with its
own monitor on the same store. At the end the stored counts are checked against
the number of updates made, so a run that lost counts fails loudly.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from genguard import Scores, Verdict
from genguard.defences.monitor.monitor import AttemptMonitor, EscalationRule, MonitorSettings

BLOCK = Verdict("block", Scores(0.9, 0.9))
REVIEW = Verdict("review", Scores(0.3, 0.5))
SUBJECTS = [f"user-{i}" for i in range(100)]
# Windows as in production; counts never saturate within a run.
SETTINGS = MonitorSettings(
    rules=(EscalationRule("warn", 3600, blocked=1), EscalationRule("lock", 86400, blocked=5)), max_events=10**6
)


def _work(target: str, prefix: str, n: int, offset: int, barrier: Any, monitor: AttemptMonitor | None = None) -> None:
    mon = monitor or AttemptMonitor(target, settings=SETTINGS, key_prefix=prefix)
    mon.status(SUBJECTS[0])  # connect before the clock starts
    barrier.wait()
    for i in range(n):
        mon.record(SUBJECTS[(offset + i) % len(SUBJECTS)], BLOCK if i % 2 == 0 else REVIEW)
    if monitor is None:
        mon.close()


def _total(target: str, prefix: str) -> int:
    with AttemptMonitor(target, settings=SETTINGS, key_prefix=prefix) as mon:
        return sum(c.blocked + c.near_misses for s in SUBJECTS for c in mon.status(s).counts[-1:])


def run_case(target: str, mode: str, workers: int, updates: int) -> dict[str, Any]:
    prefix = f"bench:{uuid.uuid4().hex}:"
    per = updates // workers
    shared = AttemptMonitor(target, settings=SETTINGS, key_prefix=prefix) if mode == "threads" else None
    if mode == "processes":
        ctx = multiprocessing.get_context("spawn")
        barrier: Any = ctx.Barrier(workers + 1)
        jobs: list[Any] = [ctx.Process(target=_work, args=(target, prefix, per, k * 7, barrier)) for k in range(workers)]
    else:
        barrier = threading.Barrier(workers + 1)
        jobs = [threading.Thread(target=_work, args=(target, prefix, per, k * 7, barrier, shared)) for k in range(workers)]
    for j in jobs:
        j.start()
    barrier.wait(timeout=120)  # every worker has imported genguard and connected: start the clock
    t0 = time.perf_counter()
    for j in jobs:
        j.join()
    seconds = time.perf_counter() - t0
    if shared is not None:
        shared.close()
    stored = _total(target, prefix)
    if stored != per * workers:
        raise SystemExit(f"lost counts: {stored} stored of {per * workers} updates ({mode}, {workers})")
    return {"mode": mode, "workers": workers, "updates": per * workers, "seconds": seconds,
            "updates_per_s": per * workers / seconds, "stored": stored}


def _start_redis(folder: Path) -> tuple[subprocess.Popen[bytes], str] | None:
    binary = shutil.which("redis-server")
    if binary is None:
        return None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(folder), "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import redis

    for _ in range(200):
        try:
            redis.Redis(port=port).ping()
            return proc, f"redis://127.0.0.1:{port}/0"
        except redis.ConnectionError:
            time.sleep(0.05)
    proc.terminate()
    raise SystemExit("redis-server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--updates", type=int, default=4000, help="updates per case")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case; the median is reported")
    parser.add_argument("--workers", type=int, default=4, help="threads / processes in the concurrent cases")
    parser.add_argument("--redis-url", default=None, help="use this Redis instead of starting a loopback redis-server")
    parser.add_argument("--out", default="/tmp/genguard_monitor_bench.json", help="JSON results path")
    args = parser.parse_args()
    results: dict[str, Any] = {"machine": platform.platform(), "cpus": multiprocessing.cpu_count(), "cases": []}
    with tempfile.TemporaryDirectory() as tmp:
        backends = {"sqlite": str(Path(tmp) / "attempts-{case}.sqlite")}  # a fresh file per case
        started = None
        if args.redis_url:
            backends["redis"] = args.redis_url
        else:
            started = _start_redis(Path(tmp))
            if started is not None:
                backends["redis"] = started[1]
            else:
                print("redis-server not installed: Redis not measured")
        try:
            print(f"{'backend':>8} {'mode':>10} {'workers':>7} {'updates':>8} {'median/s':>9} {'min/s':>7} {'max/s':>7}")
            for name, target in backends.items():
                for mode, workers in (("threads", 1), ("threads", args.workers), ("processes", args.workers)):
                    runs = [run_case(target.format(case=f"{mode}-{workers}-{k}"), mode, workers, args.updates)
                            for k in range(args.repeat)]
                    rates = sorted(r["updates_per_s"] for r in runs)
                    median = rates[len(rates) // 2]
                    results["cases"].append({"backend": name, "mode": mode, "workers": workers, "updates": runs[0]["updates"],
                                             "updates_per_s_median": median, "runs": runs})
                    print(f"{name:>8} {mode:>10} {workers:>7} {runs[0]['updates']:>8} {median:>9.0f} {rates[0]:>7.0f} {rates[-1]:>7.0f}")
        finally:
            if started is not None:
                started[0].terminate()
                started[0].wait()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
