"""genguard scan on Ray: the Ray engine gives the local engine's rows, on a local cluster bound to 127.0.0.1.

Two checks: 300 files (images, a WebDataset shard and a Parquet manifest, with
bad inputs) through the painted stub backbone, which is cheap; and a few small
real photos through the real bundled Guard, which takes one model load per
actor. Row equality is exact, scores to the bit.
"""

from __future__ import annotations

import os
import sys
import tarfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from genguard.scan import scan
from test_scan import StubFactory, painted_png, read_rows, write_images, write_wds

import ray  # noqa: E402  (the test extra installs genguard[ray])

TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def ray_cluster() -> Any:
    """A local Ray cluster on loopback, two CPUs for actors and one for reading; workers import the tests."""
    paths = os.pathsep.join([str(TESTS), *[p for p in sys.path if p]])
    ray.init(num_cpus=3, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": paths}})
    yield ray
    ray.shutdown()


def _rows(out: Path) -> list[tuple[Any, ...]]:
    return sorted((tuple(sorted(r.items())) for r in read_rows(out)), key=repr)


@pytest.mark.slow  # a local Ray cluster and two actors: about a minute on 2 cores
def test_engines_agree_on_300_files(tmp_path: Path, ray_cluster: Any) -> None:
    """Local and Ray rows are identical, although a Ray actor dies halfway (its work is redone)."""
    paths = write_images(tmp_path / "imgs", 200, corrupt=(7, 150))
    paths[100].write_bytes(painted_png(0.1, 0.1, 99))  # with a crash marker, the stub's process dies on first sight of it
    write_wds(tmp_path / "00000.tar", 60, corrupt=11)
    table = pa.table({"image": [painted_png(0.9, 0.9, 12) for _ in range(39)] + [b"junk"], "key": [f"p{i}" for i in range(40)]})
    pq.write_table(table, tmp_path / "m.parquet", row_group_size=16)
    tarfile.open(tmp_path / "00001.tar", "w").close()  # an empty shard: finished, with no rows
    sources = [str(tmp_path / "imgs"), str(tmp_path / "00000.tar"), str(tmp_path / "00001.tar"), str(tmp_path / "m.parquet")]
    local = scan(sources, tmp_path / "local", guard=StubFactory(), shard_size=64, id_column="key")
    crashing = StubFactory(crash_marker=str(tmp_path / "crashed"))  # one actor dies mid-shard, as on an OOM kill
    remote = scan(sources, tmp_path / "ray", guard=crashing, shard_size=64, id_column="key", engine="ray", workers=2)
    assert (tmp_path / "crashed").exists()
    assert local["images"] == remote["images"] == 300
    assert local["errors"] == remote["errors"] == 4
    assert _rows(tmp_path / "local") == _rows(tmp_path / "ray")
    assert remote["run"]["engine"] == "ray" and remote["shards"]["failed"] == 0
    assert local["shards"]["finished"] == remote["shards"]["finished"] == local["shards"]["planned"]


@pytest.mark.slow
def test_engines_agree_with_the_real_guard(tmp_path: Path, ray_cluster: Any, benign_images: dict[str, Any]) -> None:
    from PIL import Image

    from genguard.scan import ScreeningSettings

    (tmp_path / "imgs").mkdir()
    for i in range(12):
        name = sorted(benign_images)[i % len(benign_images)]
        img = Image.fromarray(benign_images[name]).resize((160 + 16 * i, 128 + 8 * i))
        img.save(tmp_path / "imgs" / f"{name}-{i:02d}.jpg", quality=90)
    (tmp_path / "imgs" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really")
    settings = ScreeningSettings()  # both scores for every image (the default)
    local = scan([str(tmp_path / "imgs")], tmp_path / "local", guard=settings, shard_size=8)
    remote = scan([str(tmp_path / "imgs")], tmp_path / "ray", guard=settings, shard_size=8, engine="ray", workers=2)
    assert local["images"] == remote["images"] == 13 and local["errors"] == 1
    assert _rows(tmp_path / "local") == _rows(tmp_path / "ray")
    assert any(r["minor"] is not None for r in read_rows(tmp_path / "ray"))  # both scores: the face stage ran
