"""The command line against a hostile folder (issue 14): closed pipes, FIFOs, file names, stdin, bad files.

A closed pipe must not turn a block into exit 0; a FIFO named ``x.png`` must not
hang; a file name must not forge a line of output; stdin is read no further than
``max_bytes + 1``; ``hash`` goes on past bad files; errors never quote the input.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import EXAMPLES
from test_cli import _run, fast_cli  # noqa: F401 - the fixture is used by name

from genguard.cli import main
from genguard.cli._common import expand
from genguard.cli._output import Output, escape_label
from genguard.defences.blocklist import hash_image
from genguard.errors import ImageLoadError
from genguard.imageio.loader import load_image

FORGED = "f" * 64
NEWLINE_NAME = f"a.png\n{FORGED}  # forged.png"


def _module(*argv: str, stdin: bytes = b"", timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "genguard.cli", *argv], input=stdin, capture_output=True, timeout=timeout)


@pytest.fixture
def hostile(tmp_path: Path) -> Path:
    folder = tmp_path / "uploads"
    folder.mkdir()
    shutil.copy(EXAMPLES / "astronaut.png", folder / NEWLINE_NAME)
    shutil.copy(EXAMPLES / "coffee.jpg", folder / "z_good.jpg")
    (folder / "b_text.png").write_bytes(b"SECRET=hunter2 not an image\n")
    os.mkfifo(folder / "c_fifo.png")
    (tmp_path / "secret.txt").write_bytes(b"TOKEN=abc123\n")
    os.symlink(tmp_path / "secret.txt", folder / "d_link.png")
    return folder


def test_escape_label_keeps_every_name_on_one_line() -> None:
    undecodable = b"\xff\xfe.png".decode("utf-8", "surrogateescape")
    for name in (NEWLINE_NAME, "a\rb.png", "a\u2028b.png", "a\u202eb.png", "back\\slash.png", undecodable, "\x1b[31mred.png"):
        escaped = escape_label(name)
        assert escaped.isprintable() and "\n" not in escaped, repr(escaped)
        escaped.encode("utf-8")  # no lone surrogates left
    assert escape_label("plain name é.png") == "plain name é.png"
    assert escape_label(NEWLINE_NAME) == f"a.png\\n{FORGED}  # forged.png"


def test_hash_goes_on_past_bad_files_never_hangs_and_cannot_be_forged(
    hostile: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(capsys, "hash", str(hostile))  # the FIFO would block forever if it were opened for reading
    assert code == 1
    lines = out.splitlines()
    assert len(lines) == 2 and not any(line.startswith(FORGED) for line in lines)
    assert lines[0].startswith(hash_image(EXAMPLES / "astronaut.png")) and "\\n" + FORGED in lines[0]
    assert lines[1].startswith(hash_image(EXAMPLES / "coffee.jpg")) and lines[1].endswith("z_good.jpg")
    assert "FIFO" in err and "3 file(s) could not be hashed" in err
    assert "SECRET" not in err and "TOKEN" not in err and "hunter2" not in err


def test_classify_table_and_json_escape_names_and_fifo_gets_an_error_verdict(
    fast_cli: list[Any], hostile: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(capsys, "classify", "--quiet", str(hostile))
    rows = out.splitlines()[1:]
    assert code == 1 and len(rows) == 5  # the three bad files are blocked (fail closed)
    assert not any(r.startswith(FORGED) for r in rows)
    fifo = next(r for r in rows if "c_fifo.png" in r)
    assert fifo.startswith("block") and "FIFO" in fifo
    assert "SECRET" not in out and "TOKEN" not in out
    code, out, _ = _run(capsys, "classify", "--json", "--quiet", str(hostile))
    records = [json.loads(line) for line in out.splitlines()]
    assert len(records) == 5 and NEWLINE_NAME in {Path(r["path"]).name for r in records}
    unread = [r for r in records if r["error"]]
    assert len(unread) == 3 and all(r["scores"] == {"minor": None, "sexual": None} and r["decision"] == "block" for r in unread)


def test_fifo_and_other_special_files_are_refused_by_the_loader(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "x.png")
    with pytest.raises(ImageLoadError, match="FIFO"):
        load_image(tmp_path / "x.png")
    with pytest.raises(ImageLoadError, match="directory"):
        load_image(tmp_path)
    if os.path.exists("/dev/zero"):
        with pytest.raises(ImageLoadError, match="not a regular file"):
            load_image("/dev/zero")


def test_errors_never_quote_the_input() -> None:
    for data in (b"SECRET=hunter2 and more", b"II*\x00SECRET=hunter2", b"\x89PNG\r\n\x1a\nSECRET=hunter2"):
        with pytest.raises(ImageLoadError) as info:
            load_image(data)
        assert "SECRET" not in str(info.value) and "hunter2" not in str(info.value)


class _EndlessStdin:
    """A stdin that never ends, counting what is read from it."""

    def __init__(self) -> None:
        self.read_bytes = 0
        self.buffer = self

    def read(self, n: int = -1) -> bytes:
        assert n is not None and n >= 0, "stdin must never be read to the end"
        self.read_bytes += n
        return b"\x00" * n


def test_stdin_is_read_at_most_max_bytes_plus_one(monkeypatch: pytest.MonkeyPatch) -> None:
    stdin = _EndlessStdin()
    monkeypatch.setattr(sys, "stdin", stdin)
    ((label, data),) = list(expand(["-"], max_bytes=5_000_000))
    assert label == "-" and len(data) == 5_000_001 and stdin.read_bytes == 5_000_001


def test_output_after_a_closed_pipe_is_dropped_not_raised() -> None:
    class Closed(io.StringIO):
        def write(self, text: str) -> int:
            raise BrokenPipeError

    out = Output(Closed())
    out.line("first")
    out.line("second")
    out.flush()
    assert out.broken


def test_blocked_image_exits_1_even_when_the_reader_closes_the_pipe(
    fast_cli: list[Any], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    listed = tmp_path / "list.txt"
    listed.write_text(hash_image(EXAMPLES / "astronaut.png") + "\n")

    class Closed(io.StringIO):
        def write(self, text: str) -> int:
            raise BrokenPipeError

    monkeypatch.setattr(sys, "stdout", Closed())
    code = main(["classify", "--quiet", "--blocklist", str(listed), str(EXAMPLES / "coffee.jpg"), str(EXAMPLES / "astronaut.png")])
    assert code == 1  # the block comes after the pipe closed, and is still reported


@pytest.mark.slow
def test_pipefail_reports_the_block_in_a_real_shell(tmp_path: Path) -> None:
    """Acceptance: ``set -o pipefail; genguard classify --blocklist L img | true`` exits 1."""
    listed = tmp_path / "list.txt"
    listed.write_text(hash_image(EXAMPLES / "astronaut.png") + "\n")
    cmd = (f"set -o pipefail; {sys.executable} -m genguard.cli classify --quiet --blocklist {listed} "
           f"{EXAMPLES / 'astronaut.png'} | true")
    run = subprocess.run(["bash", "-c", cmd], capture_output=True, timeout=300)
    assert run.returncode == 1, run.stderr.decode()
    assert b"Traceback" not in run.stderr and b"BrokenPipeError" not in run.stderr


def test_fifo_does_not_hang_a_real_process(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "x.png")
    run = _module("hash", str(tmp_path), timeout=60)  # subprocess.TimeoutExpired would fail the test
    assert run.returncode == 1 and b"FIFO" in run.stderr


def test_array_input_is_not_a_path() -> None:
    assert load_image(np.zeros((2, 2, 3), np.uint8)).size == (2, 2)
