"""Unknown is not 1.0: an unreadable image's verdict reports no scores, and nothing counts it as a score.

The decision still follows ``on_error`` (block by default); the ``load_error`` reason
says the scores are unknown and why; the attempt monitor never counts the verdict as a
block or a near miss; the CLI table shows ``-``; evaluation leaves it out of the metrics.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
from conftest import painted
from PIL import Image

from genguard import Guard
from genguard.cli.classify import _table_row
from genguard.defences.monitor.settings import classify_event
from genguard.policy import Policy
from genguard.verdict import Scores, Verdict


@pytest.mark.parametrize("on_error", ["block", "allow"])
def test_unreadable_verdict_has_unknown_scores_and_says_why(stub_guard: Callable[..., Guard], on_error: str) -> None:
    v = stub_guard(on_error=on_error).classify(b"\x89PNG\r\n\x1a\n broken")
    assert v.decision == on_error and v.error
    assert v.scores == Scores(None, None)
    reason = v.reasons[0]
    assert reason.code == "load_error" and "unknown" in reason.detail["scores"] and on_error in reason.detail["scores"]
    wire = json.loads(json.dumps(v.to_dict()))
    assert wire["scores"] == {"minor": None, "sexual": None} and Verdict.from_dict(wire) == v
    assert _table_row("x.png", v).split()[:3] == [on_error, "-", "-"]


def test_the_monitor_never_counts_unknown_scores() -> None:
    policy = Policy(minor_threshold=0.0, sexual_threshold=0.0, review_minor=0.0, review_sexual=0.0)
    unread = Verdict("block", Scores(None, None), error="could not read")
    assert classify_event(unread, policy, margin=1.0) is None
    no_error_but_unknown = Verdict("allow", Scores(None, None))  # a hand-made verdict must not crash the monitor
    assert classify_event(no_error_but_unknown, policy, margin=1.0) is None


def test_evaluation_counts_unreadable_files_as_errors(stub_guard: Callable[..., Guard], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import genguard.guard
    import genguard.learn.evaluation.run as run

    folder = tmp_path / "data"
    folder.mkdir()
    Image.fromarray(painted(0.9, 0.9)).save(folder / "a.png")
    (folder / "b.png").write_bytes(b"not an image at all")
    made = stub_guard()
    monkeypatch.setattr(genguard.guard, "Guard", lambda *a, **k: made)  # evaluate imports it when called
    metrics: dict[str, Any] = run.evaluate(folder, report=tmp_path / "report", assume={"minor": 0, "sexual": 0},
                                           cache_dir=tmp_path / "cache", progress=False).metrics
    assert metrics["unreadable"] == 1 and metrics["dataset"]["records"] == 2
    assert np.isfinite(metrics.get("minor_fpr", 0.0))
