"""Prometheus metrics of the HTTP service, through the official ``prometheus_client`` library.

Each app has its own :class:`~prometheus_client.CollectorRegistry` (several apps in one
process, as in the tests, do not collide). ``GET /metrics`` renders it in the text format.

==================================  =========  =======================================
name                                type       labels
==================================  =========  =======================================
genguard_requests_total             counter    route, status, decision
genguard_request_duration_seconds   histogram  route
genguard_queue_depth                gauge      (requests waiting for or in inference)
genguard_batch_size                 histogram  (images per model call)
genguard_escalations_total          counter    level
==================================  =========  =======================================
"""

from __future__ import annotations

from typing import Final

__all__ = ["CONTENT_TYPE", "ServiceMetrics"]

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
_LATENCY_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS: Final = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)


class ServiceMetrics:
    """The service's counters, histograms and gauges in one private registry."""

    def __init__(self) -> None:
        try:
            from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
        except ImportError as exc:
            raise ImportError("the service's /metrics needs prometheus-client: pip install 'genguard[serve]'") from exc
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("genguard_requests", "HTTP requests answered, by route, status and decision.",
                                ("route", "status", "decision"), registry=self.registry)
        self.latency = Histogram("genguard_request_duration_seconds", "Time from request to response, by route.",
                                 ("route",), buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.queue_depth = Gauge("genguard_queue_depth", "Requests waiting for or in inference.",
                                 registry=self.registry)
        self.batch_size = Histogram("genguard_batch_size", "Images per model call.", buckets=_BATCH_BUCKETS,
                                    registry=self.registry)
        self.escalations = Counter("genguard_escalations", "Requests by the escalation level of their subjects.",
                                   ("level",), registry=self.registry)

    def observe(self, route: str, status: int, decision: str, seconds: float) -> None:
        """Count one answered request."""
        self.requests.labels(route, str(status), decision).inc()
        self.latency.labels(route).observe(seconds)

    def render(self) -> bytes:
        """The registry in the Prometheus text format."""
        from prometheus_client import generate_latest

        return bytes(generate_latest(self.registry))
