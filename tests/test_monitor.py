"""Attempt monitor: what counts, sliding windows, escalation, retention, and no lost counts under concurrency.

The SQLite and Redis backends run the same behaviour tests; Redis runs against a
real ``redis-server`` started by ``conftest_redis`` (skipped only when absent).
"""

from __future__ import annotations

import doctest
import multiprocessing
import sqlite3
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest_redis import FakeClock, make_monitor, redis_url  # noqa: F401  (fixtures)

import genguard.defences.monitor.monitor as monitor_module
from genguard import Policy, Scores, Verdict
from genguard.defences.monitor.monitor import AttemptMonitor, Escalation, EscalationRule, MonitorError, MonitorSettings

BLOCK = Verdict("block", Scores(0.9, 0.95))
REVIEW = Verdict("review", Scores(0.3, 0.5))
ALLOW = Verdict("allow", Scores(0.05, 0.02))
POLICY = Policy(minor_threshold=0.5, sexual_threshold=0.8, review_minor=0.25, review_sexual=0.4)
BIG = MonitorSettings(rules=(EscalationRule("lock", 86400, blocked=10**6),), max_events=10**6 + 1)


def test_docstring_examples_run() -> None:
    assert doctest.testmod(monitor_module, raise_on_error=False).failed == 0


@pytest.mark.parametrize(
    ("verdict", "policy", "event"),
    [
        (BLOCK, None, "blocked"),
        (REVIEW, None, "near_miss"),
        (ALLOW, POLICY, None),
        (Verdict("allow", Scores(0.45, 0.72)), POLICY, "near_miss"),  # both within 0.1 of the block thresholds
        (Verdict("allow", Scores(0.45, 0.72)), None, None),  # without a policy only the review band counts
        (Verdict("allow", Scores(0.99, 0.01)), POLICY, None),  # a child's portrait: one axis alone is no near miss
        (Verdict("allow", Scores(0.01, 0.99)), POLICY, None),
        (Verdict("block", Scores(1.0, 1.0), error="truncated file"), POLICY, None),  # unreadable: not the user's attempt
    ],
)
def test_what_counts(make_monitor, verdict: Verdict, policy: Policy | None, event: str | None) -> None:
    mon = make_monitor(clock=FakeClock())
    esc = mon.record("alice", verdict, policy=policy)
    assert esc.event == event
    counted = (esc.counts[0].blocked, esc.counts[0].near_misses)
    assert counted == {"blocked": (1, 0), "near_miss": (0, 1), None: (0, 0)}[event]


def test_escalation_levels_and_sliding_windows(make_monitor) -> None:
    clock = FakeClock()
    mon = make_monitor(clock=clock)  # default rules: warn 1 blocked/h, throttle 3/h, lock 5/day
    assert mon.status("bob").level == "ok"
    assert mon.record("bob", BLOCK).level == "warn"
    mon.record("bob", BLOCK)
    esc = mon.record("bob", BLOCK)
    assert esc.level == "throttle" and esc.rule == MonitorSettings().rules[1]
    assert esc.counts[0].blocked == 3 and esc.counts[0].window_s == 3600.0
    clock.now += 3601  # the hour window slides past them; the day and week windows still hold them
    esc = mon.status("bob")
    assert esc.level == "ok"
    assert [(c.window_s, c.blocked) for c in esc.counts] == [(3600.0, 0), (86400.0, 3), (7 * 86400.0, 3)]
    mon.record("bob", BLOCK)
    assert mon.record("bob", BLOCK).level == "lock"
    clock.now += 86400
    assert mon.status("bob").level == "ok"
    assert mon.status("carol").counts[1].blocked == 0  # subjects are separate


def test_near_misses_escalate(make_monitor) -> None:
    mon = make_monitor(clock=FakeClock())
    levels = [mon.record("dave", REVIEW).level for _ in range(10)]
    assert levels == ["ok", "ok"] + ["warn"] * 7 + ["throttle"]


def test_custom_settings_and_to_dict(make_monitor) -> None:
    settings = MonitorSettings(rules=(EscalationRule("lock", 60, blocked=2),), near_margin=0.0, retention_s=120, max_events=10)
    mon = make_monitor(settings=settings, clock=FakeClock())
    mon.record("erin", BLOCK)
    d = mon.record("erin", BLOCK).to_dict()
    assert d == {
        "level": "lock",
        "subject": "erin",
        "event": "blocked",
        "counts": [{"window_s": 60.0, "blocked": 2, "near_misses": 0, "probes": 0, "requests": 0}],
        "rule": {"level": "lock", "window_s": 60, "blocked": 2, "near_misses": None, "probes": None,
                 "requests": None},
    }


def test_state_is_shared_between_monitors_on_one_store(make_monitor) -> None:
    clock = FakeClock()
    make_monitor(clock=clock).record("frank", BLOCK)
    assert make_monitor(clock=clock).status("frank").counts[0].blocked == 1


def test_sqlite_prunes_old_events_and_caps_each_subject(tmp_path: Path) -> None:
    path = tmp_path / "attempts.sqlite"
    clock = FakeClock()
    settings = MonitorSettings(rules=(EscalationRule("warn", 50, blocked=2),), retention_s=100, max_events=5)
    with AttemptMonitor(path, settings=settings, clock=clock) as mon:
        for _ in range(3):
            mon.record("gina", BLOCK)
            mon.record("hank", BLOCK)
        clock.now += 101
        for _ in range(8):
            mon.record("gina", BLOCK)
        with sqlite3.connect(path) as db:
            rows = dict(db.execute("SELECT subject, COUNT(*) FROM attempts GROUP BY subject").fetchall())
        assert rows == {"gina": 5}  # hank's old events pruned by age, gina's capped at max_events
        assert mon.status("gina").counts[0].blocked == 5
        mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"


def test_redis_trims_by_age_and_count(redis_url: str) -> None:  # noqa: F811
    import redis

    prefix = f"test:{uuid.uuid4().hex}:"
    clock = FakeClock()
    settings = MonitorSettings(rules=(EscalationRule("warn", 50, blocked=2),), retention_s=100, max_events=5)
    with AttemptMonitor(redis_url, settings=settings, clock=clock, key_prefix=prefix) as mon:
        for _ in range(8):
            mon.record("ivy", BLOCK)
        client = redis.Redis.from_url(redis_url)
        assert client.zcard(f"{prefix}ivy:blocked") == 5
        assert 0 < client.ttl(f"{prefix}ivy:blocked") <= 101
        clock.now += 101
        mon.record("ivy", BLOCK)
        assert client.zcard(f"{prefix}ivy:blocked") == 1


def _hammer(monitor: AttemptMonitor, subject: str, n: int) -> None:
    for i in range(n):
        monitor.record(subject, BLOCK if i % 2 == 0 else REVIEW)


def test_no_counts_lost_with_concurrent_threads(make_monitor) -> None:
    mon = make_monitor(settings=BIG)
    threads = [threading.Thread(target=_hammer, args=(mon, "jack", 40)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    c = mon.status("jack").counts[0]
    assert (c.blocked, c.near_misses) == (160, 160)


def _process_worker(path: str, n: int) -> None:
    with AttemptMonitor(path, settings=BIG) as mon:
        _hammer(mon, "kate", n)


@pytest.mark.parametrize("start_method", ["spawn", "fork"])
def test_no_counts_lost_with_concurrent_sqlite_processes(tmp_path: Path, start_method: str) -> None:
    if start_method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"no {start_method} start method here")
    path = str(tmp_path / "attempts.sqlite")
    ctx = multiprocessing.get_context(start_method)
    procs = [ctx.Process(target=_process_worker, args=(path, 30)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    c = AttemptMonitor(path, settings=BIG).status("kate").counts[0]
    assert (c.blocked, c.near_misses) == (60, 60)


def test_monitor_inherited_by_forked_children_opens_its_own_connection(tmp_path: Path) -> None:
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork here")
    mon = AttemptMonitor(tmp_path / "attempts.sqlite", settings=BIG)
    mon.record("liam", BLOCK)  # the parent's connection exists before the fork
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_hammer, args=(mon, "liam", 20)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    assert mon.status("liam").counts[0].blocked == 1 + 3 * 10


def test_store_errors_are_monitor_errors(tmp_path: Path) -> None:
    with pytest.raises(MonitorError, match="cannot open the attempt monitor database"):
        AttemptMonitor(tmp_path / "missing-folder" / "attempts.sqlite")
    pytest.importorskip("redis")
    with pytest.raises(MonitorError, match="cannot reach Redis"):
        AttemptMonitor("redis://127.0.0.1:1/0")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"near_margin": 1.5},
        {"retention_s": 10.0},  # shorter than the one-day window
        {"max_events": 5},  # not above the rules' counts
    ],
)
def test_settings_are_validated(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        MonitorSettings(**kwargs)
    with pytest.raises(ValueError, match="level"):
        EscalationRule("ban", 60, blocked=1)  # type: ignore[arg-type]


def test_subject_must_be_a_non_empty_string(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="subject"):
        AttemptMonitor(tmp_path / "a.sqlite").record("", BLOCK)


def test_escalation_orders_levels() -> None:
    assert Escalation("throttle", "x").at_least("warn") and not Escalation("warn", "x").at_least("lock")
