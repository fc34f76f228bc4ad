"""Attempt monitor rules against probing: one-sided probes, a slow month, request volume, several identities.

Scores are injected (Verdicts built directly); no image is involved. The policy is the shipped head's
(minor 0.516 / sexual 0.8 to block, 0.25 / 0.4 to review).
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from conftest_redis import FakeClock, make_monitor, redis_url  # noqa: F401  (fixtures)

from genguard import Policy, Scores, Verdict
from genguard.defences.monitor import AttemptMonitor, EscalationRule, MonitorSettings

POLICY = Policy(minor_threshold=0.5164, sexual_threshold=0.8, review_minor=0.25, review_sexual=0.4)
DAY = 86400.0


def _verdict(minor: float | None, sexual: float) -> Verdict:
    m = 1.0 if minor is None else minor
    return Verdict(POLICY.decide(m, sexual) if minor is not None else "allow", Scores(minor, sexual))


@pytest.mark.parametrize(("minor", "sexual"), [(0.24, 0.99), (0.99, 0.39)])
def test_one_sided_probing_reaches_throttle_within_20_probes(make_monitor, minor: float, sexual: float) -> None:
    """The issue's probes: each is allowed, and 40 of them within minutes used to count as nothing."""
    clock = FakeClock()
    mon = make_monitor(clock=clock)
    levels = []
    for _ in range(40):
        esc = mon.record("probe-user", _verdict(minor, sexual), policy=POLICY)
        assert esc.event == "probe"
        levels.append(esc.level)
        clock.now += 10
    assert levels.index("warn") == 4 and levels.index("throttle") == 19  # warn at 5 probes, throttle at 20


def test_a_slow_month_of_blocks_and_near_misses_escalates() -> None:
    """4 blocks and 29 near misses a day, spread over each day, stay under the hour and day rules but not the week's."""
    clock = FakeClock()
    with AttemptMonitor(":memory:", clock=clock) as mon:
        first: dict[str, float] = {}
        for day in range(30):
            events = ["block"] * 4 + ["near"] * 29
            for i, kind in enumerate(events):
                clock.now = 1_700_000_000.0 + day * DAY + i * DAY / len(events)
                v = Verdict("block", Scores(0.9, 0.95)) if kind == "block" else Verdict("review", Scores(0.3, 0.5))
                level = mon.record("slow-user", v, policy=POLICY).level
                first.setdefault(level, day + i / len(events))
    assert first["throttle"] < 3 and first["lock"] < 5  # days after the first request


def test_request_volume_throttles() -> None:
    settings = MonitorSettings(rules=(EscalationRule("throttle", 60, requests=100),), max_events=200)
    clock = FakeClock()
    with AttemptMonitor(":memory:", settings=settings, clock=clock) as mon:
        levels = [mon.record("busy", Verdict("allow", Scores(0.01, 0.01)), policy=POLICY).level for _ in range(100)]
        assert levels[:99] == ["ok"] * 99 and levels[99] == "throttle"
        clock.now += 61
        assert mon.status("busy").level == "ok"


def test_an_ordinary_subject_stays_ok(make_monitor) -> None:
    """500 ordinary requests over a day (default rules): benign scenes, portraits of children, adult content."""
    rng = random.Random(0)
    clock = FakeClock()
    mon = make_monitor(clock=clock)
    for i in range(500):
        kind = i % 3
        if kind == 0:
            v = _verdict(None, rng.uniform(0.0, 0.39))  # a scene: minor not scored
        elif kind == 1:
            v = _verdict(rng.uniform(0.5, 1.0), rng.uniform(0.0, 0.25))  # a child's portrait
        else:
            v = _verdict(rng.uniform(0.0, 0.1), rng.uniform(0.5, 1.0))  # adult content, no minor
        esc = mon.record("ordinary", v, policy=POLICY)
        assert esc.level == "ok" and esc.event is None, (i, v)
        clock.now += DAY / 500


def test_several_identities_escalate_when_any_does(make_monitor) -> None:
    clock = FakeClock()
    mon = make_monitor(clock=clock)
    block = Verdict("block", Scores(0.9, 0.95))
    # A new account and device per request, one IP: the IP's counts escalate all of them.
    levels = [mon.record(None, block, subjects={"account": f"acct-{i}", "ip": "198.51.100.7", "device": f"dev-{i}"},
                         policy=POLICY) for i in range(3)]
    assert [e.level for e in levels] == ["warn", "warn", "throttle"]
    assert levels[-1].subject == "ip:198.51.100.7"
    fresh = mon.status(subjects={"account": "acct-new", "ip": "198.51.100.7"})
    assert fresh.level == "throttle" and fresh.subject == "ip:198.51.100.7"
    assert mon.status(subjects={"account": "acct-new", "ip": "203.0.113.1"}).level == "ok"
    assert mon.status("acct-0").level == "ok"  # a plain subject is not the account "account:acct-0"


@pytest.mark.parametrize("bad", [{}, {"ip": ""}, {"": "x"}])
def test_subjects_must_be_named(tmp_path: Path, bad: dict[str, str]) -> None:
    with AttemptMonitor(tmp_path / "a.sqlite") as mon, pytest.raises(ValueError, match="subject"):
        mon.record(None, Verdict("allow", Scores(0.0, 0.0)), subjects=bad)


def test_redis_url_credentials_never_shown(redis_url: str) -> None:  # noqa: F811
    from genguard.errors import MonitorError

    url = redis_url.replace("redis://", "redis://:s3cret-pw@")
    # The test server has no password: Redis refuses AUTH, and the message must not carry it.
    try:
        mon = AttemptMonitor(url)
    except MonitorError as exc:
        assert "s3cret-pw" not in str(exc) and "***@" in str(exc)
    else:
        assert "s3cret-pw" not in repr(mon) and "s3cret-pw" not in mon.location
        mon.close()
    with pytest.raises(MonitorError) as info:
        AttemptMonitor("redis://:s3cret-pw@127.0.0.1:1/0")
    assert "s3cret-pw" not in str(info.value)
