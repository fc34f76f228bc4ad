"""The HTTP service's protocol, through a real uvicorn server on 127.0.0.1 (started in a thread per test module or test).

Keys, enforcement, rate limits and disclosure are in test_server_security.py; slow clients, Redis
faults and SIGTERM in test_server_faults.py. Every image here is benign: scikit-image photos, or
flat images whose stub scores are painted in (conftest's ScoreEmbedder). Blocking is produced by
painted scores, never by image content.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from conftest import ScoreEmbedder, ScoreHead, painted  # noqa: E402
from conftest_redis import redis_url  # noqa: E402, F401  (a fixture)
from live_server import free_port, live_server, png  # noqa: E402
from PIL import Image  # noqa: E402

from genguard import Guard  # noqa: E402
from genguard.serving.keys import KeyStore  # noqa: E402
from genguard.serving.server import create_app  # noqa: E402

IMG = {"Content-Type": "image/png"}


def photo(name: str, size: int) -> np.ndarray:
    import skimage.data

    return np.asarray(Image.fromarray(getattr(skimage.data, name)()).convert("RGB").resize((size, size)))


def stub_guard(**kwargs: Any) -> Guard:
    return Guard(embedder=ScoreEmbedder(), head=ScoreHead(), **kwargs)


@pytest.fixture(scope="module")
def analyst(tmp_path_factory: pytest.TempPathFactory) -> tuple[KeyStore, dict[str, str]]:
    """A key store with one key that may see scores; returns it and the Authorization header."""
    store = KeyStore(tmp_path_factory.mktemp("keys") / "keys.json")
    return store, {"Authorization": f"Bearer {store.create('analyst', permissions=('classify', 'scores'))}"}


@pytest.fixture(scope="module")
def real_url(guard: Guard, analyst: Any) -> Iterator[str]:
    """A live server around the real bundled Guard (shared by this module's tests)."""
    with live_server(create_app(guard, keys=analyst[0], max_body=2_000_000)) as url:
        yield url


# ------------------------------------------------------------------ smoke tests with the real Guard
def test_healthz_is_liveness_only_and_readyz_says_loaded(real_url: str, analyst: Any) -> None:
    assert httpx.get(f"{real_url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{real_url}/readyz", headers=analyst[1]).json() == {"status": "ready"}


def test_raw_and_multipart_give_the_guards_verdict(real_url: str, guard: Guard, analyst: Any) -> None:
    data = png(photo("astronaut", 160))
    expected = guard.classify(data).to_dict()
    raw = httpx.post(f"{real_url}/v1/classify", content=data, headers={**IMG, **analyst[1]})
    octet = httpx.post(f"{real_url}/v1/classify", content=data,
                       headers={"Content-Type": "application/octet-stream", **analyst[1]})
    multi = httpx.post(f"{real_url}/v1/classify", files={"file": ("a.png", data, "image/png")}, headers=analyst[1])
    for r in (raw, octet, multi):
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["verdict"]["error"] is None
        assert body["verdict"]["decision"] == expected["decision"]
        assert body["verdict"]["scores"] == pytest.approx(expected["scores"], abs=1e-6)
        assert (body["sha256"], body["size"]) == (hashlib.sha256(data).hexdigest(), len(data))
        assert body["escalation"] is None and body["request_id"] == r.headers["X-Request-Id"]


def test_unreadable_image_is_a_fail_closed_verdict_not_an_http_error(real_url: str, analyst: Any) -> None:
    for body in (b"not an image at all", b"\x89PNG\r\n\x1a\n truncated"):
        r = httpx.post(f"{real_url}/v1/classify", content=body, headers={**IMG, **analyst[1]})
        assert r.status_code == 200
        verdict = r.json()["verdict"]
        assert verdict["error"] and verdict["decision"] == "block" and verdict["frame"] is None
        assert verdict["reasons"][0]["code"] == "load_error"


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "code"),
    [
        ("post", "/v1/classify", {"json": {"image": "x"}}, 415, "unsupported_media_type"),
        ("post", "/v1/classify", {"files": {"image": ("a.png", b"x", "image/png")}}, 422, "missing_file"),
        ("post", "/v1/classify", {"content": b"", "headers": IMG}, 400, "empty_body"),
        ("post", "/v1/classify", {"files": {"file": ("a.png", b"", "image/png")}}, 400, "empty_body"),
        ("post", "/v1/classify", {"content": b"x", "headers": {**IMG, "X-Genguard-Subject": ""}},
         422, "invalid_request"),
        ("post", "/v1/classify", {"content": b"x", "headers": {**IMG, "X-Genguard-IP": "a" * 300}},
         422, "invalid_request"),
        ("post", "/v1/classify/batch", {"content": b"x", "headers": IMG}, 415, "unsupported_media_type"),
        ("get", "/v1/classify", {}, 405, "method_not_allowed"),
        ("get", "/nowhere", {}, 404, "not_found"),
    ],
)
def test_protocol_errors_are_json(real_url: str, analyst: Any, method: str, path: str, kwargs: dict[str, Any],
                                  status: int, code: str) -> None:
    headers = {**kwargs.pop("headers", {}), **analyst[1]}
    r = httpx.request(method.upper(), f"{real_url}{path}", headers=headers, **kwargs)
    assert r.status_code == status
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["error"] == code and body["message"] and body["request_id"] == r.headers["X-Request-Id"]


@pytest.mark.slow
def test_genguard_serve_cli_with_keys_runs_the_service(tmp_path: Path) -> None:
    """``genguard keys create`` then ``genguard serve --keys`` (the real bundled models) in its own process."""
    keys = tmp_path / "keys.json"
    made = subprocess.run([sys.executable, "-m", "genguard.cli", "keys", "create", "frontend", "--keys", str(keys)],
                          capture_output=True, text=True, check=True)
    key = made.stdout.strip()
    port = free_port()
    cmd = [sys.executable, "-m", "genguard.cli", "serve", "--host", "127.0.0.1", "--port", str(port), "--keys",
           str(keys), "--max-body", "5000000", "--threads", "1", "--audit-log", str(tmp_path / "audit.jsonl")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    auth = {"Authorization": f"Bearer {key}"}
    try:
        deadline, ready = time.monotonic() + 180, None
        while ready is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/readyz", headers=auth, timeout=2)
                ready = r.json() if r.status_code == 200 else None
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        assert ready == {"status": "ready"}, proc.stderr.read().decode() if proc.poll() is not None and proc.stderr else "timeout"
        anonymous = httpx.post(f"http://127.0.0.1:{port}/v1/classify", content=png(photo("coffee", 96)),
                               headers=IMG, timeout=60)
        r = httpx.post(f"http://127.0.0.1:{port}/v1/classify", content=png(photo("coffee", 96)),
                       headers={**IMG, **auth}, timeout=60)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert anonymous.status_code == 401
    assert r.status_code == 200 and r.json()["verdict"]["error"] is None and "scores" not in r.json()["verdict"]
    assert (tmp_path / "audit.jsonl").read_text().count("\n") == 1


@pytest.mark.slow
def test_several_workers_share_one_redis_monitor(tmp_path: Path, redis_url: str) -> None:  # noqa: F811
    """``genguard serve --workers 2`` with a Redis monitor: both worker processes count into one store."""
    import psutil

    from genguard.defences.monitor import AttemptMonitor

    port = free_port()
    prefix_subject = f"w-{time.time_ns()}"
    cmd = [sys.executable, "-m", "genguard.cli", "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2",
           "--threads", "1", "--monitor", redis_url, "--audit-log", str(tmp_path / "audit.jsonl")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline, ready = time.monotonic() + 240, 0
        while ready < 6 and time.monotonic() < deadline and proc.poll() is None:  # both workers, most likely
            try:
                ready += httpx.get(f"{url}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        workers = len(psutil.Process(proc.pid).children(recursive=True))
        image = png(photo("coffee", 64))
        codes = []
        for _ in range(6):  # a new connection each time: the kernel spreads them over the workers
            codes.append(httpx.post(f"{url}/v1/classify", content=image, timeout=120,
                                    headers={**IMG, "X-Genguard-Subject": prefix_subject}).status_code)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    assert workers >= 2 and codes == [200] * 6
    with AttemptMonitor(redis_url) as monitor:
        assert monitor.status(prefix_subject).counts[0].requests == 6
    assert (tmp_path / "audit.jsonl").read_text().count("\n") == 6


# ------------------------------------------------------------------ limits
def test_body_over_the_limit_gets_413_declared_or_streamed() -> None:
    with live_server(create_app(stub_guard(), max_body=1000)) as url:
        declared = httpx.post(f"{url}/v1/classify", content=b"x" * 1001, headers=IMG)
        streamed = httpx.post(f"{url}/v1/classify", content=iter([b"x" * 600] * 2), headers=IMG)  # chunked
        at_limit = httpx.post(f"{url}/v1/classify", content=b"x" * 1000, headers=IMG)
    for r in (declared, streamed):
        assert r.status_code == 413 and r.json()["error"] == "body_too_large"
    assert at_limit.status_code == 200


def test_body_limit_stops_reading_an_endless_body() -> None:
    """Driven at the ASGI level: an upload that never ends is cut off just past the limit."""
    app = create_app(stub_guard(), max_body=10_000)
    pulled, sent = 0, []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": b"x" * 1000, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/v1/classify", "raw_path": b"/v1/classify", "query_string": b"", "root_path": "",
             "headers": [(b"content-type", b"image/png")], "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    asyncio.run(asyncio.wait_for(app(scope, receive, send), timeout=10))
    assert sent[0]["status"] == 413
    assert pulled == 11  # 11 kB is the first size past the 10 kB limit


class _GateEmbedder(ScoreEmbedder):
    """Holds every embed call until ``release`` is set, so a test can keep the server saturated."""

    def __init__(self) -> None:
        super().__init__()
        self.entered, self.release = threading.Event(), threading.Event()

    def embed(self, frames: Sequence[np.ndarray]) -> list[Any]:
        self.entered.set()
        self.release.wait(timeout=30)
        return super().embed(frames)


def test_saturated_server_answers_503_with_retry_after() -> None:
    embedder = _GateEmbedder()
    app = create_app(Guard(embedder=embedder, head=ScoreHead()), max_concurrency=1)
    image = png(painted(0.1, 0.2))
    with live_server(app) as url, ThreadPoolExecutor(1) as pool:
        first = pool.submit(httpx.post, f"{url}/v1/classify", content=image, headers=IMG, timeout=30)
        assert embedder.entered.wait(timeout=20)
        busy = httpx.post(f"{url}/v1/classify", content=image, headers=IMG)
        depth = [line for line in httpx.get(f"{url}/metrics").text.splitlines() if line.startswith("genguard_queue_depth")]
        embedder.release.set()
        done = first.result()
        after = httpx.post(f"{url}/v1/classify", content=image, headers=IMG)
    assert busy.status_code == 503 and busy.json()["error"] == "busy" and busy.headers["Retry-After"] == "1"
    assert depth == ["genguard_queue_depth 1.0"]
    assert done.status_code == 200 and after.status_code == 200


# ------------------------------------------------------------------ subject header, monitor and audit log
def test_real_monitor_and_audit_log_from_paths(tmp_path: Path, analyst: Any) -> None:
    from genguard.defences.audit import AuditLog

    app = create_app(stub_guard(hash_frames=True), keys=analyst[0], monitor=tmp_path / "attempts.sqlite",
                     audit_log=tmp_path / "audit.jsonl")
    image = png(painted(0.9, 0.9, age=8))
    with live_server(app) as url:
        answers = [httpx.post(f"{url}/v1/classify", content=image,
                              headers={**IMG, **analyst[1], "X-Genguard-Subject": "user-1"}) for _ in range(2)]
    bodies = [a.json() for a in answers]
    assert [b["escalation"]["event"] for b in bodies] == ["blocked", "blocked"]
    assert all(b["escalation"]["subject"] == "analyst/user-1" and b["escalation"]["level"] != "ok" for b in bodies)
    records = list(AuditLog(tmp_path / "audit.jsonl").records())
    assert [r["subject"] for r in records] == ["analyst/user-1"] * 2 and records[0]["decision"] == "block"
    assert records[0]["sha256"] == hashlib.sha256(image).hexdigest() and records[0]["pdq"]
    assert [r["source"] for r in records] == [f"request:{a.headers['X-Request-Id']}" for a in answers]


# ------------------------------------------------------------------ concurrency: no lost or mixed-up responses
def _hammer(url: str, images: Sequence[bytes], n_requests: int, clients: int,
            headers: dict[str, str]) -> list[tuple[int, dict[str, Any]]]:
    """``n_requests`` POSTs spread over ``clients`` threads; each returns ``(image index, body)``, in request order."""

    def one_client(ids: Sequence[int]) -> list[tuple[int, int, dict[str, Any]]]:
        out = []
        with httpx.Client(base_url=url, timeout=120) as client:
            for i in ids:
                k = i % len(images)
                r = client.post("/v1/classify", content=images[k], headers={**IMG, **headers})
                assert r.status_code == 200, r.text
                out.append((i, k, r.json()))
        return out

    with ThreadPoolExecutor(clients) as pool:
        parts = list(pool.map(one_client, [range(c, n_requests, clients) for c in range(clients)]))
    results = sorted((x for part in parts for x in part), key=lambda t: t[0])
    assert [i for i, _, _ in results] == list(range(n_requests))
    return [(k, body) for _, k, body in results]


def test_concurrent_clients_get_their_own_verdicts_stub(analyst: Any) -> None:
    """200 requests, 4 clients, 50 distinct painted images, micro-batched: each answer carries its own image's scores."""
    images = [png(painted(m / 10, s / 10, age=30)) for m in range(10) for s in range(5)]
    with live_server(create_app(stub_guard(), keys=analyst[0], max_batch=8, batch_wait_ms=10)) as url:
        results = _hammer(url, images, n_requests=200, clients=4, headers=analyst[1])
    for k, body in results:
        assert body["sha256"] == hashlib.sha256(images[k]).hexdigest()
        assert body["verdict"]["scores"] == {"minor": (k // 5) / 10, "sexual": (k % 5) / 10}


@pytest.mark.slow
def test_load_real_guard_no_lost_or_mixed_responses(guard: Guard, analyst: Any) -> None:
    """200 requests from 4 clients over 16 distinct benign photos, against the real bundled Guard."""
    arrays = [photo(name, size) for name in ("astronaut", "coffee", "chelsea", "rocket",
                                             "hubble_deep_field", "immunohistochemistry", "retina", "colorwheel")
              for size in (64, 96)]
    images = [png(a) for a in arrays]
    expected = [guard.classify(data).to_dict() for data in images]
    sexual = [e["scores"]["sexual"] for e in expected]
    assert min(abs(a - b) for i, a in enumerate(sexual) for b in sexual[i + 1:]) > 1e-6  # a mix-up would show
    with live_server(create_app(guard, keys=analyst[0])) as url:
        results = _hammer(url, images, n_requests=200, clients=4, headers=analyst[1])
    for k, body in results:
        assert body["sha256"] == hashlib.sha256(images[k]).hexdigest()
        assert body["verdict"]["decision"] == expected[k]["decision"]
        assert body["verdict"]["scores"] == pytest.approx(expected[k]["scores"], abs=1e-6)


# ------------------------------------------------------------------ schema conformance
@pytest.fixture(scope="module")
def anonymous_url(guard: Guard) -> Iterator[str]:
    with live_server(create_app(guard, max_body=2_000_000)) as url:
        yield url


if importlib.util.find_spec("schemathesis") is not None:
    import schemathesis
    from hypothesis import HealthCheck, settings

    # The schema does not depend on the Guard, so it is built here from a stub; the requests go to a
    # live loopback server around the real Guard, without keys. (schemathesis.pytest.from_fixture breaks on pytest 9.2.)
    schema = schemathesis.openapi.from_dict(create_app(stub_guard()).openapi())

    @schema.parametrize()
    @settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    def test_schemathesis_conformance(case: Any, anonymous_url: str) -> None:
        """Generated requests (valid and invalid) never get a 5xx or a response that breaks the schema."""
        case.call_and_validate(base_url=anonymous_url, timeout=120)  # a batch of images is slow on a loaded machine

else:

    @pytest.mark.skip(reason="schemathesis is not installed")
    def test_schemathesis_conformance() -> None:
        """Placeholder so the missing dependency shows up as a skip."""
