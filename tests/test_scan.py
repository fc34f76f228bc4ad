"""genguard scan: sources, the local engine, output rows, resume, retries, WebDataset damage, the CLI.

Scores are injected with the painted stub backbone (conftest's ScoreEmbedder):
no test here needs the real models except the CLI smoke test, and no image is
anything but a flat benign square.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from conftest import ScoreEmbedder, ScoreHead, painted
from genguard.policy import Policy
from genguard.scan import scan
from genguard.scan.sources import ScanSourceError, iter_records, plan_shards

POLICY = {"minor_threshold": 0.5, "sexual_threshold": 0.8, "review_minor": 0.25, "review_sexual": 0.4}
TESTS = Path(__file__).resolve().parent


class _SlowEmbedder(ScoreEmbedder):
    """The painted stub, optionally slow (so a scan can be killed halfway) or crashing its process once."""

    def __init__(self, delay: float, crash_marker: str | None) -> None:
        super().__init__()
        self.delay, self.crash_marker = delay, crash_marker

    def embed(self, frames: Any, **kw: Any) -> Any:
        if self.crash_marker and any(int(f[0, 0, 2]) == 99 for f in frames) and not os.path.exists(self.crash_marker):
            Path(self.crash_marker).touch()
            os._exit(3)  # the worker process dies, as on an OOM kill
        time.sleep(self.delay * len(frames))
        return super().embed(frames)


@dataclass(frozen=True)
class StubFactory:
    """Builds a Guard over the painted stub in each worker (picklable: travels to processes and Ray actors)."""

    delay: float = 0.0
    crash_marker: str | None = None
    batch_size: int = 8

    def build(self) -> Any:
        from genguard import Guard
        from genguard.serving.screening import Screening

        return Screening(Guard(embedder=_SlowEmbedder(self.delay, self.crash_marker), head=ScoreHead(POLICY),
                               hash_frames=True, batch_size=self.batch_size))

    def policy(self) -> Policy:
        return Policy(**POLICY)


def painted_png(minor: float, sexual: float, age: int = 0, size: int = 16) -> bytes:
    buf = io.BytesIO()
    img = painted(minor, sexual, age, size)
    img[1:, 1:] = (size * 7) % 256  # a little texture so PDQ has something to hash
    Image.fromarray(img).save(buf, "PNG")
    return buf.getvalue()


SCORES = [(0.1, 0.1, 0), (0.9, 0.9, 10), (0.3, 0.5, 30), (0.0, 0.95, 40)]  # allow, block, review, allow
DECISIONS = ["allow", "block", "review", "allow"]


def write_images(folder: Path, n: int, *, corrupt: tuple[int, ...] = ()) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"{i:05d}.png"
        p.write_bytes(b"\x89PNG broken" if i in corrupt else painted_png(*SCORES[i % 4], size=16 + i % 5))
        paths.append(p)
    return paths


def read_rows(out: Path) -> list[dict[str, Any]]:
    return pq.read_table(sorted((out / "shards").glob("*.parquet"))).to_pylist()


# ------------------------------------------------------------------- sources
@pytest.mark.parametrize("name", ["genguard.scan.sources", "genguard.scan.output"])
def test_docstring_examples(name: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


def test_plan_folder_glob_and_manifests(tmp_path: Path) -> None:
    paths = write_images(tmp_path / "imgs", 5)
    assert [s.size for s in plan_shards([str(tmp_path / "imgs")], shard_size=2)] == [2, 2, 1]
    assert sum(s.size or 0 for s in plan_shards([str(tmp_path / "imgs" / "*.png")], shard_size=10)) == 5
    with open(tmp_path / "m.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "key"])
        w.writerows([[p.name, f"k{i}"] for i, p in enumerate(paths)] + [["missing.png", "k9"]])
    (tmp_path / "m.csv").rename(tmp_path / "imgs" / "m.csv")
    shards = plan_shards([str(tmp_path / "imgs" / "m.csv")], shard_size=4, id_column="key")
    recs = [r for s in shards for r in iter_records(s, max_bytes=1 << 20)]
    assert [r.id for r in recs] == ["k0", "k1", "k2", "k3", "k4", "k9"]  # relative paths: beside the manifest
    assert recs[0].data == paths[0].read_bytes() and "No such file" in (recs[-1].error or "")
    table = pa.table({"jpg": [p.read_bytes() for p in paths], "key": [f"b{i}" for i in range(5)]})
    pq.write_table(table, tmp_path / "m.parquet", row_group_size=2)
    shards = plan_shards([str(tmp_path / "m.parquet")], shard_size=3, id_column="key")
    assert [(r.id, r.data) for s in shards for r in iter_records(s, max_bytes=1 << 20)] == list(zip(table["key"].to_pylist(), table["jpg"].to_pylist()))
    with pytest.raises(ScanSourceError, match="no column 'nope'"):
        plan_shards([str(tmp_path / "m.parquet")], image_column="nope")
    with pytest.raises(ScanSourceError, match="no such file"):
        plan_shards([str(tmp_path / "absent")])


def test_oversized_file_is_an_error_record_not_read(tmp_path: Path) -> None:
    (tmp_path / "big.png").write_bytes(b"\0" * 5000)
    (shard,) = plan_shards([str(tmp_path)])
    (rec,) = iter_records(shard, max_bytes=4096)
    assert rec.data is None and "over the limit of 4096" in (rec.error or "")


# ---------------------------------------------------------------- local scan
def test_local_scan_rows_summary_and_fail_closed_errors(tmp_path: Path) -> None:
    write_images(tmp_path / "imgs", 12, corrupt=(6,))
    out = tmp_path / "out"
    summary = scan([str(tmp_path / "imgs")], out, guard=StubFactory(), shard_size=5)
    rows = {Path(r["id"]).name: r for r in read_rows(out)}
    assert len(rows) == 12 and summary["images"] == 12 and summary["errors"] == 1
    bad = rows["00006.png"]  # a "review" image, had it been readable
    assert bad["decision"] == "block" and bad["error"] and bad["pdq"] is None  # fail closed
    for i in (0, 1, 2, 3, 9):
        r = rows[f"{i:05d}.png"]
        assert r["decision"] == DECISIONS[i % 4] and r["error"] is None
        assert r["sha256"] == __import__("hashlib").sha256((tmp_path / "imgs" / f"{i:05d}.png").read_bytes()).hexdigest()
        assert len(r["pdq"]) == 64 and r["backbone"] == "stub" and r["head"] and r["genguard_version"]
        assert isinstance(json.loads(r["reasons"]), list)
    assert rows["00001.png"]["minor"] == 0.9 and rows["00001.png"]["sexual"] == 0.9
    assert summary["decisions"] == {"allow": 6, "block": 4, "review": 2}  # the corrupt image counts as block
    assert summary["shards"] == {"planned": 3, "finished": 3, "failed": 0}
    assert json.loads((out / "summary.json").read_text())["images"] == 12
    assert (out / "score_histograms.png").exists()
    again = scan([str(tmp_path / "imgs")], out, guard=StubFactory(), shard_size=5)  # nothing left to do
    assert again["run"]["images_scanned"] == 0 and again["run"]["shards_skipped"] == 3 and len(read_rows(out)) == 12


def test_failed_shard_is_retried_then_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import genguard.scan.local as local

    write_images(tmp_path / "imgs", 6)
    real = local.iter_records
    calls: dict[str, int] = {}

    def flaky(shard: Any, **kw: Any) -> Any:
        calls[shard.name] = calls.get(shard.name, 0) + 1
        first = shard.paths[0].endswith("00000.png")
        if (first and calls[shard.name] == 1) or shard.paths[0].endswith("00004.png"):
            raise OSError("disk went away")  # shard 1: once; shard 3: always
        return real(shard, **kw)

    monkeypatch.setattr(local, "iter_records", flaky)
    summary = scan([str(tmp_path / "imgs")], tmp_path / "out", guard=StubFactory(), shard_size=2, retries=2)
    assert summary["shards"] == {"planned": 3, "finished": 2, "failed": 1}
    assert [f["error"] for f in summary["failed_shards"]] == ["OSError: disk went away"]
    assert sorted(calls.values()) == [1, 2, 3]
    assert len(read_rows(tmp_path / "out")) == 4


@pytest.mark.slow  # two spawned worker processes, twice
def test_process_pool_retries_the_shard_of_a_crashed_worker(tmp_path: Path) -> None:
    paths = write_images(tmp_path / "imgs", 8)
    paths[6].write_bytes(painted_png(0.1, 0.1, 99))  # the stub's process dies the first time it sees age 99
    factory = StubFactory(crash_marker=str(tmp_path / "crashed"))
    summary = scan([str(tmp_path / "imgs")], tmp_path / "out", guard=factory, shard_size=2, workers=2)
    assert (tmp_path / "crashed").exists() and summary["run"]["attempts"] == 2
    assert summary["shards"]["failed"] == 0
    assert sorted(Path(r["id"]).name for r in read_rows(tmp_path / "out")) == [p.name for p in paths]


def test_blocklist_and_audit_log_work_as_in_classify(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ScreeningSettings wires --blocklist and --audit-log into each worker's Screening (stub backbone in place of the models)."""
    import genguard.guard as guard_module
    from genguard.cli import main
    from genguard.defences.audit import AuditLog
    from genguard.defences.blocklist import hash_image
    from genguard.scan import ScreeningSettings
    from skimage import data

    real = guard_module.Guard

    def stub_guard(backbone: str = "bundled", *, head: Any = None, device: str = "cpu", **kw: Any) -> Any:
        return real(embedder=ScoreEmbedder(), head=ScoreHead(POLICY), **kw)

    monkeypatch.setattr(guard_module, "Guard", stub_guard)
    monkeypatch.setattr(ScreeningSettings, "policy", lambda self: Policy(**POLICY))
    paths = write_images(tmp_path / "imgs", 3)
    photo = np.array(Image.fromarray(data.coffee()).resize((96, 64)))
    photo[0, 0] = (10, 10, 0)  # scores 0.1 / 0.1: "allow" on scores alone
    Image.fromarray(photo).save(tmp_path / "imgs" / "listed.png")
    (tmp_path / "hashes.txt").write_text(f"# known image\n{hash_image(tmp_path / 'imgs' / 'listed.png')}\n")
    audit = tmp_path / "audit.jsonl"
    code = main(["scan", str(tmp_path / "imgs"), "--out", str(tmp_path / "out"), "--blocklist", str(tmp_path / "hashes.txt"),
                 "--audit-log", str(audit), "--quiet"])
    assert code == 1
    rows = {Path(r["id"]).name: r for r in read_rows(tmp_path / "out")}
    assert rows["listed.png"]["decision"] == "block" and "hash_match" in rows["listed.png"]["reasons"]
    assert [rows[p.name]["decision"] for p in paths] == DECISIONS[:3]
    records = list(AuditLog(audit).records())
    assert sorted(r["source"] for r in records) == sorted(r["source"] for r in rows.values())
    assert {r["source"]: r["sha256"] for r in records} == {r["source"]: r["sha256"] for r in rows.values()}


# ------------------------------------------------------------------- resume
def test_scan_killed_halfway_and_rerun_writes_every_row_once(tmp_path: Path) -> None:
    paths = write_images(tmp_path / "imgs", 300)
    out = tmp_path / "out"
    code = ("import sys; from test_scan import StubFactory; from genguard.scan import scan; "
            "scan([sys.argv[1]], sys.argv[2], guard=StubFactory(delay=0.01), shard_size=10)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), *sys.path])}
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "imgs"), str(out)], env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        done = (out / "done.jsonl").read_text().count("\n") if (out / "done.jsonl").exists() else 0
        if done >= 8:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the scan finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = (out / "done.jsonl").read_text().count("\n")
    assert 8 <= finished < 30
    summary = scan([str(tmp_path / "imgs")], out, guard=StubFactory(), shard_size=10)
    assert summary["run"]["shards_skipped"] == finished
    ids = [r["id"] for r in read_rows(out)]
    assert len(ids) == 300 and sorted(ids) == sorted(str(p) for p in paths)
    assert not list((out / "shards").glob(".*.tmp"))  # a kill mid-write leaves at most a temp file, and it is not read
    assert summary["images"] == 300


# --------------------------------------------------------------- WebDataset
def _add(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def write_wds(path: Path, n: int, *, corrupt: int | None = None) -> None:
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tf:
        for i in range(n):
            key = f"{i:09d}"
            data = painted_png(*SCORES[i % 4])
            _add(tf, f"{key}.png", data[:40] if i == corrupt else data)
            _add(tf, f"{key}.json", json.dumps({"key": key, "caption": "a flat square"}).encode())
            _add(tf, f"{key}.txt", b"a flat square")


def test_webdataset_corrupt_member_gives_one_error_row(tmp_path: Path) -> None:
    write_wds(tmp_path / "00000.tar", 10, corrupt=3)
    summary = scan([str(tmp_path / "00000.tar")], tmp_path / "out", guard=StubFactory())
    rows = {r["id"]: r for r in read_rows(tmp_path / "out")}
    assert sorted(rows) == [f"{i:09d}" for i in range(10)]
    assert [k for k, r in rows.items() if r["error"]] == ["000000003"] and rows["000000003"]["decision"] == "block"
    assert all(rows[f"{i:09d}"]["decision"] == DECISIONS[i % 4] for i in range(10) if i != 3)
    assert summary["errors"] == 1


def test_webdataset_damaged_header_and_truncation(tmp_path: Path) -> None:
    write_wds(tmp_path / "a.tar", 6)
    raw = bytearray((tmp_path / "a.tar").read_bytes())
    with tarfile.open(tmp_path / "a.tar") as tf:
        member = next(m for m in tf if m.name == "000000002.png")
    raw[member.offset + 3] ^= 0xFF  # the header checksum no longer matches
    (tmp_path / "b.tar").write_bytes(raw)
    (tmp_path / "c.tar").write_bytes(raw[: len(raw) * 2 // 3])
    (b,) = plan_shards([str(tmp_path / "b.tar")])
    recs = list(iter_records(b, max_bytes=1 << 20))
    good = [r.id for r in recs if r.error is None]
    assert good == ["000000000", "000000001", "000000003", "000000004", "000000005"]
    assert any("damaged tar data" in (r.error or "") for r in recs)  # the damage is a row, not lost
    (c,) = plan_shards([str(tmp_path / "c.tar")])
    recs = list(iter_records(c, max_bytes=1 << 20))
    assert [r.id for r in recs if r.error is None][:2] == ["000000000", "000000001"]
    assert recs[-1].error is not None  # the cut-off end of the shard is reported


# ---------------------------------------------------------------------- CLI
def test_cli_scan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import genguard.scan.worker as worker
    from genguard.cli import main

    write_images(tmp_path / "imgs", 6, corrupt=(2,))
    monkeypatch.setattr(worker.ScreeningSettings, "build", lambda self: StubFactory().build())
    monkeypatch.setattr(worker.ScreeningSettings, "policy", lambda self: StubFactory().policy())
    code = main(["scan", str(tmp_path / "imgs"), "--out", str(tmp_path / "out"), "--quiet"])
    assert code == 1  # something is blocked: the unreadable image fails closed
    printed = json.loads(capsys.readouterr().out)
    assert printed["images"] == 6 and printed["errors"] == 1
    assert main(["scan", str(tmp_path / "missing"), "--out", str(tmp_path / "o2")]) == 2
