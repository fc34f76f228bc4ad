"""Benchmark the HTTP service: throughput and latency on loopback with the bundled backbone.

Usage::

    python benchmarks/server_bench.py                                   # 200 requests at 1, 4 and 8 clients
    python benchmarks/server_bench.py --max-batch 1                     # no micro-batching, for comparison
    python benchmarks/server_bench.py --requests 400 --clients 4 8 --workers 2 --out /tmp/server.json

Targets (issue 15, 512 px JPEG, 2 cores): at least 2 x 45.6 = 91.2 req/s with 4 and with 8
clients, and p99 latency with 8 clients at most 4 x the single-client p50. The script prints
whether each was met; it does not fail when they are not (timings on a shared machine vary).

The server runs as its own process (``python -m genguard.cli serve``, exactly
what ``genguard serve`` runs) on a free 127.0.0.1 port, so the clients do not
share its interpreter. Each client is a thread with its own keep-alive
connection that POSTs JPEG bytes (benchmarks/_common corpus: benign scenes,
half with UTKFace faces pasted in) one request after another. Throughput is
requests / wall time; latency is per request, as the client sees it; "server CPU ms/req" is
the CPU time (user + system, all threads and workers) the server spent per request, which
depends far less on other jobs than wall time does: on a quiet machine with C cores,
C * 1000 / (CPU ms/req) bounds the throughput. A few
warm-up requests are sent first and not counted. Any non-200 answer is counted
as an error (with ``--max-concurrency`` below ``--clients``, 503s are expected).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import corpus_frames, machine  # noqa: E402


_TARGET_RPS = 2 * 45.6
"""Issue 15: twice the 45.6 req/s measured with 4 clients before micro-batching."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(args: argparse.Namespace) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    cmd = [sys.executable, "-m", "genguard.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--max-concurrency", str(args.max_concurrency), "--max-batch", str(args.max_batch),
           "--batch-wait-ms", str(args.batch_wait_ms), "--workers", str(args.workers), "--backbone", "bundled"]
    if args.threads is not None:
        cmd += ["--threads", str(args.threads)]
    if args.skip_minor_below_review:
        cmd += ["--skip-minor-below-review"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not answer /readyz within 180 s")


def server_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by the server process and its worker processes."""
    import psutil

    proc = psutil.Process(pid)
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def run_clients(url: str, images: list[bytes], n_requests: int, clients: int, pid: int | None = None) -> dict[str, Any]:
    def client(ids: range) -> list[tuple[float, int]]:
        out = []
        with httpx.Client(base_url=url, timeout=300) as c:
            for i in ids:
                t0 = time.perf_counter()
                r = c.post("/v1/classify", content=images[i % len(images)], headers={"Content-Type": "image/jpeg"})
                out.append((time.perf_counter() - t0, r.status_code))
        return out

    cpu0 = server_cpu_s(pid) if pid is not None else 0.0
    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        parts = list(pool.map(client, [range(c, n_requests, clients) for c in range(clients)]))
    wall = time.perf_counter() - t0
    cpu = server_cpu_s(pid) - cpu0 if pid is not None else None
    samples = [s for part in parts for s in part]
    ok = np.array([lat for lat, status in samples if status == 200]) * 1000
    return {
        "clients": clients,
        "requests": len(samples),
        "errors": sum(status != 200 for _, status in samples),
        "wall_s": wall,
        "requests_per_s": len(samples) / wall,
        "p50_ms": float(np.percentile(ok, 50)) if ok.size else None,
        "p95_ms": float(np.percentile(ok, 95)) if ok.size else None,
        "p99_ms": float(np.percentile(ok, 99)) if ok.size else None,
        "mean_ms": float(ok.mean()) if ok.size else None,
        "server_cpu_ms_per_request": None if cpu is None else 1000 * cpu / len(samples),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="requests per client setting (default 200)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 8], help="concurrent clients (default 1 4 8)")
    parser.add_argument("--max-concurrency", type=int, default=32, help="server --max-concurrency (default 32)")
    parser.add_argument("--max-batch", type=int, default=8, help="server --max-batch (default 8; 1: no batching)")
    parser.add_argument("--batch-wait-ms", type=float, default=4.0, help="server --batch-wait-ms (default 4)")
    parser.add_argument("--workers", type=int, default=1, help="server --workers (default 1)")
    parser.add_argument("--threads", type=int, default=None, help="server --threads (onnxruntime threads per model)")
    parser.add_argument("--skip-minor-below-review", action="store_true",
                        help="serve with the throughput option (face stage only where the sexual score reaches review)")
    parser.add_argument("--size", type=int, default=512, help="side of the square test images (default 512)")
    parser.add_argument("--warmup", type=int, default=8, help="uncounted requests first (default 8)")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()

    load_before = list(os.getloadavg())
    images = []
    for frame in corpus_frames(args.size, n=16):
        buf = io.BytesIO()
        frame.save(buf, "JPEG", quality=90)
        images.append(buf.getvalue())
    proc, url = start_server(args)
    try:
        run_clients(url, images, args.warmup, 1)
        rows = [run_clients(url, images, args.requests, c, proc.pid) for c in args.clients]
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    print(f"POST /v1/classify, bundled backbone, {args.size}px JPEG, server --max-concurrency {args.max_concurrency} "
          f"--max-batch {args.max_batch} --batch-wait-ms {args.batch_wait_ms:g} --workers {args.workers}")
    print(f"{'clients':>7} {'requests':>8} {'errors':>6} {'req/s':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
          f"{'server CPU ms/req':>17}")
    print(f"load average before/after: {load_before[0]:.1f} / {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    for r in rows:
        print(f"{r['clients']:>7} {r['requests']:>8} {r['errors']:>6} {r['requests_per_s']:>7.2f} "
              f"{r['p50_ms'] or float('nan'):>8.0f} {r['p95_ms'] or float('nan'):>8.0f} {r['p99_ms'] or float('nan'):>8.0f} "
              f"{r['server_cpu_ms_per_request']:>17.1f}")
    by_clients = {r["clients"]: r for r in rows}
    checks = {}
    for c in (4, 8):
        if c in by_clients:
            checks[f"throughput_{c}_clients"] = by_clients[c]["requests_per_s"] >= _TARGET_RPS
    if 1 in by_clients and 8 in by_clients and by_clients[1]["p50_ms"] and by_clients[8]["p99_ms"]:
        checks["p99_8_clients_vs_p50_1"] = by_clients[8]["p99_ms"] <= 4 * by_clients[1]["p50_ms"]
    for name, met in checks.items():
        print(f"target {name}: {'met' if met else 'NOT met'}")
    if args.out is not None:
        record = {"benchmark": "server", "targets": checks, "max_batch": args.max_batch,
                  "batch_wait_ms": args.batch_wait_ms, "workers": args.workers, "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
                  "size": args.size, "format": "JPEG", "max_concurrency": args.max_concurrency,
                  "threads": args.threads, "skip_minor_below_review": args.skip_minor_below_review, "results": rows, "machine": machine(), "loadavg_before": load_before,
                  "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
