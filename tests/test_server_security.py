"""The service lets in only trusted callers, enforces escalation, limits rates and discloses little.

All against a live uvicorn server on 127.0.0.1 around a stub Guard whose scores are painted into
benign flat images (conftest's ScoreEmbedder); blocking comes from painted scores, never from content.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from conftest import ScoreEmbedder, ScoreHead, painted  # noqa: E402
from conftest_redis import redis_url  # noqa: E402, F401  (a fixture)
from live_server import live_server, png  # noqa: E402

from genguard import Guard  # noqa: E402
from genguard.defences.audit import AuditLog  # noqa: E402
from genguard.defences.monitor import AttemptMonitor, EscalationRule, MonitorSettings  # noqa: E402
from genguard.serving.enforcement import Enforcement  # noqa: E402
from genguard.serving.keys import KeyStore  # noqa: E402
from genguard.serving.screening import Screening  # noqa: E402
from genguard.serving.server import create_app  # noqa: E402

ALLOW = png(painted(0.1, 0.1))
BLOCK = png(painted(0.9, 0.9, age=8))
REVIEW = png(painted(0.3, 0.5, age=30))
IMG = {"Content-Type": "image/png"}


def stub_guard() -> Guard:
    return Guard(embedder=ScoreEmbedder(), head=ScoreHead(), hash_frames=True)


@pytest.fixture
def keys(tmp_path: Path) -> tuple[KeyStore, dict[str, str]]:
    store = KeyStore(tmp_path / "keys.json")
    made = {"plain": store.create("plain"), "scores": store.create("analyst", permissions=("classify", "scores")),
            "ops": store.create("ops", permissions=("metrics", "docs"))}
    return store, made


def bearer(key: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **IMG, **extra}


# ------------------------------------------------------------------ keys
def test_every_route_but_healthz_needs_a_valid_key(keys: Any) -> None:
    store, made = keys
    with live_server(create_app(stub_guard(), keys=store)) as url:
        assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
        for method, path in (("GET", "/readyz"), ("GET", "/metrics"), ("GET", "/openapi.json"),
                             ("POST", "/v1/classify"), ("POST", "/v1/classify/batch")):
            for headers in ({}, {"Authorization": "Bearer gg_00000000_" + "A" * 43},
                            {"Authorization": made["plain"][:-1] + "x"}, {"Authorization": "Basic abc"},
                            {"Authorization": f"Bearer {made['plain'][:-1]}{'B' if made['plain'][-1] != 'B' else 'C'}"}):
                r = httpx.request(method, f"{url}{path}", content=ALLOW, headers={**IMG, **headers})
                assert r.status_code == 401, (path, headers, r.text)
                assert r.json()["error"] == "unauthorized" and r.headers["WWW-Authenticate"] == "Bearer"
        ok = httpx.post(f"{url}/v1/classify", content=ALLOW, headers=bearer(made["plain"]))
        assert ok.status_code == 200 and ok.json()["verdict"]["decision"] == "allow"
        assert httpx.get(f"{url}/readyz", headers=bearer(made["plain"])).json() == {"status": "ready"}
        # a key without the route's permission
        assert httpx.get(f"{url}/metrics", headers=bearer(made["plain"])).status_code == 403
        assert httpx.post(f"{url}/v1/classify", content=ALLOW, headers=bearer(made["ops"])).status_code == 403
        metrics = httpx.get(f"{url}/metrics", headers=bearer(made["ops"]))
        assert metrics.status_code == 200 and "genguard_requests_total" in metrics.text
        # revoking takes effect on the running server
        store.revoke("plain")
        assert httpx.post(f"{url}/v1/classify", content=ALLOW, headers=bearer(made["plain"])).status_code == 401


def test_docs_only_for_keys_with_docs_or_when_enabled(keys: Any) -> None:
    store, made = keys
    with live_server(create_app(stub_guard(), keys=store)) as url:
        assert httpx.get(f"{url}/docs").status_code == 404
        assert httpx.get(f"{url}/openapi.json", headers=bearer(made["plain"])).status_code == 403
        schema = httpx.get(f"{url}/openapi.json", headers=bearer(made["ops"]))
        assert schema.status_code == 200 and "/v1/classify" in schema.json()["paths"]
    with live_server(create_app(stub_guard(), docs=True)) as url:
        assert httpx.get(f"{url}/docs").status_code == 200
        assert httpx.get(f"{url}/openapi.json").status_code == 200
    with live_server(create_app(stub_guard())) as url:
        assert httpx.get(f"{url}/openapi.json").status_code == 403
        assert httpx.get(f"{url}/docs").status_code == 404


# ------------------------------------------------------------------ disclosure
def test_minimal_disclosure_unless_the_key_may_see_scores(keys: Any, tmp_path: Path) -> None:
    store, made = keys
    monitor = AttemptMonitor(tmp_path / "attempts.sqlite")
    with live_server(create_app(stub_guard(), keys=store, monitor=monitor)) as url:
        plain = httpx.post(f"{url}/v1/classify", content=REVIEW, headers=bearer(made["plain"], **{
            "X-Genguard-Subject": "u1"})).json()
        full = httpx.post(f"{url}/v1/classify", content=REVIEW, headers=bearer(made["scores"], **{
            "X-Genguard-Subject": "u1"})).json()
        unreadable = httpx.post(f"{url}/v1/classify", content=b"\x89PNG\r\n\x1a\n truncated",
                                headers=bearer(made["plain"], **{"X-Genguard-Subject": "u1"})).json()
        health = httpx.get(f"{url}/healthz").json()
    assert plain["verdict"] == {"decision": "review", "blocked": False, "reasons": [{"code": "review_band"}],
                                "error": None}
    assert plain["escalation"] == {"level": "ok"}
    assert full["verdict"]["scores"] == {"minor": 0.3, "sexual": 0.5}
    assert any(r["code"] == "minor_face" and "age" in r for r in full["verdict"]["reasons"])
    assert full["escalation"]["counts"] and full["escalation"]["subject"] == "analyst/u1"
    assert unreadable["verdict"]["decision"] == "block" and unreadable["verdict"]["error"] == "the image could not be read"
    assert health == {"status": "ok"}
    for body in (plain, unreadable):
        text = str(body)
        assert "scores" not in text and "threshold" not in text and "minor_skipped" not in text


# ------------------------------------------------------------------ enforcement
def _mon(tmp_path: Path, **rules: Any) -> AttemptMonitor:
    settings = MonitorSettings(rules=(EscalationRule("throttle", 3600, blocked=2), EscalationRule("lock", 3600, blocked=3)))
    return AttemptMonitor(tmp_path / f"attempts-{uuid.uuid4().hex}.sqlite", settings=settings)


def test_subject_required_throttle_429_lock_403(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.jsonl")
    app = create_app(stub_guard(), monitor=_mon(tmp_path), audit_log=audit, enforcement=Enforcement(retry_after_s=7))
    with live_server(app) as url:
        missing = httpx.post(f"{url}/v1/classify", content=ALLOW, headers=IMG)
        s = {**IMG, "X-Genguard-Subject": "mallory"}
        first = [httpx.post(f"{url}/v1/classify", content=BLOCK, headers=s) for _ in range(2)]
        throttled = httpx.post(f"{url}/v1/classify", content=ALLOW, headers=s)
        other = httpx.post(f"{url}/v1/classify", content=ALLOW, headers={**IMG, "X-Genguard-Subject": "trent"})
    assert missing.status_code == 400 and missing.json()["error"] == "subject_required"
    assert [r.status_code for r in first] == [200, 200] and first[0].json()["verdict"]["decision"] == "block"
    assert first[1].json()["escalation"] == {"level": "throttle"}
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "7"
    assert throttled.json()["error"] == "subject_throttled"
    assert other.status_code == 200
    assert len(list(audit.records())) == 3  # refused requests were never scored

    # lock: a blocking verdict without scoring, recorded in the audit log
    mon = _mon(tmp_path)
    for _ in range(3):
        mon.record("mallory", Guard(embedder=ScoreEmbedder(), head=ScoreHead(), hash_frames=True).classify(painted(0.9, 0.9, age=8)))
    embedder = ScoreEmbedder()
    audit2 = AuditLog(tmp_path / "audit2.jsonl")
    with live_server(create_app(Guard(embedder=embedder, head=ScoreHead(), hash_frames=True), monitor=mon, audit_log=audit2)) as url:
        locked = httpx.post(f"{url}/v1/classify", content=ALLOW, headers={**IMG, "X-Genguard-Subject": "mallory"})
    assert locked.status_code == 403 and locked.json()["error"] == "subject_locked"
    assert locked.json()["verdict"]["decision"] == "block"
    assert [r["code"] for r in locked.json()["verdict"]["reasons"]] == ["subject_locked"]
    assert embedder.calls == []  # the models never ran
    (record,) = audit2.records()
    assert record["decision"] == "block" and record["subject"] == "mallory"


def test_enforcement_is_configurable(tmp_path: Path) -> None:
    mon = _mon(tmp_path)
    guard = stub_guard()
    for _ in range(3):
        mon.record("bob", guard.classify(painted(0.9, 0.9, age=8)))
    screening = Screening(guard, monitor=mon, enforcement=Enforcement(lock="refuse", require_subject=False))
    with live_server(create_app(screening)) as url:
        anonymous = httpx.post(f"{url}/v1/classify", content=ALLOW, headers=IMG)
        refused = httpx.post(f"{url}/v1/classify", content=ALLOW, headers={**IMG, "X-Genguard-Subject": "bob"})
    assert anonymous.status_code == 200 and anonymous.json()["escalation"] is None
    assert refused.status_code == 429


def test_subjects_are_namespaced_by_key_and_several_identities_count(keys: Any, tmp_path: Path) -> None:
    store, made = keys
    mon = _mon(tmp_path)
    with live_server(create_app(stub_guard(), keys=store, monitor=mon)) as url:
        for i in range(2):  # a new account each time, one IP
            r = httpx.post(f"{url}/v1/classify", content=BLOCK, headers=bearer(made["plain"], **{
                "X-Genguard-Account": f"acct-{i}", "X-Genguard-IP": "198.51.100.7"}))
            assert r.status_code == 200
        same_ip = httpx.post(f"{url}/v1/classify", content=ALLOW, headers=bearer(made["plain"], **{
            "X-Genguard-Account": "acct-new", "X-Genguard-IP": "198.51.100.7"}))
        other_key = httpx.post(f"{url}/v1/classify", content=ALLOW, headers=bearer(made["scores"], **{
            "X-Genguard-Account": "acct-0", "X-Genguard-IP": "198.51.100.7"}))
    assert same_ip.status_code == 429  # throttled through the shared IP
    assert other_key.status_code == 200  # another key's subjects are another namespace
    assert mon.status(subjects={"ip": "plain/198.51.100.7"}).level == "throttle"


# ------------------------------------------------------------------ rate limits
def test_rate_limits_per_key_and_per_subject(keys: Any) -> None:
    store, made = keys
    app = create_app(stub_guard(), keys=store, rate_per_key="5/h", rate_per_subject="3/h")
    with live_server(app) as url:
        by_subject = [httpx.post(f"{url}/v1/classify", content=ALLOW, headers=bearer(made["plain"], **{
            "X-Genguard-Subject": "s1"})).status_code for _ in range(4)]
        by_key = [httpx.post(f"{url}/v1/classify", content=ALLOW, headers=bearer(made["plain"], **{
            "X-Genguard-Subject": f"n{i}"})).status_code for i in range(3)]
        last = httpx.post(f"{url}/v1/classify", content=ALLOW, headers=bearer(made["plain"]))
        other = httpx.post(f"{url}/v1/classify", content=ALLOW, headers=bearer(made["scores"]))
    assert by_subject == [200, 200, 200, 429]
    assert by_key == [200, 429, 429]  # the key's 5th request (counting the refused one) is its last
    assert last.status_code == 429 and 1 <= int(last.headers["Retry-After"]) <= 3600
    assert last.json()["error"] == "rate_limited" and other.status_code == 200


def test_rate_limits_are_shared_through_redis(tmp_path: Path, redis_url: str) -> None:  # noqa: F811
    store = KeyStore(tmp_path / "keys.json")
    key = store.create(f"k-{uuid.uuid4().hex[:12]}")  # a fresh name: the Redis server outlives this test
    apps = [create_app(stub_guard(), keys=store, rate_per_key="4/h", rate_redis=redis_url) for _ in range(2)]
    with live_server(apps[0]) as a, live_server(apps[1]) as b:
        codes = [httpx.post(f"{u}/v1/classify", content=ALLOW, headers=bearer(key)).status_code
                 for u in (a, b, a, b, a, b)]
    assert codes == [200] * 4 + [429] * 2


# ------------------------------------------------------------------ records and secrets
class _BrokenMonitor:
    """A monitor whose store has failed (disk full, Redis down): every call raises MonitorError."""

    def status(self, *a: Any, **k: Any) -> Any:
        from genguard.errors import MonitorError

        raise MonitorError("attempt monitor Redis 'redis://:hunter2@127.0.0.1:1/0': Connection refused")

    record = status


def test_monitor_failure_fails_closed_without_leaking(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    audit = AuditLog(tmp_path / "audit.jsonl")
    with live_server(create_app(stub_guard(), monitor=_BrokenMonitor(), audit_log=audit)) as url:
        with caplog.at_level(logging.ERROR, logger="genguard"):
            r = httpx.post(f"{url}/v1/classify", content=ALLOW, headers={**IMG, "X-Genguard-Subject": "u"})
    assert r.status_code == 503 and r.json()["error"] == "monitor_unavailable"
    assert "hunter2" not in r.text and r.json()["request_id"] == r.headers["X-Request-Id"]
    assert r.json()["request_id"] in caplog.text and "hunter2" not in caplog.text


def test_audit_record_is_written_first_whatever_the_monitor_does(tmp_path: Path) -> None:
    class FailsOnRecord:
        def __init__(self) -> None:
            self.inner = AttemptMonitor(tmp_path / "a.sqlite")

        def status(self, *a: Any, **k: Any) -> Any:
            return self.inner.status(*a, **k)

        def record(self, *a: Any, **k: Any) -> Any:
            from genguard.errors import MonitorError

            raise MonitorError("database or disk is full")

    audit = AuditLog(tmp_path / "audit.jsonl")
    with live_server(create_app(stub_guard(), monitor=FailsOnRecord(), audit_log=audit)) as url:
        r = httpx.post(f"{url}/v1/classify", content=BLOCK, headers={**IMG, "X-Genguard-Subject": "u"})
    assert r.status_code == 503 and r.json()["error"] == "monitor_unavailable"
    (record,) = audit.records()
    assert record["decision"] == "block" and record["subject"] == "u"


def test_internal_errors_are_generic_with_a_request_id(caplog: pytest.LogCaptureFixture) -> None:
    class Exploding(Screening):
        def classify_batch(self, images: Any) -> Any:
            raise RuntimeError("secret detail redis://:hunter2@192.0.2.1")

    with live_server(create_app(Exploding(stub_guard()))) as url, caplog.at_level(logging.ERROR, logger="genguard"):
        r = httpx.post(f"{url}/v1/classify", content=ALLOW, headers=IMG)
    assert r.status_code == 500 and r.json()["error"] == "internal_error"
    assert "hunter2" not in r.text and "secret detail" not in r.text
    assert r.json()["request_id"] == r.headers["X-Request-Id"] and r.json()["request_id"] in caplog.text


# ------------------------------------------------------------------ batching, batch endpoint, metrics
def test_concurrent_requests_share_model_calls_and_metrics_count_them() -> None:
    from concurrent.futures import ThreadPoolExecutor

    embedder = ScoreEmbedder()
    app = create_app(Guard(embedder=embedder, head=ScoreHead(), hash_frames=True), max_batch=8, batch_wait_ms=30)
    images = [png(painted(m / 10, 0.1)) for m in range(8)]
    with live_server(app) as url, ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda im: httpx.post(f"{url}/v1/classify", content=im, headers=IMG, timeout=30),
                                images * 3))
        metrics = httpx.get(f"{url}/metrics").text
    assert all(a.status_code == 200 for a in answers)
    assert sum(embedder.calls) == 24 and max(embedder.calls) > 1  # fewer model calls than requests
    assert 'genguard_requests_total{decision="allow",route="/v1/classify",status="200"} 24.0' in metrics
    assert "genguard_batch_size_count" in metrics and "genguard_queue_depth 0.0" in metrics
    assert 'genguard_request_duration_seconds_count{route="/v1/classify"} 24.0' in metrics


def test_batch_endpoint_one_result_per_file(keys: Any) -> None:
    store, made = keys
    files = [("file", (f"{i}.png", png(painted(0.9 if i == 1 else 0.1, 0.9, age=8)), "image/png")) for i in range(3)]
    with live_server(create_app(stub_guard(), keys=store, max_batch_images=3)) as url:
        r = httpx.post(f"{url}/v1/classify/batch", files=files, headers={"Authorization": f"Bearer {made['plain']}"})
        too_many = httpx.post(f"{url}/v1/classify/batch", files=files * 2,
                              headers={"Authorization": f"Bearer {made['plain']}"})
    assert r.status_code == 200
    assert [x["verdict"]["decision"] for x in r.json()["results"]] == ["allow", "block", "allow"]
    assert too_many.status_code == 400
