"""The hostile-input corpus (tests/make_corpus.py) through the loader, Guard and the CLI.

Each file must be handled as its manifest says: unreadable ones give a verdict
with ``error`` set under the default fail-closed policy and a typed exception
under ``on_error="raise"``; valid unusual ones are allowed with no error; a batch
with broken files in the middle keeps every other verdict, in order.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from make_corpus import build_corpus, listed_picture

from genguard import Guard
from genguard.defences.blocklist import Blocklist, pdq_hash
from genguard.cli import main
from genguard.learn.datasets import IMAGE_SUFFIXES
from genguard.errors import GenguardError, ImageLoadError, ImageTooLargeError, UnsupportedFormatError
from genguard.imageio.loader import load_image

ERROR_OF = {"load": ImageLoadError, "too_large": ImageTooLargeError, "unsupported": UnsupportedFormatError}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict[str, Any]]]:
    folder = tmp_path_factory.mktemp("corpus")
    return folder, build_corpus(folder)


def _expected_error(expect: str, exc: GenguardError) -> bool:
    cls = ERROR_OF[expect]
    # exact class: a plain load error must not pass for a size refusal, nor the reverse
    return type(exc) is cls


def test_corpus_is_large_and_varied(corpus: tuple[Path, dict[str, dict[str, Any]]]) -> None:
    folder, manifest = corpus
    assert len(manifest) >= 40
    kinds = {e["expect"] for e in manifest.values()}
    assert kinds == {"ok", "load", "too_large", "unsupported", "either", "listed"}
    assert all((folder / name).is_file() for name in manifest)


def test_loader_handles_every_file(corpus: tuple[Path, dict[str, dict[str, Any]]]) -> None:
    folder, manifest = corpus
    wrong = []
    for name, entry in manifest.items():
        try:
            loaded = load_image(folder / name)
        except GenguardError as exc:
            if entry["expect"] in ("ok", "listed") or (entry["expect"] != "either" and not _expected_error(entry["expect"], exc)):
                wrong.append(f"{name}: {type(exc).__name__}: {exc}")
            continue
        if entry["expect"] not in ("ok", "either", "listed"):
            wrong.append(f"{name}: loaded, expected {entry['expect']}")
            continue
        if "size" in entry and list(loaded.size) != entry["size"]:
            wrong.append(f"{name}: size {loaded.size}, expected {entry['size']}")
        if "n_frames" in entry and (loaded.n_frames, len(loaded.frames)) != (entry["n_frames"], entry["frames"]):
            wrong.append(f"{name}: {loaded.n_frames} frames ({len(loaded.frames)} scored)")
    assert not wrong, "\n".join(wrong)


def test_stub_guard_fails_closed_and_raises_typed_errors(
    corpus: tuple[Path, dict[str, dict[str, Any]]], stub_guard: Callable[..., Guard]
) -> None:
    folder, manifest = corpus
    closed, raising = stub_guard(), stub_guard(on_error="raise")
    for name, entry in manifest.items():
        verdict = closed.classify(folder / name)
        if entry["expect"] in ("ok", "listed"):
            assert verdict.error is None, name
        elif entry["expect"] != "either":
            assert verdict.error and verdict.decision == "block", name
            assert verdict.reasons[0].code == "load_error" and verdict.frame is None
            with pytest.raises(ERROR_OF[entry["expect"]]) as info:
                raising.classify(folder / name)
            assert _expected_error(entry["expect"], info.value), name


def test_batch_with_broken_files_in_the_middle_keeps_order(
    corpus: tuple[Path, dict[str, dict[str, Any]]], stub_guard: Callable[..., Guard]
) -> None:
    folder, manifest = corpus
    guard = stub_guard(batch_size=4)
    names = sorted(manifest)
    good = [n for n in names if manifest[n]["expect"] in ("ok", "listed")]
    bad = [n for n in names if manifest[n]["expect"] in ERROR_OF]
    mixed = [x for pair in zip(good, bad) for x in pair]  # good, bad, good, bad, ...
    verdicts = guard.classify_batch([folder / n for n in mixed])
    assert len(verdicts) == len(mixed)
    for name, verdict in zip(mixed, verdicts):
        assert (verdict.error is None) == (manifest[name]["expect"] in ("ok", "listed")), name
        if verdict.error is None:
            assert verdict == guard.classify(folder / name), name


def test_batch_survives_an_embedder_failure_on_one_image(stub_guard: Callable[..., Guard]) -> None:
    guard = stub_guard(batch_size=8)
    real_embed = guard.embedder.embed

    def fragile(frames: list[np.ndarray]) -> Any:
        if any(f.shape[:2] == (5, 7) for f in frames):
            raise RuntimeError("model failed on this frame")
        return real_embed(frames)

    guard.embedder.embed = fragile  # type: ignore[method-assign]
    ok = np.zeros((16, 16, 3), np.uint8)
    verdicts = guard.classify_batch([ok, np.zeros((5, 7, 3), np.uint8), ok])
    assert [v.error is None for v in verdicts] == [True, False, True]
    assert verdicts[1].decision == "block" and "model failed" in (verdicts[1].error or "")
    guard.on_error = "raise"
    with pytest.raises(ImageLoadError, match="could not score") as info:
        guard.classify(np.zeros((5, 7, 3), np.uint8))
    assert isinstance(info.value.__cause__, RuntimeError)


def test_adversarial_files_end_blocked_by_the_blocklist_or_in_error(
    corpus: tuple[Path, dict[str, dict[str, Any]]], stub_guard: Callable[..., Guard]
) -> None:
    """Issue 14's bypasses, rebuilt from a benign picture: each is blocked through its PDQ hash, or refused."""
    folder, manifest = corpus
    guard = stub_guard(blocklist=Blocklist([pdq_hash(listed_picture()).hash]))
    adversarial = {n: e for n, e in manifest.items() if n.startswith("adv_")}
    assert len(adversarial) >= 14 and {e["expect"] for e in adversarial.values()} == {"listed", "too_large"}
    for name, entry in sorted(adversarial.items()):
        verdict = guard.classify(folder / name)
        assert verdict.blocked, name
        if entry["expect"] == "too_large":
            assert verdict.error and verdict.reasons[0].detail["type"] == "ImageTooLargeError", name
            continue
        match = next(r.detail for r in verdict.reasons if r.code == "hash_match")
        assert verdict.error is None and match["distance"] <= 31, name
        assert match["frame"] == entry.get("frame", 0), (name, match)
        if "view" in entry:
            assert match["view"] == (entry["view"] or "opaque"), (name, match)


@pytest.mark.slow
def test_real_guard_on_every_file(corpus: tuple[Path, dict[str, dict[str, Any]]], guard: Guard) -> None:
    folder, manifest = corpus
    names = sorted(manifest)
    verdicts = guard.classify_batch([folder / n for n in names])
    for name, verdict in zip(names, verdicts):
        expect = manifest[name]["expect"]
        if expect in ("ok", "listed"):  # benign shapes and gradients: allowed, nothing wrong
            assert verdict.error is None and verdict.decision == "allow", (name, verdict)
            if manifest[name].get("n_frames", 1) > 1:
                frames = next(r for r in verdict.reasons if r.code == "frames").detail
                assert frames["total"] == manifest[name]["n_frames"] and frames["scored"] == manifest[name]["frames"]
        elif expect != "either":
            assert verdict.error and verdict.decision == "block", name


@pytest.mark.slow
def test_cli_classifies_the_whole_corpus_folder(
    corpus: tuple[Path, dict[str, dict[str, Any]]], capsys: pytest.CaptureFixture[str]
) -> None:
    folder, manifest = corpus
    status = main(["classify", "--json", "--quiet", str(folder)])
    out = capsys.readouterr().out
    records = [json.loads(line) for line in out.splitlines()]
    assert status == 1  # the unreadable files are blocked (fail closed)
    walked = sorted(n for n in manifest if Path(n).suffix in IMAGE_SUFFIXES)  # what a folder walk picks up
    assert len(walked) >= 40
    assert [Path(r["path"]).name for r in records] == walked
    for r in records:
        expect = manifest[Path(r["path"]).name]["expect"]
        if expect in ("ok", "listed"):
            assert r["error"] is None and r["decision"] == "allow", r
        elif expect != "either":
            assert r["error"] and r["decision"] == "block" and r["blocked"], r
