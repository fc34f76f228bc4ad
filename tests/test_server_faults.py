"""The service under faults, against live servers on 127.0.0.1: slow clients, Redis killed or restarted, SIGTERM.

Every loop here is bounded in count and time, and traffic goes only to loopback. Images are benign
flat images with painted stub scores (conftest's ScoreEmbedder).
"""

from __future__ import annotations

import logging
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from conftest import ScoreEmbedder, ScoreHead, painted  # noqa: E402
from conftest_redis import RedisServer, redis_binary  # noqa: E402, F401  (a fixture)
from live_server import free_port, live_server, png  # noqa: E402

from genguard import Guard, Scores, Verdict  # noqa: E402
from genguard.defences.audit import AuditLog  # noqa: E402
from genguard.defences.monitor import AttemptMonitor  # noqa: E402
from genguard.serving.server import create_app  # noqa: E402

IMG = {"Content-Type": "image/png"}
ALLOW = png(painted(0.1, 0.1))
HERE = Path(__file__).resolve().parent


def _slow_socket(url: str, declared: int = 1000) -> socket.socket:
    """A client that sends the headers and one byte of a ``declared``-byte body, then nothing."""
    host, port = url.removeprefix("http://").split(":")
    s = socket.create_connection((host, int(port)), timeout=5)
    s.sendall(f"POST /v1/classify HTTP/1.1\r\nHost: {host}\r\nContent-Type: image/png\r\n"
              f"Content-Length: {declared}\r\n\r\nx".encode())
    return s


def test_slow_loris_sockets_do_not_lock_out_a_legitimate_client() -> None:
    """20 slow uploads held open; a normal client is still answered within 2 s (slots are taken after the body)."""
    app = create_app(Guard(embedder=ScoreEmbedder(), head=ScoreHead(), hash_frames=True), max_concurrency=4, body_timeout_s=30)
    with live_server(app) as url:
        sockets = [_slow_socket(url) for _ in range(20)]
        try:
            time.sleep(0.3)
            times, codes = [], []
            with httpx.Client(base_url=url, timeout=10) as client:
                for _ in range(5):
                    t0 = time.perf_counter()
                    codes.append(client.post("/v1/classify", content=ALLOW, headers=IMG).status_code)
                    times.append(time.perf_counter() - t0)
        finally:
            for s in sockets:
                s.close()
    assert codes == [200] * 5 and max(times) < 2.0, times


def test_a_body_that_does_not_arrive_in_time_gets_408() -> None:
    app = create_app(Guard(embedder=ScoreEmbedder(), head=ScoreHead(), hash_frames=True), body_timeout_s=0.5)
    with live_server(app) as url:
        s = _slow_socket(url)
        try:
            s.settimeout(10)
            t0 = time.perf_counter()
            head = ""
            while "body_timeout" not in head and len(head) < 65536:  # headers and body may come apart
                chunk = s.recv(4096)
                if not chunk:
                    break
                head += chunk.decode(errors="replace")
            waited = time.perf_counter() - t0
        finally:
            s.close()
    assert head.startswith("HTTP/1.1 408") and "body_timeout" in head and waited < 5


def test_a_client_that_disconnects_is_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(Guard(embedder=ScoreEmbedder(), head=ScoreHead(), hash_frames=True))
    with live_server(app) as url, caplog.at_level(logging.INFO):
        _slow_socket(url).close()
        deadline = time.monotonic() + 5
        while "disconnected" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)
    lines = [r for r in caplog.records if "disconnected" in r.getMessage()]
    assert len(lines) == 1 and lines[0].exc_info is None
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# ------------------------------------------------------------------ Redis faults
def _load(url: str, n: int, clients: int, on_half: Any = None) -> list[tuple[str, int, str]]:
    """``n`` requests from ``clients`` threads, each with its own subject; ``on_half`` runs once halfway."""
    done, lock, fired = [0], threading.Lock(), [False]

    def one(i: int) -> tuple[str, int, str]:
        subject = f"s-{i}"
        try:
            r = httpx.post(f"{url}/v1/classify", content=ALLOW, headers={**IMG, "X-Genguard-Subject": subject},
                           timeout=30)
            out = (subject, r.status_code, r.json().get("error", ""))
        except httpx.HTTPError as exc:
            out = (subject, -1, type(exc).__name__)
        with lock:
            done[0] += 1
            run = on_half is not None and done[0] >= n // 2 and not fired[0]
            fired[0] = fired[0] or run
        if run:
            on_half()
        return out

    with ThreadPoolExecutor(clients) as pool:
        return list(pool.map(one, range(n)))


@pytest.mark.slow
def test_redis_killed_mid_load_fails_closed_and_loses_no_audit_record(redis_binary: str, tmp_path: Path) -> None:  # noqa: F811
    server = RedisServer(redis_binary, tmp_path)
    server.start()
    audit = AuditLog(tmp_path / "audit.jsonl")
    try:
        app = create_app(Guard(embedder=ScoreEmbedder(), head=ScoreHead(), hash_frames=True), monitor=AttemptMonitor(server.url),
                         audit_log=audit)
        with live_server(app) as url:
            results = _load(url, 80, 4, on_half=server.kill)
    finally:
        server.stop()
    ok = {s for s, status, _ in results if status == 200}
    refused = [(status, code) for _, status, code in results if status != 200]
    assert len(ok) >= 20 and refused  # some before the kill, refusals after it
    assert set(refused) <= {(503, "monitor_unavailable")}  # fail closed: never an unrecorded answer
    audited = [r["subject"] for r in audit.records()]
    assert len(audited) == len(set(audited)) and ok <= set(audited)  # every answered verdict is in the audit log


def test_redis_restarted_keeps_counts_with_the_append_only_file(redis_binary: str, tmp_path: Path) -> None:  # noqa: F811
    server = RedisServer(redis_binary, tmp_path, appendonly=True)
    server.start()
    block = Verdict("block", Scores(0.9, 0.95))
    try:
        with AttemptMonitor(server.url) as mon:
            for _ in range(4):
                mon.record("victim", block)
        server.kill()  # a crash: SIGKILL, no shutdown save
        server.start(same_port=True)
        with AttemptMonitor(server.url) as mon:
            esc = mon.status("victim")
    finally:
        server.stop()
    assert esc.counts[0].blocked == 4 and esc.level == "throttle"


# ------------------------------------------------------------------ SIGTERM
def _queue_depth(metrics: str) -> float:
    for line in metrics.splitlines():
        if line.startswith("genguard_queue_depth "):
            return float(line.split()[1])
    return 0.0


@pytest.mark.slow
def test_sigterm_mid_load_lets_in_flight_requests_finish(tmp_path: Path) -> None:
    port = free_port()
    audit_path = tmp_path / "audit.jsonl"
    proc = subprocess.Popen([sys.executable, str(HERE / "stub_server.py"), "--port", str(port), "--audit-log",
                             str(audit_path), "--delay-s", "0.3"], stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        clients = [httpx.Client(base_url=url, timeout=30) for _ in range(9)]  # built before: they are slow to make

        def one(client: Any) -> tuple[int, float, float]:
            t0 = time.monotonic()
            try:
                return client.post("/v1/classify", content=ALLOW, headers=IMG).status_code, t0, time.monotonic()
            except httpx.HTTPError:
                return -1, t0, time.monotonic()

        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(one, c) for c in clients[:8]]
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:  # wait until the server holds requests in its queue
                if _queue_depth(clients[8].get("/metrics").text) >= 4:
                    break
                time.sleep(0.02)
            term_at = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            results = [f.result() for f in futures]
        for c in clients:
            c.close()
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once it has shut down cleanly
    assert all(status == 200 for status, _, _ in results)  # all 8 were in flight: none is dropped
    assert sum(end > term_at for _, _, end in results) >= 4  # at least the queued ones were answered after the signal
    assert len(list(AuditLog(audit_path).records())) == sum(status == 200 for status, _, _ in results)
