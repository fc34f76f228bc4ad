"""Rate limits of the HTTP service: at most N requests per T seconds per API key and per subject.

Fixed windows: the count of the current window (``floor(now / per_s)``) is incremented and
compared with the limit; an answer over it carries ``retry_after_s``, the time left in the
window. With a Redis URL the counters live in Redis (``INCR`` and ``EXPIRE`` in one
transaction), so every worker and host that shares the URL shares the limits; without
one they live in this process. A fixed window lets through up to twice the limit across a
window boundary; it never lets through more.

Examples
--------
>>> limiter = RateLimiter({"key": Rate.parse("2/s")}, clock=lambda: 100.0)
>>> [limiter.hit([("key", "frontend")]) for _ in range(3)]
[None, None, 1.0]
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from genguard.errors import GenguardError

__all__ = ["Rate", "RateLimitError", "RateLimiter"]

_UNITS: Final = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0,
                 "h": 3600.0, "hour": 3600.0, "d": 86400.0, "day": 86400.0}
_RATE: Final = re.compile(r"^\s*(\d+)\s*/\s*(\d*\.?\d*)\s*([a-z]+)\s*$")


class RateLimitError(GenguardError, RuntimeError):
    """Raised when the shared rate-limit store (Redis) cannot be reached; the service then refuses (fail closed)."""


@dataclass(frozen=True, slots=True)
class Rate:
    """At most ``requests`` requests per ``per_s`` seconds.

    Examples
    --------
    >>> Rate.parse("600/min"), Rate.parse("5/10s")
    (Rate(requests=600, per_s=60.0), Rate(requests=5, per_s=10.0))
    """

    requests: int
    per_s: float

    def __post_init__(self) -> None:
        if self.requests < 1 or not self.per_s > 0:
            raise ValueError(f"a rate needs requests >= 1 and per_s > 0, got {self.requests}/{self.per_s}s")

    @classmethod
    def parse(cls, text: str) -> Rate:
        """``"N/UNIT"`` or ``"N/KUNIT"`` with UNIT one of s, min, h, day (e.g. ``"600/min"``, ``"5/10s"``)."""
        match = _RATE.match(text.lower())
        if match is None or match.group(3) not in _UNITS:
            raise ValueError(f"rate {text!r} is not N/UNIT (UNIT: s, min, h, day), e.g. '600/min' or '5/10s'")
        count, mult, unit = match.groups()
        return cls(int(count), (float(mult) if mult else 1.0) * _UNITS[unit])


class RateLimiter:
    """Count requests per scope (``"key"``, ``"subject"``) and identity, in memory or in Redis.

    Parameters
    ----------
    rates : mapping of scope to Rate
        The limit of each scope; a scope that is not here is not limited.
    redis : str or redis.Redis or None, default None
        Share the counters through this Redis (URL or client); None keeps them in this process.
    key_prefix : str, default "genguard:rate:"
    clock : callable, default time.time
    """

    def __init__(self, rates: Mapping[str, Rate], *, redis: Any = None, key_prefix: str = "genguard:rate:",
                 clock: Callable[[], float] = time.time) -> None:
        self.rates = dict(rates)
        self.prefix = key_prefix
        self.clock = clock
        self._client = _redis_client(redis) if redis is not None else None
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], tuple[int, int]] = {}

    def hit(self, identities: Iterable[tuple[str, str]], cost: int = 1) -> float | None:
        """Count ``cost`` requests for each ``(scope, identity)``; seconds to wait when any limit is passed, else None.

        A refused request still counts (a client that keeps knocking stays refused).

        Raises
        ------
        RateLimitError
            The Redis store cannot be reached.
        """
        now = self.clock()
        checks = [(scope, ident, self.rates[scope]) for scope, ident in identities if scope in self.rates]
        if not checks:
            return None
        windows = [math.floor(now / rate.per_s) for _, _, rate in checks]
        if self._client is None:
            counts = self._hit_memory(checks, windows, cost)
        else:
            counts = self._hit_redis(checks, windows, cost)
        waits = [(w + 1) * rate.per_s - now for (_, _, rate), w, c in zip(checks, windows, counts) if c > rate.requests]
        return max(waits) if waits else None

    def _hit_memory(self, checks: list[tuple[str, str, Rate]], windows: list[int], cost: int) -> list[int]:
        out = []
        with self._lock:
            if len(self._counts) > 100_000:  # forget finished windows
                self._counts = {k: v for k, v in self._counts.items()
                                if v[0] >= math.floor(self.clock() / self.rates[k[0]].per_s)}
            for (scope, ident, _), window in zip(checks, windows):
                start, count = self._counts.get((scope, ident), (window, 0))
                count = count + cost if start == window else cost
                self._counts[(scope, ident)] = (window, count)
                out.append(count)
        return out

    def _hit_redis(self, checks: list[tuple[str, str, Rate]], windows: list[int], cost: int) -> list[int]:
        import redis

        client = self._client
        assert client is not None  # only called with a Redis client
        try:
            pipe = client.pipeline(transaction=True)
            for (scope, ident, rate), window in zip(checks, windows):
                key = f"{self.prefix}{scope}:{ident}:{window}"
                pipe.incrby(key, cost)
                pipe.expire(key, int(math.ceil(rate.per_s)) + 1)
            results = pipe.execute()
        except redis.RedisError as exc:
            raise RateLimitError(f"the rate-limit store is unavailable: {type(exc).__name__}") from exc
        return [int(results[2 * i]) for i in range(len(checks))]

    def close(self) -> None:
        """Close the Redis connection, if any."""
        if self._client is not None:
            self._client.close()


def _redis_client(redis_or_url: Any) -> Any:
    if not isinstance(redis_or_url, str):
        return redis_or_url
    try:
        import redis
    except ImportError as exc:
        raise RateLimitError("shared rate limits need the redis package: pip install 'genguard[redis]'") from exc
    return redis.Redis.from_url(redis_or_url, socket_timeout=2.0, socket_connect_timeout=2.0)
