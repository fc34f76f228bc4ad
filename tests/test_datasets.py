"""Dataset loaders: UTKFace names, CSV manifests, plain folders, and the hash split."""

from __future__ import annotations

from pathlib import Path

import pytest

from genguard.learn.datasets import (
    Record,
    guess_format,
    iter_image_files,
    load_csv,
    load_dataset,
    load_folder,
    load_utkface,
    parse_utkface_name,
    split_of,
)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("23_1_2_20170116172624127.jpg.chip.jpg", (23, "female", "Asian")),
        ("1_0_0_20161219140623097.jpg.chip.jpg", (1, "male", "White")),
        ("61_1_20170109150557335.jpg.chip.jpg", (61, "female", None)),  # race missing: timestamp shifted left
        ("39_1_20170116174525125.jpg.chip.jpg", (39, "female", None)),
        ("24_0_1_x.jpg", (24, "male", "Black")),
        ("30_7_9_x.jpg", (30, None, None)),  # codes out of range
        ("45.jpg", None),  # no underscore: the age field is "45.jpg"
    ],
)
def test_parse_utkface_name(name: str, expected: tuple[int, str | None, str | None] | None) -> None:
    assert parse_utkface_name(name) == expected


@pytest.mark.parametrize("name", ["abc_0_0_x.jpg", "_0_0_x.jpg", "", "photo.png", "-5_0_0_x.jpg", "+7_0_0_x.jpg", " 8_0_0_x.jpg"])
def test_malformed_utkface_names_give_none(name: str) -> None:
    assert parse_utkface_name(name) is None


def _touch(folder: Path, *names: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        (folder / n).write_bytes(b"x")


def test_load_utkface_labels_minors_and_skips_malformed_names(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _touch(tmp_path, "5_0_1_a.jpg.chip.jpg", "17_1_2_b.jpg.chip.jpg", "18_0_0_c.jpg.chip.jpg", "x_0_0_d.jpg", "notes.txt")
    records = load_utkface(tmp_path)
    assert [(r.path.name[:2], r.minor, r.sexual, r.age) for r in records] == [
        ("17", 1, 0, 17), ("18", 0, 0, 18), ("5_", 1, 0, 5)
    ]
    assert records[0].groups == {"gender": "female", "race": "Asian"}
    assert "skipped 1" in caplog.text


def test_csv_manifest_with_blank_labels_and_groups(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text(
        "path,minor,sexual,age,source\n"
        "a.png,1,,7,web\n"
        "b.png,,0,,\n"
        "\n"
        f"{tmp_path / 'c.png'},yes,False, 12 ,gen\n"
    )
    records = load_csv(tmp_path / "m.csv")
    assert records == [
        Record(tmp_path / "a.png", minor=1, sexual=None, age=7, groups={"source": "web"}),
        Record(tmp_path / "b.png", minor=None, sexual=0, age=None, groups={}),
        Record(tmp_path / "c.png", minor=1, sexual=0, age=12, groups={"source": "gen"}),
    ]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ("a.png,0,\nb.png,maybe,\n", r"m\.csv:3: column 'minor'.*'maybe'"),
        ("a.png,0,\n\nb.png,,2\n", r"m\.csv:4: column 'sexual'.*'2'"),  # the file's line, past a blank one
        ('"a\nb.png",0,\nc.png,1,x\n', r"m\.csv:4: column 'sexual'"),  # a quoted newline
        ("a.png,0,0,,\n", r"m\.csv:2: .*one value per column"),
        (",0,0\n", r"m\.csv:2: a row needs a path"),
    ],
)
def test_csv_bad_values_name_the_file_line_and_column(tmp_path: Path, rows: str, message: str) -> None:
    (tmp_path / "m.csv").write_text("path,minor,sexual\n" + rows)
    with pytest.raises(ValueError, match=message):
        load_csv(tmp_path / "m.csv")


@pytest.mark.parametrize("age", ["-3", "seven", "7.5"])
def test_csv_bad_age_is_refused(tmp_path: Path, age: str) -> None:
    (tmp_path / "m.csv").write_text(f"path,age\na.png,{age}\n")
    with pytest.raises(ValueError, match=r"m\.csv:2: column 'age'"):
        load_csv(tmp_path / "m.csv")


def test_csv_without_path_column_is_refused(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text("file,minor\na.png,0\n")
    with pytest.raises(ValueError, match="'path' column"):
        load_csv(tmp_path / "m.csv")


def test_folder_with_assume(tmp_path: Path) -> None:
    _touch(tmp_path / "sub", "b.JPG", ".hidden.png")
    _touch(tmp_path, "a.png", "readme.md")
    records = load_dataset(tmp_path, format="folder", assume={"minor": 0, "sexual": 0})
    assert [(r.path.relative_to(tmp_path).as_posix(), r.minor, r.sexual) for r in records] == [
        ("a.png", 0, 0), ("sub/b.JPG", 0, 0)
    ]
    assert [r.minor for r in load_folder(tmp_path)] == [None, None]
    with pytest.raises(ValueError, match="assume"):
        load_dataset(tmp_path, format="folder", assume={"adult": 1})


def test_guess_format(tmp_path: Path) -> None:
    _touch(tmp_path / "utk", "20_0_0_a.jpg.chip.jpg", "3_1_2_b.jpg.chip.jpg")
    _touch(tmp_path / "plain", "cat.png", "2019_holiday.jpg")
    (tmp_path / "m.csv").write_text("path\n")
    assert guess_format(tmp_path / "utk") == "utkface"
    assert guess_format(tmp_path / "plain") == "folder"
    assert guess_format(tmp_path / "m.csv") == "csv"
    assert [r.age for r in load_dataset(tmp_path / "utk")] == [20, 3]


def test_limit_is_an_evenly_spaced_deterministic_subset(tmp_path: Path) -> None:
    _touch(tmp_path, *(f"{i:02d}.png" for i in range(10)))
    names = [r.path.name for r in load_folder(tmp_path, limit=3)]
    assert names == ["00.png", "03.png", "06.png"]
    assert names == [r.path.name for r in load_folder(tmp_path, limit=3)]
    assert len(load_folder(tmp_path, limit=50)) == 10


def test_iter_image_files_on_a_single_file(tmp_path: Path) -> None:
    _touch(tmp_path, "a.png")
    assert list(iter_image_files(tmp_path / "a.png")) == [tmp_path / "a.png"]


def test_split_is_deterministic_by_file_name() -> None:
    names = [f"{i}_0_0_{i * 7919}.jpg.chip.jpg" for i in range(2000)]
    splits = [split_of(n) for n in names]
    assert splits == [split_of(Path("/elsewhere") / n) for n in names]  # folder does not matter
    assert splits == [split_of(n) for n in reversed(names)][::-1]  # order does not matter
    assert 0.16 <= splits.count("val") / len(splits) <= 0.24
    assert 0.09 <= splits.count("calib") / len(splits) <= 0.15  # 15% of the non-val 80%
    assert {split_of(n, val_fraction=0.0, calib_fraction=0.0) for n in names} == {"train"}
    assert {split_of(n, val_fraction=1.0) for n in names} == {"val"}
    # Growing the calibration share only moves files from train to calib, never in or out of val.
    wider = [split_of(n, calib_fraction=0.3) for n in names]
    assert all((a == "val") == (b == "val") and not (a == "calib" and b == "train") for a, b in zip(splits, wider))
    assert [split_of(n, salt="other") for n in names] != splits
