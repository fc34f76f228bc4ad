"""The scene set: deterministic, labelled from the pasted faces, and face recall counted per pasted face."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from genguard.learn.scenes import build_scenes, face_recall


@pytest.fixture()
def small_faces(utkface_dir: Path, tmp_path: Path) -> Path:
    """A folder of links to 40 UTKFace faces (20 minors, 20 adults), read in place."""
    out = tmp_path / "faces"
    out.mkdir()
    files = sorted(utkface_dir.iterdir())
    minors = [f for f in files if f.name.split("_")[0].isdigit() and int(f.name.split("_")[0]) < 18][:20]
    adults = [f for f in files if f.name.split("_")[0].isdigit() and 30 <= int(f.name.split("_")[0]) < 60][:20]
    for f in minors + adults:
        (out / f.name).symlink_to(f)
    return out


@pytest.mark.utkface
def test_scenes_are_deterministic_and_labelled(small_faces: Path, tmp_path: Path) -> None:
    a = build_scenes(small_faces, tmp_path / "a", n=6, seed=3, split="all")
    b = build_scenes(small_faces, tmp_path / "b", n=6, seed=3, split="all")
    assert a.read_text() == b.read_text()
    rows = list(csv.DictReader(a.open()))
    assert len(rows) == 6
    for row in rows:
        faces = json.loads(row["faces"])
        assert 1 <= len(faces) <= 4
        assert int(row["minor"]) == int(any(f["age"] < 18 for f in faces))
        assert all(48 <= f["px"] <= 256 for f in faces)
        assert (a.parent / row["path"]).read_bytes() == (b.parent / row["path"]).read_bytes()
    assert {int(r["minor"]) for r in rows} == {0, 1}


@pytest.mark.utkface
def test_hard_scenes_record_each_faces_kind_and_leave_plain_scenes_unchanged(small_faces: Path, tmp_path: Path) -> None:
    from PIL import Image

    from genguard.learn.scenes import HARD_KINDS

    plain = build_scenes(small_faces, tmp_path / "plain", n=10, seed=5, split="all")
    again = build_scenes(small_faces, tmp_path / "again", n=10, seed=5, split="all", hard=False)
    assert plain.read_text() == again.read_text()  # hard=False is the scene set as it was
    hard = build_scenes(small_faces, tmp_path / "hard", n=10, seed=5, split="all", hard=True)
    assert hard.read_text() == build_scenes(small_faces, tmp_path / "hard2", n=10, seed=5, split="all", hard=True).read_text()
    rows = list(csv.DictReader(hard.open()))
    kinds = [f["kind"] for r in rows for f in json.loads(r["faces"])]
    assert set(kinds) <= set(HARD_KINDS) and len(set(kinds)) >= 3
    for row in rows:
        faces = json.loads(row["faces"])
        size = Image.open(hard.parent / row["path"]).size
        if faces[0]["kind"] == "margin":  # a lone face in a smaller, loosely cropped frame
            assert len(faces) == 1 and 256 <= size[0] == size[1] <= 640
            assert 0.29 <= faces[0]["px"] / size[0] <= 0.46
        else:
            assert size == (1024, 1024)
        assert int(row["minor"]) == int(any(f["age"] < 18 for f in faces))


@pytest.mark.utkface
def test_face_recall_counts_hits_by_box_centre(small_faces: Path, tmp_path: Path) -> None:
    manifest = build_scenes(small_faces, tmp_path / "s", n=4, seed=0, split="all")
    rows = list(csv.DictReader(manifest.open()))
    truth = {r["path"]: [f["box"] for f in json.loads(r["faces"])] for r in rows}

    def perfect(path: Path) -> list[SimpleNamespace]:
        return [SimpleNamespace(faces=[SimpleNamespace(box=tuple(b)) for b in truth[path.name]])]

    def blind(path: Path) -> list[SimpleNamespace]:
        return [SimpleNamespace(faces=[])]

    assert face_recall(manifest, perfect)["face_recall"] == 1.0
    assert face_recall(manifest, blind)["face_recall"] == 0.0
    assert face_recall(manifest, perfect)["faces"] == sum(len(v) for v in truth.values())


@pytest.mark.slow
@pytest.mark.utkface
def test_bundled_backbone_finds_pasted_faces(small_faces: Path, tmp_path: Path, guard: object) -> None:
    manifest = build_scenes(small_faces, tmp_path / "s", n=6, seed=1, split="all")
    result = face_recall(manifest, guard.embed)  # type: ignore[attr-defined]
    assert result["face_recall"] >= 0.6
    shutil.rmtree(tmp_path / "s")
