"""The `genguard classify` command: output formats, stdin, exit codes and error reporting.

In-process runs reuse the session's bundled models (the CLI's Guard is built
from them), so they are fast; one subprocess run checks the real command.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLES

import genguard.guard
from genguard.cli import main

EXAMPLE_FILES = sorted(p for p in EXAMPLES.iterdir() if p.suffix in (".png", ".jpg"))
KEYS = {"path", "decision", "blocked", "scores", "reasons", "error"}


@pytest.fixture
def fast_cli(monkeypatch: pytest.MonkeyPatch, guard: Any) -> list[Any]:
    """Make the CLI build its bundled Guard from the already loaded models; returns the Guards it built."""
    real = genguard.guard.Guard
    built: list[Any] = []

    def make(backbone: str = "bundled", **kw: Any) -> Any:
        if backbone != "bundled" or kw.get("head") is not None:
            return real(backbone, **kw)
        kw.pop("head")
        kw.pop("threads", None)
        g = real(embedder=guard.embedder, head=guard.head, **kw)
        built.append(g)
        return g

    monkeypatch.setattr(genguard.guard, "Guard", make)
    return built


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _json_lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_classify_folder_as_json(fast_cli: list[Any], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "classify", "--json", "--quiet", str(EXAMPLES))
    records = _json_lines(out)
    assert code == 0, err
    assert [r["path"] for r in records] == [str(p) for p in EXAMPLE_FILES]
    for r in records:
        assert set(r) >= KEYS
        assert set(r["scores"]) == {"minor", "sexual"}
        assert r["decision"] == "allow" and r["blocked"] is False and r["error"] is None
        assert all(isinstance(x["code"], str) for x in r["reasons"])
    astronaut = next(r for r in records if r["path"].endswith("astronaut.png"))
    assert [x["code"] for x in astronaut["reasons"]] == ["face"]


def test_classify_files_as_a_table(fast_cli: list[Any], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "classify", "--quiet", *map(str, EXAMPLE_FILES[:2]))
    lines = out.splitlines()
    assert code == 0
    assert lines[0].split()[:3] == ["decision", "minor", "sexual"]
    assert len(lines) == 3
    assert all(line.startswith("allow") for line in lines[1:])
    assert str(EXAMPLE_FILES[0]) in lines[1]


def test_zero_thresholds_make_benign_examples_block_and_exit_1(
    fast_cli: list[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """Blocking injected through thresholds (the AND rule), never with sexual images."""
    code, out, _ = _run(capsys, "classify", "--json", "--quiet", "--minor-threshold", "0", "--sexual-threshold", "0",
                        str(EXAMPLES))
    records = _json_lines(out)
    assert code == 1
    assert len(records) == len(EXAMPLE_FILES) and all(r["blocked"] for r in records)
    assert all("both_high" in [x["code"] for x in r["reasons"]] for r in records)


def test_one_threshold_alone_does_not_block(fast_cli: list[Any], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "classify", "--json", "--quiet", "--minor-threshold", "0", str(EXAMPLES))
    assert code == 0
    assert not any(r["blocked"] for r in _json_lines(out))


def _stdin(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))


def test_dash_reads_image_bytes_from_stdin(
    fast_cli: list[Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _stdin(monkeypatch, (EXAMPLES / "astronaut.png").read_bytes())
    code, out, _ = _run(capsys, "classify", "--json", "-")
    (record,) = _json_lines(out)
    assert code == 0
    assert record["path"] == "-" and record["decision"] == "allow"
    assert [x["code"] for x in record["reasons"]] == ["face"]


@pytest.mark.parametrize(("on_error", "exit_code"), [("block", 1), ("allow", 0)])
def test_unreadable_stdin_follows_on_error(
    fast_cli: list[Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    on_error: str, exit_code: int
) -> None:
    _stdin(monkeypatch, b"definitely not an image")
    code, out, _ = _run(capsys, "classify", "--json", "--on-error", on_error, "-")
    (record,) = _json_lines(out)
    assert code == exit_code
    assert record["decision"] == on_error and record["error"]


@pytest.mark.parametrize(
    "argv",
    [
        ("classify", "no/such/file.png"),
        ("classify", "--bogus", "x.png"),
        ("classify", "--on-error", "maybe", "x.png"),
        ("classify",),
        ("frobnicate",),
        (),
    ],
)
def test_usage_errors_exit_2_without_loading_models(
    fast_cli: list[Any], capsys: pytest.CaptureFixture[str], argv: tuple[str, ...]
) -> None:
    code, out, err = _run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert "Traceback" not in err and err.strip()
    assert fast_cli == []


def test_missing_path_is_named_in_one_line(fast_cli: list[Any], capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "classify", str(EXAMPLES), "no/such/file.png")
    assert code == 2
    assert err.strip() == "genguard: error: no such file or folder: no/such/file.png"


def test_errors_are_one_line_and_debug_raises(fast_cli: list[Any], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "classify", "--backbone", "resnet", str(EXAMPLES))
    assert code == 2
    assert err.strip().startswith("genguard: error: unknown backbone 'resnet'") and len(err.strip().splitlines()) == 1
    from genguard import UnknownBackboneError

    with pytest.raises(UnknownBackboneError):
        main(["--debug", "classify", "--backbone", "resnet", str(EXAMPLES)])


def test_bad_threshold_is_one_line(fast_cli: list[Any], capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "classify", "--minor-threshold", "2", str(EXAMPLE_FILES[0]))
    assert code == 2
    assert "minor_threshold" in err and len(err.strip().splitlines()) == 1


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from genguard import __version__

    code, out, _ = _run(capsys, "--version")
    assert code == 0 and out.strip() == f"genguard {__version__}"


def _cli(*argv: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    """Run the installed ``genguard`` script (the README's command), or the module where it is not installed."""
    script = Path(sys.executable).with_name("genguard")
    cmd = [str(script)] if script.is_file() else [sys.executable, "-m", "genguard.cli"]
    return subprocess.run([*cmd, *argv], input=stdin, capture_output=True, timeout=300)


@pytest.mark.slow
def test_debug_shows_a_traceback_in_a_real_process() -> None:
    plain = _cli("classify", "--backbone", "resnet", str(EXAMPLES))
    debug = _cli("--debug", "classify", "--backbone", "resnet", str(EXAMPLES))
    assert plain.returncode == 2 and b"Traceback" not in plain.stderr
    assert len(plain.stderr.strip().splitlines()) == 1
    assert debug.returncode != 0 and b"Traceback" in debug.stderr and b"UnknownBackboneError" in debug.stderr


@pytest.mark.slow
def test_real_command_classifies_examples(tmp_path: Path) -> None:
    """The README's main command, in a fresh process with the real models."""
    run = _cli("classify", str(EXAMPLES))
    lines = run.stdout.decode().splitlines()
    assert run.returncode == 0, run.stderr.decode()
    assert len(lines) == 1 + len(EXAMPLE_FILES)
    assert all(line.split()[0] == "allow" for line in lines[1:])
