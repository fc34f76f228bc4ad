"""Audit log: record contents, never the image, rotation, SQLite, and whole lines under concurrent writers.

The hash chain and tampering are tested in test_audit_chain.py.

Benign images only (scikit-image photos).
"""

from __future__ import annotations

import doctest
import hashlib
import json
import multiprocessing
import sqlite3
import threading
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

import genguard
import genguard.defences.audit.log as audit_module
from genguard import Reason, Scores, Verdict
from genguard.defences.audit import AuditError, AuditLog
from genguard.defences.blocklist import hash_image

VERDICT = Verdict(
    "block",
    Scores(0.91, 0.87),
    (Reason("both_high", {"minor": 0.91, "sexual": 0.87}), Reason("hash_match", {"distance": 4, "hash": "ab" * 32, "frame": 0})),
    backbone="bundled",
    head="head@1",
)
KEYS = {"seq", "time", "subject", "source", "sha256", "pdq", "decision", "scores", "reasons", "error", "frame", "models", "prev", "hash"}


@pytest.fixture(scope="module")
def coffee() -> np.ndarray:
    from skimage import data

    return data.coffee()


def test_docstring_examples_run() -> None:
    assert doctest.testmod(audit_module, raise_on_error=False).failed == 0


@pytest.mark.parametrize("suffix", [".jsonl", ".sqlite"])
def test_record_holds_hashes_scores_and_versions_but_not_the_image(tmp_path: Path, coffee: np.ndarray, suffix: str) -> None:
    from genguard.pipeline import Limits, Pipeline

    png = tmp_path / "coffee.png"
    Image.fromarray(coffee).save(png)
    item = Pipeline(None, None, Limits(1 << 26, 50_000_000, 16), hash_frames=True).load(png)  # type: ignore[arg-type]
    assert item.loaded is not None
    verdict = replace(VERDICT, sha256=item.loaded.sha256, pdq=tuple(h.hash for h in item.pdq))
    log = AuditLog(tmp_path / f"audit{suffix}")
    before = datetime.now().astimezone()
    rec = log.record(verdict, subject="user-7", source="coffee.png")
    (stored,) = list(log.records())
    assert stored == rec and set(rec) == KEYS
    when = datetime.fromisoformat(rec["time"])
    assert when.utcoffset() == timedelta(0) and abs(when - before) < timedelta(seconds=30)
    assert rec["subject"] == "user-7" and rec["source"] == "coffee.png"
    assert rec["sha256"] == hashlib.sha256(png.read_bytes()).hexdigest()
    assert rec["pdq"] == hash_image(coffee)
    assert rec["decision"] == "block" and rec["scores"] == {"minor": 0.91, "sexual": 0.87}
    assert rec["reasons"] == [r.to_dict() for r in VERDICT.reasons]
    assert rec["models"] == {"backbone": "bundled", "head": "head@1", "genguard": genguard.__version__}
    assert len(json.dumps(rec)) < 2000  # hashes only: the 400x600 photo is nowhere in it


def test_without_guard_the_verdict_names_the_models(tmp_path: Path) -> None:
    rec = AuditLog(tmp_path / "a.jsonl").record(replace(VERDICT, backbone="verdict-backbone", head="verdict-head"))
    assert rec["models"]["backbone"] == "verdict-backbone" and rec["models"]["head"] == "verdict-head"
    assert rec["subject"] is None and rec["sha256"] is None


def test_rotation_keeps_every_file_and_every_line_whole(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, max_bytes=3000)
    for i in range(40):
        log.record(VERDICT, subject=f"s{i:03d}")
    files = sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock"))
    assert len(files) > 5 and files[:2] == ["audit.jsonl", "audit.jsonl.000000000000"]  # rotated files: PATH.<first seq>
    for name in files:
        assert (tmp_path / name).stat().st_size <= 3000
    subjects = [r["subject"] for r in log.records()]
    assert subjects == [f"s{i:03d}" for i in range(40)]  # none dropped, in order


def test_backups_is_deprecated_and_deletes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with pytest.warns(DeprecationWarning, match="never deleted"):
        log = AuditLog(path, max_bytes=1000, backups=0)  # used to truncate the whole log at each rotation
    for i in range(10):
        log.record(VERDICT, subject=f"s{i}")
    assert len(list(log.records())) == 10


def test_sqlite_log_is_append_only(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    log = AuditLog(path)
    log.record(VERDICT, subject="a")
    with sqlite3.connect(path) as db:
        for statement in ("UPDATE audit SET decision = 'allow'", "DELETE FROM audit"):
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                db.execute(statement)
    assert [r["decision"] for r in log.records()] == ["block"]


def test_unwritable_path_is_an_audit_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(AuditError, match="cannot open audit log"):
        AuditLog(tmp_path / "file" / "audit.jsonl")
    with pytest.raises(ValueError):
        AuditLog(tmp_path / "a.jsonl", max_bytes=-1)


def _write_many(path: str, tag: str, n: int, max_bytes: int) -> None:
    log = AuditLog(path, max_bytes=max_bytes)
    for i in range(n):
        log.record(VERDICT, subject=f"{tag}-{i}")


def _check_complete(path: Path, expected: set[str]) -> None:
    seen: list[str] = []
    for f in path.parent.glob(path.name + "*"):
        if f.suffix == ".lock":
            continue
        for line in f.read_text().splitlines():
            seen.append(json.loads(line)["subject"])  # every line parses: no torn or interleaved records
    assert len(seen) == len(expected) and set(seen) == expected


@pytest.mark.parametrize("suffix", [".jsonl", ".sqlite"])
def test_concurrent_threads_write_whole_records(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"audit{suffix}"
    threads = [threading.Thread(target=_write_many, args=(str(path), f"t{k}", 30, 8000)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    expected = {f"t{k}-{i}" for k in range(6) for i in range(30)}
    if suffix == ".jsonl":
        _check_complete(path, expected)
        assert len(list(tmp_path.glob("audit.jsonl.*"))) > 3  # rotation happened while they wrote
    else:
        assert {r["subject"] for r in AuditLog(path).records()} == expected


@pytest.mark.parametrize("start_method", ["spawn", "fork"])
def test_concurrent_processes_write_whole_records(tmp_path: Path, start_method: str) -> None:
    if start_method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"no {start_method} start method here")
    path = tmp_path / "audit.jsonl"
    ctx = multiprocessing.get_context(start_method)
    procs = [ctx.Process(target=_write_many, args=(str(path), f"p{k}", 40, 8000)) for k in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * 4
    _check_complete(path, {f"p{k}-{i}" for k in range(4) for i in range(40)})
