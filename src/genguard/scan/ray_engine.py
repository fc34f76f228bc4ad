"""The Ray engine: Ray Data reads the shards, an actor pool of Guards scores them, the driver commits shards.

Pipeline::

    from_items(shard specs) -> map_batches(read, generator: whole Guard batches per block)
        -> map_batches(_GuardActor, concurrency=workers, num_cpus / num_gpus per actor)
        -> iter_batches at the driver -> rows gathered per shard -> ShardStore.commit (atomic)

The driver writes each shard's Parquet file once all its rows have arrived,
which is what makes a killed scan resumable shard by shard (``Dataset.write_parquet``
writes per block, with no notion of a finished shard).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pyarrow as pa

from genguard.scan.sources import Record, Shard, iter_records
from genguard.scan.worker import ScreeningFactory

__all__ = ["run_ray"]

logger = logging.getLogger(__name__)

_RECORD = pa.schema([("shard", pa.string()), ("index", pa.int64()), ("source", pa.string()), ("id", pa.string()),
                     ("data", pa.binary()), ("error", pa.string()), ("total", pa.int64())])


def _read_shards(batch: pa.Table, max_bytes: int, block_rows: int) -> Iterator[pa.Table]:
    """Read task: each shard spec into blocks of ``block_rows`` records (whole Guard batches)."""
    for spec in batch.column("spec").to_pylist():
        shard = Shard.from_json(spec)
        block: list[Record] = []
        full: list[Record] | None = None  # held back until we know whether it is the last
        n = 0
        for rec in iter_records(shard, max_bytes=max_bytes):
            if full is not None:
                yield _records_table(full, -1)
                full = None
            block.append(rec)
            n += 1
            if len(block) == block_rows:
                full, block = block, []
        last = full if full is not None else block
        # The shard's last block says how many records it has; an empty shard sends one marker row (index -1).
        yield _records_table(last, n) if last else _records_table([Record(shard.name, -1, "", "", None)], 0)


def _records_table(block: Sequence[Record], total: int) -> pa.Table:
    cols: dict[str, list[Any]] = {f: [getattr(r, f) for r in block] for f in ("shard", "index", "source", "id", "data", "error")}
    return pa.table({**cols, "total": [total] * len(block)}, schema=_RECORD)


class _GuardActor:
    """Actor: one Guard; each block of records in, their rows out (with ``total``; marker rows pass through)."""

    def __init__(self, factory: ScreeningFactory) -> None:
        from genguard.scan.worker import ShardScanner

        self.scanner = ShardScanner(factory)

    def __call__(self, batch: pa.Table) -> pa.Table:
        import pyarrow.compute as pc

        out = []
        for shard in sorted(set(batch.column("shard").to_pylist())):
            part = batch.filter(pc.equal(batch.column("shard"), shard)).sort_by("index")
            markers = part.filter(pc.equal(part.column("index"), -1))
            part = part.filter(pc.not_equal(part.column("index"), -1))
            if part.num_rows:
                recs = [Record(**{k: v for k, v in r.items() if k != "total"}) for r in part.to_pylist()]
                out.append(self.scanner.table(recs).append_column("total", part.column("total")))
            if markers.num_rows:
                out.append(markers.select(["shard", "index", "total"]))
        return pa.concat_tables(out, promote_options="default")


def run_ray(
    shards: Sequence[Shard],
    factory: ScreeningFactory,
    commit: Callable[[Shard, pa.Table, float], None],
    progress: Callable[[int], None],
    *,
    max_bytes: int,
    workers: int = 2,
    cpus_per_worker: float = 1.0,
    gpus_per_worker: float = 0.0,
    block_rows: int = 32,
) -> tuple[dict[str, str], float]:
    """Scan ``shards`` on Ray; returns ``(failures by shard name, startup seconds)``.

    Joins the cluster named by ``RAY_ADDRESS``, or starts a local one bound to
    127.0.0.1 with ``workers * cpus_per_worker`` CPUs (plus one for reading).
    """
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise ImportError("the ray engine needs Ray Data: pip install 'genguard[ray]'") from exc
    t0 = time.perf_counter()
    started = not ray.is_initialized()
    if started:
        if os.environ.get("RAY_ADDRESS"):
            ray.init(log_to_driver=False)
        else:
            cpus = int(max(1, round(workers * cpus_per_worker))) + 1
            ray.init(num_cpus=cpus, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    startup = time.perf_counter() - t0
    ctx = ray.data.DataContext.get_current()
    saved = ctx.enable_progress_bars, ctx.max_errored_blocks
    ctx.enable_progress_bars = False  # genguard's own bar counts images
    ctx.max_errored_blocks = -1  # a block that keeps failing drops its rows: its shard stays unfinished and is retried
    gather = _Gatherer({s.name: s for s in shards}, commit, progress)
    failures: dict[str, str] = {}
    try:
        ds: Any = ray.data.from_items([{"spec": s.to_json()} for s in shards], override_num_blocks=max(1, len(shards)))
        ds = ds.map_batches(_read_shards, fn_kwargs={"max_bytes": max_bytes, "block_rows": block_rows}, batch_size=1,
                            batch_format="pyarrow", num_cpus=0.25, compute=ray.data.TaskPoolStrategy(size=max(1, workers)))
        ds = ds.map_batches(_GuardActor, fn_constructor_args=(factory,), batch_size=None, batch_format="pyarrow",
                            compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=cpus_per_worker,
                            num_gpus=gpus_per_worker or None)
        for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            gather.add(batch)
    except Exception as exc:  # the job failed: shards not committed are retried by the caller
        logger.warning("Ray job failed: %r", exc)
        failures.update({s.name: f"{type(exc).__name__}: {exc}" for s in shards})
    finally:
        ctx.enable_progress_bars, ctx.max_errored_blocks = saved
        if started:  # a cluster this call started (or joined) is left when it is done
            ray.shutdown()
    for s in shards:
        if s.name in gather.committed:
            failures.pop(s.name, None)
        elif s.name not in failures:
            failures[s.name] = "rows missing after the Ray job (a block kept failing)"
    return failures, startup


class _Gatherer:
    """Driver side: rows gathered per shard; a shard is committed once all its rows are in (duplicates dropped)."""

    def __init__(self, shards: dict[str, Shard], commit: Callable[[Shard, pa.Table, float], None], progress: Callable[[int], None]) -> None:
        self.shards, self.commit, self.progress = shards, commit, progress
        self.rows: dict[str, dict[int, pa.Table]] = {}
        self.totals: dict[str, int] = {}
        self.started: dict[str, float] = {}
        self.committed: set[str] = set()

    def add(self, batch: pa.Table) -> None:
        import pyarrow.compute as pc

        from genguard.scan.output import SCHEMA

        for name in set(batch.column("shard").to_pylist()):
            if name in self.committed:
                continue
            part = batch.filter(pc.equal(batch.column("shard"), name))
            self.started.setdefault(name, time.perf_counter())
            known = [t for t in part.column("total").to_pylist() if t >= 0]
            if known:
                self.totals[name] = known[0]
            rows = self.rows.setdefault(name, {})
            for k, i in enumerate(part.column("index").to_pylist()):
                if i >= 0 and i not in rows:  # a retried block may deliver rows twice
                    rows[i] = part.slice(k, 1)
                    self.progress(1)
            if self.totals.get(name) == len(rows):
                table = pa.concat_tables([rows[i] for i in sorted(rows)]).select(SCHEMA.names) if rows else SCHEMA.empty_table()
                self.commit(self.shards[name], table, time.perf_counter() - self.started[name])
                self.committed.add(name)
                del self.rows[name]
