"""The Ray engine: Ray Data reads the shards, an actor pool of Guards scores them, the driver commits shards.

Pipeline::

    from_items(shard specs) -> map_batches(read: one row per chunk of whole Guard batches)
        -> map_batches(_GuardActor, 4 chunks a call, ActorPoolStrategy(size=workers), num_cpus / num_gpus per actor)
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

_CHUNK = pa.schema([
    ("shard", pa.string()), ("first", pa.int64()), ("total", pa.int64()),
    ("index", pa.list_(pa.int64())), ("source", pa.list_(pa.string())), ("id", pa.list_(pa.string())),
    ("data", pa.list_(pa.large_binary())), ("error", pa.list_(pa.string())),
])
"""One row per chunk: ``block_rows`` consecutive records of one shard, starting at index ``first`` (a multiple of
``block_rows``). Ray slices and merges blocks only between rows, so a chunk always reaches one actor whole."""

_TARGET_BLOCK_BYTES = 64 << 10
"""Ray Data's target block size during a scan: one chunk per block on the way in, about 100 rows per block on the
way out, so that work streams to the actors and rows stream back (Ray never splits a row)."""


def _read_shards(batch: pa.Table, max_bytes: int, block_rows: int) -> Iterator[pa.Table]:
    """Read task: each shard spec into chunk rows; the shard's last chunk carries its record count (``total``)."""
    for spec in batch.column("spec").to_pylist():
        shard = Shard.from_json(spec)
        chunk: list[Record] = []
        full: list[Record] | None = None  # held back until we know whether it is the last
        n = 0
        for rec in iter_records(shard, max_bytes=max_bytes):
            if full is not None:
                yield _chunk_row(shard.name, full, -1)
                full = None
            chunk.append(rec)
            n += 1
            if len(chunk) == block_rows:
                full, chunk = chunk, []
        yield _chunk_row(shard.name, full if full is not None else chunk, n)  # an empty shard: one empty chunk


def _chunk_row(shard: str, chunk: Sequence[Record], total: int) -> pa.Table:
    row: dict[str, list[Any]] = {f: [[getattr(r, f) for r in chunk]] for f in ("index", "source", "id", "data", "error")}
    return pa.table({"shard": [shard], "first": [chunk[0].index if chunk else 0], "total": [total], **row}, schema=_CHUNK)


class _GuardActor:
    """Actor: one Guard; chunk rows in, one output row per record out (plus ``total``; index -1 marks an empty shard)."""

    def __init__(self, factory: ScreeningFactory) -> None:
        from genguard.scan.worker import ShardScanner

        self.scanner = ShardScanner(factory)

    def __call__(self, batch: pa.Table) -> pa.Table:
        chunks = sorted(batch.to_pylist(), key=lambda c: (c["shard"], c["first"]))
        out = []
        run: list[dict[str, Any]] = []
        for c in chunks + [None]:
            # Consecutive chunks of a shard go to the Guard as one stream (its decode threads read ahead);
            # every stream starts at a chunk start, so the Guard forms the local engine's batches.
            if run and (c is None or c["shard"] != run[-1]["shard"] or c["first"] != run[-1]["first"] + len(run[-1]["index"])):
                out.append(self._score(run))
                run = []
            if c is not None:
                run.append(c)
        return pa.concat_tables(out)

    def _score(self, run: list[dict[str, Any]]) -> pa.Table:
        from genguard.scan.output import SCHEMA

        shard = run[0]["shard"]
        recs = [Record(shard, *fields) for c in run for fields in zip(c["index"], c["source"], c["id"], c["data"], c["error"])]
        total = max(c["total"] for c in run)
        if not recs:  # an empty shard: one marker row says so
            marker = {name: [None] for name in SCHEMA.names} | {"shard": [shard], "index": [-1]}
            return pa.table(marker, schema=SCHEMA).append_column("total", pa.array([total], pa.int64()))
        table = self.scanner.table(recs)
        totals = [-1] * (table.num_rows - 1) + [total]  # the shard's count rides on its last record, if in this run
        return table.append_column("total", pa.array(totals, pa.int64()))


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
    saved = ctx.enable_progress_bars, ctx.max_errored_blocks, ctx.target_max_block_size
    ctx.enable_progress_bars = False  # genguard's own bar counts images
    ctx.target_max_block_size = _TARGET_BLOCK_BYTES
    ctx.max_errored_blocks = -1  # a block that keeps failing drops its rows: its shard stays unfinished and is retried
    gather = _Gatherer({s.name: s for s in shards}, commit, progress)
    failures: dict[str, str] = {}
    try:
        ds: Any = ray.data.from_items([{"spec": s.to_json()} for s in shards], override_num_blocks=max(1, len(shards)))
        ds = ds.map_batches(_read_shards, fn_kwargs={"max_bytes": max_bytes, "block_rows": block_rows}, batch_size=1,
                            batch_format="pyarrow", num_cpus=0.25, compute=ray.data.TaskPoolStrategy(size=max(1, workers)))
        ds = ds.map_batches(_GuardActor, fn_constructor_args=(factory,), batch_size=4, batch_format="pyarrow",
                            compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=cpus_per_worker,
                            num_gpus=gpus_per_worker or None)
        for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            gather.add(batch)
    except Exception as exc:  # the job failed: shards not committed are retried by the caller
        logger.warning("Ray job failed: %r", exc)
        failures.update({s.name: f"{type(exc).__name__}: {exc}" for s in shards})
    finally:
        ctx.enable_progress_bars, ctx.max_errored_blocks, ctx.target_max_block_size = saved
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
