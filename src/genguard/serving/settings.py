"""The service's settings: limits, batching, rate limits and disclosure, in one frozen dataclass."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Final

from genguard.serving.ratelimit import Rate

__all__ = ["MAX_BODY", "MAX_CONCURRENCY", "ServiceSettings"]

MAX_BODY: Final = 20 * 1024 * 1024
"""Default request body limit (20 MiB), the same as ``genguard serve --max-body``."""

MAX_CONCURRENCY: Final = 32
"""Default number of requests waiting for or in inference; the next one gets 503."""


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    """How the HTTP service reads, batches, limits and answers requests.

    Parameters
    ----------
    max_body : int, default 20 MiB
        Largest request body in bytes; larger ones get 413 without being buffered.
    max_concurrency : int, default 32
        Requests waiting for or in inference at once (the inference slots); the next gets 503
        with ``Retry-After``. A slot is taken only once the whole body has arrived.
    max_batch : int, default 8
        Most images in one model call: concurrent requests are micro-batched.
    batch_wait_ms : float, default 4.0
        How long the first request of a batch waits for others.
    batch_workers : int, default 1
        Threads running batches (2 let one batch decode while another runs the models).
    body_timeout_s : float, default 10.0
        The whole body must arrive within this time after the headers; else 408.
    upload_budget : int or None, default None
        Bytes of bodies being received at once, across requests (None: ``4 * max_body``); past it, 503.
    max_batch_images : int, default 16
        Most images in one ``POST /v1/classify/batch``.
    rate_per_key, rate_per_subject : Rate or None, default None
        At most this many images per API key / per subject identity; None: no limit.
    rate_redis : str or None, default None
        Redis URL that holds the rate-limit counters (shared by all workers and hosts); None: in memory.
    docs : bool, default False
        Serve ``/docs`` and ``/openapi.json`` to anyone; otherwise ``/openapi.json`` only to keys
        with the ``docs`` permission and no ``/docs`` page.
    """

    max_body: int = MAX_BODY
    max_concurrency: int = MAX_CONCURRENCY
    max_batch: int = 8
    batch_wait_ms: float = 4.0
    batch_workers: int = 1
    body_timeout_s: float = 10.0
    upload_budget: int | None = None
    max_batch_images: int = 16
    rate_per_key: Rate | None = None
    rate_per_subject: Rate | None = None
    rate_redis: str | None = None
    docs: bool = False

    def __post_init__(self) -> None:
        for name in ("max_body", "max_concurrency", "max_batch", "batch_workers", "max_batch_images"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ServiceSettings.{name} must be a positive integer, got {value!r}")
        if not self.batch_wait_ms >= 0 or not self.body_timeout_s > 0:
            raise ValueError(f"batch_wait_ms must be >= 0 and body_timeout_s > 0, got {self.batch_wait_ms} "
                             f"and {self.body_timeout_s}")
        if self.upload_budget is not None and self.upload_budget < self.max_body:
            raise ValueError(f"upload_budget ({self.upload_budget}) must be at least max_body ({self.max_body})")

    @classmethod
    def build(cls, base: ServiceSettings | None = None, **options: Any) -> ServiceSettings:
        """``base`` (default: the defaults) with ``options`` replaced; rates may be strings such as ``"600/min"``.

        Examples
        --------
        >>> ServiceSettings.build(max_batch=4, rate_per_key="10/s").rate_per_key
        Rate(requests=10, per_s=1.0)
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(f"unknown service settings {unknown}; known: {sorted(known)}")
        for name in ("rate_per_key", "rate_per_subject"):
            if isinstance(options.get(name), str):
                options[name] = Rate.parse(options[name])
        return replace(base or cls(), **options)

    @property
    def budget(self) -> int:
        """The upload budget in bytes."""
        return self.upload_budget if self.upload_budget is not None else 4 * self.max_body
