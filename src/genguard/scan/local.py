"""The local engine: shards scanned in this process, or in a pool of worker processes (``workers > 1``)."""

from __future__ import annotations

import logging
import multiprocessing
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed

import pyarrow as pa

from genguard.scan.sources import Shard, iter_records
from genguard.scan.worker import ScreeningFactory, ShardScanner

__all__ = ["run_local"]

logger = logging.getLogger(__name__)

Commit = Callable[[Shard, pa.Table, float], None]
Progress = Callable[[int], None]


def run_local(
    shards: Sequence[Shard],
    factory: ScreeningFactory,
    commit: Commit,
    progress: Progress,
    *,
    max_bytes: int,
    workers: int = 1,
) -> tuple[dict[str, str], float]:
    """Scan ``shards``, committing each as it finishes; returns ``(failures by shard name, startup seconds)``."""
    if workers <= 1:
        return _in_process(shards, factory, commit, progress, max_bytes)
    return _in_pool(shards, factory, commit, progress, max_bytes, workers)


def _in_process(
    shards: Sequence[Shard], factory: ScreeningFactory, commit: Commit, progress: Progress, max_bytes: int
) -> tuple[dict[str, str], float]:
    t0 = time.perf_counter()
    scanner = ShardScanner(factory)
    startup = time.perf_counter() - t0
    failures: dict[str, str] = {}
    for shard in shards:
        start = time.perf_counter()
        try:
            tables = list(scanner.iter_tables(iter_records(shard, max_bytes=max_bytes), progress=progress))
            commit(shard, pa.concat_tables(tables) if tables else _empty(), time.perf_counter() - start)
        except Exception as exc:  # one broken shard must not stop the scan; it is retried, then reported
            logger.warning("shard %s failed: %r", shard.name, exc)
            failures[shard.name] = f"{type(exc).__name__}: {exc}"
    return failures, startup


# One scanner per worker process, built by the pool's initializer.
_SCANNER: ShardScanner | None = None


def _init_worker(factory: ScreeningFactory) -> None:
    global _SCANNER
    _SCANNER = ShardScanner(factory)


def _scan_shard(shard: Shard, max_bytes: int) -> tuple[pa.Table, float]:
    assert _SCANNER is not None
    start = time.perf_counter()
    table = _SCANNER.table(list(iter_records(shard, max_bytes=max_bytes)))
    return table, time.perf_counter() - start


def _in_pool(
    shards: Sequence[Shard], factory: ScreeningFactory, commit: Commit, progress: Progress, max_bytes: int, workers: int
) -> tuple[dict[str, str], float]:
    failures: dict[str, str] = {}
    # spawn: onnxruntime and dlib keep threads, which fork would copy half-alive.
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(factory,)) as pool:
        futures: dict[Future[tuple[pa.Table, float]], Shard] = {pool.submit(_scan_shard, s, max_bytes): s for s in shards}
        for fut in as_completed(futures):
            shard = futures[fut]
            try:
                table, seconds = fut.result()
            except Exception as exc:  # a crashed worker breaks the pool: its shards are retried by the caller
                logger.warning("shard %s failed: %r", shard.name, exc)
                failures[shard.name] = f"{type(exc).__name__}: {exc}"
                continue
            commit(shard, table, seconds)
            progress(table.num_rows)
    return failures, 0.0


def _empty() -> pa.Table:
    from genguard.scan.output import SCHEMA

    return SCHEMA.empty_table()
