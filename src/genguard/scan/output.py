"""What a scan writes: one Parquet file per shard, committed atomically, and a manifest of finished shards.

Layout of ``--out DIR``::

    DIR/shards/NAME.parquet   one row per image of shard NAME
    DIR/done.jsonl            one line per finished shard (name, rows, errors, seconds)
    DIR/failed.json           shards that kept failing in the last run, with their errors
    DIR/summary.json          counts by decision, errors, throughput
    DIR/score_histograms.png  minor and sexual score histograms

A shard's file is written to a temporary name and renamed into place, then
its line is appended to ``done.jsonl``: a shard is finished only when both
exist, so a scan killed at any point and rerun writes every row exactly once.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["SCHEMA", "ShardStore"]

SCHEMA: Final = pa.schema(
    [
        ("shard", pa.string()),
        ("index", pa.int64()),
        ("source", pa.string()),
        ("id", pa.string()),
        ("sha256", pa.string()),
        ("pdq", pa.string()),
        ("decision", pa.string()),
        ("minor", pa.float64()),
        ("sexual", pa.float64()),
        ("reasons", pa.string()),
        ("error", pa.string()),
        ("frame", pa.int32()),
        ("backbone", pa.string()),
        ("head", pa.string()),
        ("genguard_version", pa.string()),
    ]
)
"""One row per image. ``pdq``: the first frame's PDQ hash (hex); ``reasons``: a JSON list; ``minor``/``sexual``: null where not scored."""


class ShardStore:
    """The output folder of a scan: finished shards, atomic commits, the done manifest.

    Examples
    --------
    >>> import tempfile
    >>> store = ShardStore(tempfile.mkdtemp())
    >>> store.commit("part-1", SCHEMA.empty_table())["rows"]
    0
    >>> sorted(store.done())
    ['part-1']
    """

    def __init__(self, out: str | os.PathLike[str]) -> None:
        self.root = Path(out)
        self.shards = self.root / "shards"
        self.shards.mkdir(parents=True, exist_ok=True)
        self.manifest = self.root / "done.jsonl"

    def done(self) -> dict[str, dict[str, Any]]:
        """Finished shards by name: listed in the manifest and their file present."""
        out: dict[str, dict[str, Any]] = {}
        if self.manifest.exists():
            for line in self.manifest.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:  # a line cut short by a kill: that shard is redone
                    continue
                if isinstance(entry, dict) and (self.shards / f"{entry.get('name')}.parquet").exists():
                    out[str(entry["name"])] = entry
        return out

    def commit(self, name: str, table: pa.Table, *, seconds: float = 0.0) -> dict[str, Any]:
        """Write ``table`` as shard ``name`` (temp file, fsync, rename), then record it as done."""
        table = table.cast(SCHEMA)
        final = self.shards / f"{name}.parquet"
        tmp = self.shards / f".{name}.parquet.{os.getpid()}.tmp"
        pq.write_table(table, tmp, compression="zstd")
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, final)
        errors = table.num_rows - table.column("error").null_count
        entry = {"name": name, "rows": table.num_rows, "errors": errors,
                 "seconds": round(seconds, 3), "time": time.time()}
        with open(self.manifest, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
            f.flush()
            os.fsync(f.fileno())
        return entry

    def tables(self, names: Iterable[str], columns: list[str] | None = None) -> Iterable[pa.Table]:
        """The finished shards' tables, optionally only some columns."""
        for name in names:
            yield pq.read_table(self.shards / f"{name}.parquet", columns=columns)

    def write_json(self, name: str, data: Mapping[str, Any]) -> Path:
        """Write ``DIR/name`` atomically."""
        path = self.root / name
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, path)
        return path
