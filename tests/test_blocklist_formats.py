"""Hash-list formats: what python-threatexchange, Meta's PDQ hashers and CSV exports write; named banks; empty lists.

Formats as documented in facebook/ThreatExchange: ``SIGNAL_TYPE SIGNAL`` lines
(python-threatexchange ``hash`` output, read by its local-file exchange),
``hash,quality,filename`` (``pdq-photo-hasher``), and CSV with ``signal_type``
and ``signal_value`` (or ``signal_str``) columns. Benign images only.
"""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from genguard.cli import main
from genguard.defences.blocklist import Banks, Blocklist, format_line, hash_image, read_list
from genguard.errors import BlocklistError

A, B = "0f" * 32, "a0" * 32


@pytest.mark.parametrize("module", ["formats", "bank", "banks", "hashing"])
def test_docstring_examples_run(module: str) -> None:
    mod = importlib.import_module(f"genguard.defences.blocklist.{module}")
    assert doctest.testmod(mod, raise_on_error=False).failed == 0


@pytest.mark.parametrize(
    ("text", "fmt", "labels"),
    [
        pytest.param(f"# list\n{A}\n{B}  # case 7\n", "plain", {"case 7"}, id="plain"),
        pytest.param(f"pdq {A}\nvideo_md5 d41d8cd98f00b204e9800998ecf8427e\npdq {B}\n", "threatexchange", set(), id="threatexchange"),
        pytest.param(f"{A},100,/data/a.jpg\n{B},87,/data/b, with comma.png\n", "pdq-hasher", {"/data/a.jpg", "/data/b, with comma.png"}, id="pdq-hasher"),
        pytest.param(f"signal_type,signal_value,category,tags\npdq,{A},POSITIVE_CLASS,t1 t2\nurl,https://example.org,,\npdq,{B},,\n",
                     "csv", {"category=POSITIVE_CLASS; tags=t1 t2"}, id="csv"),
        pytest.param(f"collab,signal_type,signal_str,category,tags\nSample,pdq,{A},POSITIVE_CLASS,\nSample,pdq,{B},,\n",
                     "csv", {"collab=Sample; category=POSITIVE_CLASS", "collab=Sample"}, id="threatexchange-dataset-csv"),
    ],
)
@pytest.mark.parametrize("bom", [False, True])
def test_each_format_is_read_with_or_without_a_bom(tmp_path: Path, text: str, fmt: str, labels: set[str], bom: bool) -> None:
    p = tmp_path / "list.txt"
    p.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.replace("\n", "\r\n" if bom else "\n").encode())
    listed = read_list(p)
    assert listed.format == fmt and len(listed.words) == 2
    assert set(listed.labels.values()) == labels
    bl = Blocklist.from_file(p)
    assert A in bl and B in bl and len(bl) == 2


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (f"pdq {A}\npdq {A[:-1]}\n", "list.txt:2: expected 'pdq '"),
        (f"{A},100,a.jpg\n{A},high,b.jpg\n", "list.txt:2: expected hash,quality,path"),
        (f"signal_type,signal_value\npdq,{A}\npdq,nothex\n", "list.txt:3: expected a 64-digit hex PDQ hash in signal_value"),
        ("signal_type,value\npdq,x\n", "needs signal_type and signal_value"),
        (f"{A}\n{A} trailing words\n", "list.txt:2: expected a 64-digit hex PDQ hash"),
    ],
)
def test_a_bad_line_is_named(tmp_path: Path, text: str, where: str) -> None:
    p = tmp_path / "list.txt"
    p.write_text(text)
    with pytest.raises(BlocklistError, match=where):
        Blocklist.from_file(p)


@pytest.mark.parametrize("text", ["", "# only comments\n\n", "video_md5 d41d8cd98f00b204e9800998ecf8427e\n", "signal_type,signal_value\n"])
def test_an_empty_list_is_an_error_unless_allowed(tmp_path: Path, text: str) -> None:
    p = tmp_path / "empty.txt"
    p.write_text(text)
    with pytest.raises(BlocklistError, match="holds no PDQ hashes.*allow_empty"):
        Blocklist.from_file(p)
    assert len(Blocklist.from_file(p, allow_empty=True)) == 0
    with pytest.raises(BlocklistError, match="holds no PDQ hashes"):
        Blocklist([])
    assert Blocklist([], allow_empty=True).match_frames([A]) is None


def test_large_bare_lists_take_the_vectorised_path_and_agree(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    hashes = [rng.integers(0, 256, 32, dtype=np.uint8).tobytes().hex() for _ in range(3000)]
    p = tmp_path / "big.txt"
    p.write_text("# header\n" + "\n".join(h.upper() if i % 7 == 0 else h for i, h in enumerate(hashes)) + "\n")
    bl = Blocklist.from_file(p)
    assert len(bl) == 3000 and all(h in bl for h in hashes[::97])
    p.write_text("\n".join(hashes[:10]) + "\nzz" + hashes[10][2:] + "\n")
    with pytest.raises(BlocklistError, match="big.txt:11"):
        Blocklist.from_file(p)


@pytest.mark.parametrize("fmt", ["plain", "threatexchange", "pdq-hasher", "csv"])
def test_genguard_hash_writes_each_format_and_it_reads_back(tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    from skimage import data

    for name in ("coffee", "rocket"):
        Image.fromarray(getattr(data, name)()).save(tmp_path / f"{name}.png")
    assert main(["hash", "--format", fmt, str(tmp_path)]) == 0
    listing = tmp_path / "listing.txt"
    listing.write_text(capsys.readouterr().out)
    listed = read_list(listing)
    assert listed.format == fmt and len(listed.words) == 2
    bl = Blocklist.from_file(listing)
    assert hash_image(tmp_path / "coffee.png") in bl and hash_image(tmp_path / "rocket.png") in bl
    if fmt != "threatexchange":  # the only format without room for a label
        assert any("coffee.png" in label for label in listed.labels.values())


def test_format_line_quotes_csv_fields() -> None:
    assert format_line("csv", A, 90, 'odd, "name".png') == f'pdq,{A},90,"odd, ""name"".png"'


def test_banks_name_the_bank_and_label_and_block_outranks_review() -> None:
    from skimage import data

    coffee = hash_image(data.coffee())
    review = Blocklist([coffee], name="internal", action="review", labels=["ticket-9"])
    block = Blocklist([coffee], name="shared", action="block", max_distance=10, labels=["collab=X"])
    banks = Banks([review, block])
    hashes = banks.hash_frames([data.coffee()])
    m = banks.match_frames(hashes)
    assert m is not None and (m["bank"], m["action"], m["label"]) == ("shared", "block", "collab=X")
    only_review = Banks([review]).match_frames(hashes)
    assert only_review is not None and only_review["action"] == "review" and only_review["label"] == "ticket-9"
    with pytest.raises(ValueError, match="distinct"):
        Banks([review, review])
    with pytest.raises(ValueError, match="action"):
        Blocklist([coffee], action="allow")  # type: ignore[arg-type]


def test_classify_builds_one_bank_per_list(tmp_path: Path) -> None:
    import argparse

    from genguard.cli.classify import _blocklist

    (tmp_path / "shared.csv").write_text(f"signal_type,signal_value\npdq,{A}\n")
    (tmp_path / "internal.txt").write_text(f"{B}\n")
    (tmp_path / "empty.txt").write_text("# nothing yet\n")
    args = argparse.Namespace(blocklist=[str(tmp_path / "shared.csv")], review_list=[str(tmp_path / "internal.txt")],
                              blocklist_format="auto", allow_empty_blocklist=False, max_distance=20, banks=None)
    banks = _blocklist(args)
    assert isinstance(banks, Banks)
    assert [(b.name, b.action, b.max_distance) for b in banks.banks] == [("shared", "block", 20), ("internal", "review", 20)]
    args.review_list.append(str(tmp_path / "empty.txt"))
    with pytest.raises(BlocklistError, match="empty"):
        _blocklist(args)
    args.allow_empty_blocklist = True
    assert len(_blocklist(args).banks) == 3


def test_bank_configuration_sets_each_bank(tmp_path: Path) -> None:
    import json

    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "shared.csv").write_text(f"signal_type,signal_value\npdq,{A}\n")
    (tmp_path / "lists" / "internal.txt").write_text(f"{B}\n")
    config = tmp_path / "lists" / "banks.json"
    config.write_text(json.dumps([{"path": "shared.csv", "name": "ncmec"},
                                  {"path": "internal.txt", "action": "review", "max_distance": 12, "min_quality": 70}]))
    banks = Banks.from_config(config)
    assert [(b.name, b.action, b.max_distance, b.min_quality) for b in banks.banks] == [
        ("ncmec", "block", 31, 50), ("internal", "review", 12, 70)]
    config.write_text(json.dumps([{"path": "shared.csv", "distance": 3}]))
    with pytest.raises(BlocklistError, match="only the keys"):
        Banks.from_config(config)
