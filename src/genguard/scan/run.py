"""``scan()``: plan the shards, skip the finished ones, run an engine, retry failures, summarise."""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from genguard.imageio.loader import MAX_BYTES
from genguard.scan.output import ShardStore
from genguard.scan.sources import Shard, plan_shards
from genguard.scan.worker import ScreeningFactory, ScreeningSettings

__all__ = ["scan"]

logger = logging.getLogger(__name__)

Engine = Literal["local", "ray"]


def scan(
    sources: Sequence[str],
    out: str | os.PathLike[str],
    *,
    engine: Engine = "local",
    guard: ScreeningFactory | None = None,
    workers: int = 1,
    cpus_per_worker: float = 1.0,
    gpus_per_worker: float = 0.0,
    shard_size: int = 1000,
    image_column: str | None = None,
    id_column: str | None = None,
    retries: int = 2,
    max_bytes: int = MAX_BYTES,
    progress: bool = False,
    plots: bool = True,
) -> dict[str, Any]:
    """Screen every image of ``sources`` into Parquet under ``out``; returns the summary (also ``out/summary.json``).

    Parameters
    ----------
    sources : sequence of str
        Folders or globs of images, CSV/Parquet manifests, WebDataset ``.tar`` shards.
    out : path
        Output folder; a rerun with the same sources skips the shards already finished there.
    engine : {"local", "ray"}, default "local"
    guard : ScreeningSettings or None
        How each worker builds its Guard (any picklable object with ``build()`` and ``policy()``).
    workers : int, default 1
        Local: worker processes (1 = this process). Ray: Guard actors.
    retries : int, default 2
        Extra attempts for a shard whose worker failed; after them it is reported in ``failed``.
    """
    from tqdm import tqdm

    factory: ScreeningFactory = guard if guard is not None else ScreeningSettings()
    if engine == "ray" and isinstance(factory, ScreeningSettings) and factory.threads is None:
        # one onnxruntime thread per CPU the actor holds, not one per core of the node
        factory = dataclasses.replace(factory, threads=max(1, int(cpus_per_worker)))
    t0 = time.perf_counter()
    shards = plan_shards(sources, shard_size=shard_size, image_column=image_column, id_column=id_column)
    store = ShardStore(out)
    done = store.done()
    todo = [s for s in shards if s.name not in done]
    sizes = [s.size for s in shards]
    total = sum(s or 0 for s in sizes) if all(s is not None for s in sizes) else None
    bar = tqdm(total=total, initial=sum(done[s.name]["rows"] for s in shards if s.name in done), unit="img",
               file=sys.stderr, disable=not progress, delay=1.0, mininterval=0.5)
    meter = _Meter(bar.update)
    rows_now = 0

    def commit(shard: Shard, table: pa.Table, seconds: float) -> None:
        nonlocal rows_now
        store.commit(shard.name, table, seconds=seconds)
        rows_now += table.num_rows

    failures: dict[str, str] = {}
    startup = 0.0
    attempts = 0
    try:
        while todo and attempts <= retries:
            attempts += 1
            failures, boot = _run_engine(engine, todo, factory, commit, meter.update, max_bytes=max_bytes, workers=workers,
                                         cpus_per_worker=cpus_per_worker, gpus_per_worker=gpus_per_worker)
            startup += boot
            todo = [s for s in todo if s.name in failures]
    finally:
        bar.close()
    elapsed = time.perf_counter() - t0
    summary = _summarise(store, shards, failures, factory, plots=plots)
    summary["run"] = {
        "engine": engine, "workers": workers, "attempts": attempts, "images_scanned": rows_now,
        "shards_skipped": len(done), "seconds": round(elapsed, 3), "engine_start_seconds": round(startup, 3),
        **meter.figures(t0, time.perf_counter()),
    }
    store.write_json("summary.json", summary)
    if failures:
        logger.error("%d shard(s) failed after %d attempts; see %s", len(failures), attempts, store.root / "summary.json")
    return summary


class _Meter:
    """Counts scored images for the progress bar, and times the steady state after the first results."""

    def __init__(self, update: Callable[[int], Any]) -> None:
        self.update_bar, self.rows, self.first_at, self.first_rows = update, 0, 0.0, 0

    def update(self, n: int) -> None:
        if not self.rows:
            self.first_at, self.first_rows = time.perf_counter(), n
        self.rows += n
        self.update_bar(n)

    def figures(self, t0: float, end: float) -> dict[str, Any]:
        """``first_results_seconds`` (start-up: models, Ray, actors) and images/s after them, end to end."""
        if not self.rows:
            return {"first_results_seconds": None, "images_per_second": None, "images_per_second_end_to_end": None}
        steady = (self.rows - self.first_rows) / (end - self.first_at) if self.rows > self.first_rows else None
        return {"first_results_seconds": round(self.first_at - t0, 3),
                "images_per_second": None if steady is None else round(steady, 3),
                "images_per_second_end_to_end": round(self.rows / (end - t0), 3)}


def _run_engine(
    engine: Engine, shards: Sequence[Shard], factory: ScreeningFactory, commit: Any, progress: Any, **kw: Any
) -> tuple[dict[str, str], float]:
    if engine == "local":
        from genguard.scan.local import run_local

        return run_local(shards, factory, commit, progress, max_bytes=kw["max_bytes"], workers=kw["workers"])
    if engine == "ray":
        from genguard.scan.ray_engine import run_ray

        block_rows = 4 * int(getattr(factory, "batch_size", 8))  # whole Guard batches per block, as the local engine forms them
        return run_ray(shards, factory, commit, progress, block_rows=block_rows, **kw)
    raise ValueError(f"engine must be 'local' or 'ray', got {engine!r}")


def _summarise(store: ShardStore, shards: Sequence[Shard], failures: dict[str, str], factory: ScreeningFactory, *, plots: bool) -> dict[str, Any]:
    done = store.done()
    names = [s.name for s in shards if s.name in done]
    decisions: dict[str, int] = {}
    errors = rows = 0
    hist_bins = np.linspace(0, 1, 21)
    hist = {"minor": np.zeros(20, np.int64), "sexual": np.zeros(20, np.int64)}
    sample: dict[str, list[float]] = {"minor": [], "sexual": []}
    for t in store.tables(names, columns=["decision", "error", "minor", "sexual"]):
        rows += t.num_rows
        errors += t.num_rows - t.column("error").null_count
        for d, n in zip(*np.unique(np.asarray(t.column("decision").to_pylist(), dtype=object), return_counts=True)):
            decisions[str(d)] = decisions.get(str(d), 0) + int(n)
        ok = t.filter(pa.compute.is_null(t.column("error")))
        for axis in ("minor", "sexual"):
            values = np.asarray(ok.column(axis).drop_null().to_numpy(), dtype=float)
            hist[axis] += np.histogram(values, bins=hist_bins)[0]
            if len(sample[axis]) < 200_000:
                sample[axis].extend(values[: 200_000 - len(sample[axis])].tolist())
    stale = sorted(set(done) - {s.name for s in shards})
    summary: dict[str, Any] = {
        "images": rows, "errors": errors, "decisions": decisions,
        "shards": {"planned": len(shards), "finished": len(names), "failed": len(failures)},
        "failed_shards": [{"name": n, "error": e} for n, e in sorted(failures.items())],
        "score_histograms": {"bins": hist_bins.tolist(), **{k: v.tolist() for k, v in hist.items()}},
    }
    if stale:
        summary["stale_shards"] = stale
    if plots and rows > errors:
        from genguard.learn.evaluation.plots import plot_score_histograms

        policy = factory.policy()
        n = max(len(sample["minor"]), len(sample["sexual"]))
        pts = [{"minor": sample["minor"][i] if i < len(sample["minor"]) else None,
                "sexual": sample["sexual"][i] if i < len(sample["sexual"]) else None} for i in range(n)]
        path = plot_score_histograms(pts, policy.minor_threshold, policy.sexual_threshold, store.root / "score_histograms.png")
        if path is not None:  # None when no minor score was computed (the default skip, on benign data)
            summary["plots"] = {path.name: f"the first {n} scored images of the finished shards"}
    return summary
