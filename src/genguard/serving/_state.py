"""What the service's routes share: the screening once loaded, the batcher, the limits and the metrics."""

from __future__ import annotations

from typing import Any

from genguard.serving._http import BodyBudget
from genguard.serving.batching import MicroBatcher
from genguard.serving.metrics import ServiceMetrics
from genguard.serving.ratelimit import RateLimiter
from genguard.serving.screening import Screening
from genguard.serving.settings import ServiceSettings

__all__ = ["ServiceState"]


class ServiceState:
    """What the app's routes share: the screening once loaded, the batcher, limits and metrics."""

    def __init__(self, settings: ServiceSettings, metrics: ServiceMetrics) -> None:
        self.settings, self.metrics = settings, metrics
        self.screening: Screening | None = None
        self.load_error: str | None = None
        self.budget = BodyBudget(settings.budget)
        self.batcher: MicroBatcher[bytes, Any] | None = None
        self.limiter: RateLimiter | None = None

    def ready(self, screening: Screening) -> None:
        s = self.settings
        self.batcher = MicroBatcher(screening.classify_batch, max_batch=s.max_batch, max_wait_s=s.batch_wait_ms / 1000,
                                    max_queue=s.max_concurrency, workers=s.batch_workers,
                                    on_batch=self.metrics.batch_size.observe)
        self.metrics.queue_depth.set_function(lambda: self.batcher.depth if self.batcher is not None else 0)
        self.screening = screening
