"""The service's parts on their own: API keys (and ``genguard keys``), rate limits, micro-batching, redaction."""

from __future__ import annotations

import asyncio
import doctest
import json
import logging
import os
import stat
import threading
import uuid
from pathlib import Path

import pytest
from conftest_redis import redis_url  # noqa: F401  (a fixture)

from genguard.cli import main
from genguard.serving import batching, keys, ratelimit, redact, runner, settings
from genguard.serving.batching import Busy, MicroBatcher
from genguard.serving.keys import KeyStore
from genguard.serving.ratelimit import Rate, RateLimiter
from genguard.serving.redact import RedactingFilter


@pytest.mark.parametrize("module", [batching, keys, ratelimit, redact, runner, settings])
def test_docstring_examples_run(module: object) -> None:
    assert doctest.testmod(module, raise_on_error=False).failed == 0  # type: ignore[arg-type]


# ------------------------------------------------------------------ keys
def test_key_store_keeps_only_salted_hashes(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.json")
    a, b = store.create("alpha"), store.create("beta", permissions=["classify", "scores"])
    text = (tmp_path / "keys.json").read_text()
    assert a not in text and a.split("_")[2] not in text and b.split("_")[2] not in text
    records = json.loads(text)["keys"]
    assert len({r["salt"] for r in records}) == 2 and all(r["kdf"]["name"] == "scrypt" for r in records)
    assert stat.S_IMODE(os.stat(tmp_path / "keys.json").st_mode) == 0o600
    fresh = KeyStore(tmp_path / "keys.json")  # another process: nothing cached
    assert fresh.verify(a).name == "alpha" and fresh.verify(b).allows("scores") and not fresh.verify(a).allows("scores")
    assert fresh.verify(a[:-1] + ("A" if a[-1] != "A" else "B")) is None
    assert fresh.verify("gg_" + "0" * 8 + "_" + "x" * 43) is None and fresh.verify("nonsense") is None


def test_key_names_and_permissions_are_checked(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.json")
    store.create("svc")
    with pytest.raises(ValueError, match="live key named"):
        store.create("svc")
    for bad in ("", "a/b", "-x", "x" * 65):
        with pytest.raises(ValueError, match="not allowed"):
            store.create(bad)
    with pytest.raises(ValueError, match="permissions"):
        store.create("other", permissions=["admin"])
    store.revoke("svc")
    store.create("svc")  # a revoked name can be reused
    with pytest.raises(KeyError):
        store.revoke("nobody")


def test_wrong_secrets_are_throttled_per_key_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = KeyStore(tmp_path / "keys.json")
    key = store.create("target")
    wrong = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    derivations = []
    real_hash = keys._hash  # noqa: SLF001

    def counting_hash(*args: object, **kwargs: object) -> bytes:
        derivations.append(1)
        return real_hash(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(keys, "_hash", counting_hash)
    monkeypatch.setattr(keys.time, "monotonic", lambda: 1000.0)  # all within one second
    assert store.verify(key) is not None and len(derivations) == 1  # the owner's key, verified once
    assert all(store.verify(wrong) is None for _ in range(30))
    assert len(derivations) == 1 + 10  # the rest refused without computing
    assert store.verify(key) is not None  # an already verified key is not locked out by the flood


def test_keys_cli_create_list_revoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(tmp_path / "keys.json")
    assert main(["keys", "create", "frontend", "--keys", path, "--permissions", "classify,scores"]) == 0
    key = capsys.readouterr().out.strip()
    assert key.startswith("gg_") and KeyStore(path).verify(key).name == "frontend"
    assert main(["keys", "list", "--keys", path, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["name"] == "frontend" and listed["permissions"] == ["classify", "scores"] and key not in str(listed)
    assert main(["keys", "revoke", "frontend", "--keys", path]) == 0
    assert KeyStore(path).verify(key) is None
    assert main(["keys", "revoke", "frontend", "--keys", path]) == 2
    assert main(["keys", "create", "bad/name", "--keys", path]) == 2


def test_serve_refuses_a_public_address_without_keys(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--host", "0.0.0.0", "--port", "1"]) == 2
    assert "without API keys" in capsys.readouterr().err
    assert main(["serve", "--host", "127.0.0.1", "--port", "1", "--rate-per-key", "lots"]) == 2


# ------------------------------------------------------------------ rate limits
def test_rate_windows_and_retry_after() -> None:
    now = [1000.5]
    limiter = RateLimiter({"key": Rate(2, 10.0), "subject": Rate(1, 60.0)}, clock=lambda: now[0])
    assert limiter.hit([("key", "k")]) is None and limiter.hit([("key", "k")]) is None
    assert limiter.hit([("key", "k")]) == pytest.approx(9.5)
    assert limiter.hit([("key", "other")]) is None
    assert limiter.hit([("subject", "s")]) is None and limiter.hit([("subject", "s")]) == pytest.approx(19.5)
    assert limiter.hit([("unlimited-scope", "x")] * 5) is None
    now[0] = 1010.0  # the next 10 s window
    assert limiter.hit([("key", "k")]) is None
    assert limiter.hit([("key", "k")], cost=2) is not None


def test_rates_parse_and_validate() -> None:
    assert Rate.parse("600/min") == Rate(600, 60.0) and Rate.parse("5 / 10s") == Rate(5, 10.0)
    for bad in ("", "10", "10/fortnight", "0/s", "-1/s"):
        with pytest.raises(ValueError):
            Rate.parse(bad)


def test_redis_rate_limits_are_shared_and_fail_closed(redis_url: str) -> None:  # noqa: F811
    prefix = f"test:{uuid.uuid4().hex}:"
    a = RateLimiter({"key": Rate(3, 3600.0)}, redis=redis_url, key_prefix=prefix)
    b = RateLimiter({"key": Rate(3, 3600.0)}, redis=redis_url, key_prefix=prefix)
    results = [x.hit([("key", "k")]) for x in (a, b, a, b)]
    assert results[:3] == [None, None, None] and results[3] is not None
    dead = RateLimiter({"key": Rate(3, 60.0)}, redis="redis://:pw@127.0.0.1:1/0")
    with pytest.raises(ratelimit.RateLimitError) as info:
        dead.hit([("key", "k")])
    assert "pw" not in str(info.value)


# ------------------------------------------------------------------ micro-batching
def test_concurrent_submissions_share_calls_and_keep_their_results() -> None:
    calls: list[int] = []
    batcher = MicroBatcher(lambda xs: calls.append(len(xs)) or [x * 10 for x in xs], max_batch=4, max_wait_s=0.05)

    async def go() -> list[int]:
        return list(await asyncio.gather(*(batcher.submit(i) for i in range(10))))

    with batcher:
        assert asyncio.run(go()) == [i * 10 for i in range(10)]
    assert sum(calls) == 10 and max(calls) == 4 and len(calls) < 10


def test_a_full_batcher_refuses_at_once_and_errors_reach_every_caller() -> None:
    gate = threading.Event()

    def slow(xs: list[int]) -> list[int]:
        gate.wait(5)
        if 13 in xs:
            raise RuntimeError("bad batch")
        return xs

    batcher = MicroBatcher(slow, max_batch=2, max_wait_s=0.0, max_queue=2)

    async def go() -> tuple[object, ...]:
        first = asyncio.ensure_future(batcher.submit(1))
        second = asyncio.ensure_future(batcher.submit(13))
        await asyncio.sleep(0.05)
        with pytest.raises(Busy):
            await batcher.submit(3)
        gate.set()
        return tuple(await asyncio.gather(first, second, return_exceptions=True))

    with batcher:
        results = asyncio.run(go())
    assert any(isinstance(r, RuntimeError) for r in results)
    assert batcher.depth == 0


# ------------------------------------------------------------------ redaction
@pytest.mark.parametrize("secret_text", [
    "redis://:hunter2@127.0.0.1:6379/0", "rediss://user:hunter2@cache.internal/1", "redis://:p@ss@hunter2@h/0",
    "Authorization: Bearer hunter2", "gg_0123abcd_hunter2hunter2hunter2hunter2hunter2xx", "https://h/x?token=hunter2&a=1",
])
def test_redact_masks_credentials(secret_text: str) -> None:
    assert "hunter2" not in redact.redact(f"error: {secret_text} (retrying)")


def test_redacting_filter_masks_messages_args_and_tracebacks() -> None:
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    handler = Keep()
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.addFilter(RedactingFilter())
    log = logging.getLogger(f"test.redact.{uuid.uuid4().hex}")
    log.addHandler(handler)
    log.propagate = False
    log.error("cannot reach %s", "redis://:hunter2@h:6379/0")
    try:
        raise ConnectionError("redis://:hunter2@h:6379/0 refused")
    except ConnectionError:
        log.exception("monitor down")
    assert len(records) == 2 and not any("hunter2" in r for r in records) and "Traceback" in records[1]
