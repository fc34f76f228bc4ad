"""Micro-batching: requests that arrive together share one model call.

:class:`MicroBatcher` runs a function of a list (``fn(items) -> results``, same length and
order) in its own worker threads. :meth:`MicroBatcher.submit`, awaited from the event loop,
queues one item; a worker takes the first queued item, waits up to ``max_wait_s`` for more
(at most ``max_batch`` in all), calls ``fn`` once, and hands each caller its own result. When
``max_queue`` items are already waiting or running, :meth:`submit` raises :class:`Busy` at
once, so a burst is refused instead of piling up.

Examples
--------
>>> import asyncio
>>> batcher = MicroBatcher(lambda xs: [x * 2 for x in xs], max_batch=4, max_wait_s=0.01)
>>> async def go():
...     return await asyncio.gather(*(batcher.submit(i) for i in range(6)))
>>> with batcher:
...     asyncio.run(go())
[0, 2, 4, 6, 8, 10]
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

__all__ = ["Busy", "MicroBatcher"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class Busy(Exception):
    """Raised by :meth:`MicroBatcher.submit` when ``max_queue`` items are already in the batcher."""


class _Job:
    __slots__ = ("item", "future", "loop")

    def __init__(self, item: Any, future: asyncio.Future[Any], loop: asyncio.AbstractEventLoop) -> None:
        self.item, self.future, self.loop = item, future, loop


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the caller went away
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class MicroBatcher(Generic[T, R]):
    """Group concurrent :meth:`submit` calls into calls of ``fn`` on lists.

    Parameters
    ----------
    fn : callable
        ``fn(items) -> results``, one result per item, in order; runs in a worker thread.
    max_batch : int, default 8
        Most items per call.
    max_wait_s : float, default 0.004
        How long the first item of a batch waits for others.
    max_queue : int, default 32
        Most items waiting or running; beyond that :meth:`submit` raises :class:`Busy`.
    workers : int, default 1
        Threads calling ``fn`` (two let decoding of one batch overlap inference of another).
    on_batch : callable or None
        Called with each batch's size (for metrics).
    """

    def __init__(self, fn: Callable[[list[T]], Sequence[R]], *, max_batch: int = 8, max_wait_s: float = 0.004,
                 max_queue: int = 32, workers: int = 1, on_batch: Callable[[int], None] | None = None) -> None:
        if max_batch < 1 or max_queue < 1 or workers < 1 or max_wait_s < 0:
            raise ValueError(f"max_batch, max_queue and workers must be >= 1 and max_wait_s >= 0, got "
                             f"{max_batch}, {max_queue}, {workers}, {max_wait_s}")
        self.fn, self.max_batch, self.max_wait_s, self.max_queue = fn, max_batch, max_wait_s, max_queue
        self.workers, self.on_batch = workers, on_batch
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._pending = 0
        self._lock = threading.Lock()

    @property
    def depth(self) -> int:
        """Items waiting or running now."""
        return self._pending

    def start(self) -> None:
        """Start the worker threads (idempotent; :meth:`submit` starts them when needed)."""
        with self._lock:
            if self._threads:
                return
            for i in range(self.workers):
                t = threading.Thread(target=self._run, name=f"genguard-batch-{i}", daemon=True)
                t.start()
                self._threads.append(t)

    def stop(self, timeout: float | None = 30.0) -> None:
        """Let queued items finish, then stop the workers."""
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join(timeout)
        self._threads = []

    def __enter__(self) -> MicroBatcher[T, R]:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def submit(self, item: T) -> R:
        """Queue ``item`` and wait for its result; raises :class:`Busy` when the batcher is full."""
        if not self._threads:
            self.start()
        with self._lock:
            if self._pending >= self.max_queue:
                raise Busy(f"{self.max_queue} requests are already queued or running")
            self._pending += 1
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._queue.put(_Job(item, future, loop))
        return await future

    def _done(self, n: int) -> None:
        with self._lock:
            self._pending -= n

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs = [first]
            deadline = time.monotonic() + self.max_wait_s
            stop = False
            while len(jobs) < self.max_batch:
                left = deadline - time.monotonic()
                try:
                    job = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stop = True
                    break
                jobs.append(job)
            live = [j for j in jobs if not j.future.cancelled()]
            try:
                if live:
                    if self.on_batch is not None:
                        self.on_batch(len(live))
                    self._call(live)
            finally:
                self._done(len(jobs))
            if stop:
                return

    def _call(self, jobs: list[_Job]) -> None:
        try:
            results = list(self.fn([j.item for j in jobs]))
            if len(results) != len(jobs):
                raise RuntimeError(f"the batch function returned {len(results)} results for {len(jobs)} items")
        except Exception as exc:  # every caller of the batch gets the error
            for j in jobs:
                j.loop.call_soon_threadsafe(_settle, j.future, None, exc)
            return
        for j, r in zip(jobs, results):
            j.loop.call_soon_threadsafe(_settle, j.future, r, None)
