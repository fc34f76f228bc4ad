"""Verdict, Scores and Reason: frozen, typed, and JSON round-trips."""

from __future__ import annotations

import dataclasses
import json

import pytest

from genguard import Reason, Scores, Verdict


def _full() -> Verdict:
    return Verdict(
        decision="review",
        scores=Scores(0.3141592653589793, 0.45),
        reasons=(
            Reason("minor_face", {"score": 0.3142, "age": 15.2, "box": [1, 2, 30, 40], "detector": "dlib", "frame": 0}),
            Reason("sexual_content", {"score": 0.45, "open_nsfw": 0.2, "nudenet": {}, "frame": 0}),
            Reason("review_band", {"minor": 0.3142, "sexual": 0.45}),
        ),
        error=None,
        frame=0,
        backbone="bundled",
        head="h@bundled",
    )


def test_to_dict_round_trips_through_json() -> None:
    v = _full()
    back = Verdict.from_dict(json.loads(json.dumps(v.to_dict())))
    assert back == v
    assert back.scores.minor == v.scores.minor  # floats survive exactly


def test_error_verdict_round_trips() -> None:
    v = Verdict("block", Scores(1.0, 1.0), (Reason("load_error", {"type": "ImageLoadError"}),), error="bad", frame=None)
    assert Verdict.from_dict(json.loads(json.dumps(v.to_dict()))) == v


def test_to_dict_has_the_documented_keys() -> None:
    d = _full().to_dict()
    assert set(d) >= {"decision", "blocked", "scores", "reasons", "error"}
    assert set(d["scores"]) == {"minor", "sexual"}
    assert d["reasons"][0]["code"] == "minor_face"
    assert d["blocked"] is False


def test_blocked_property() -> None:
    assert Verdict("block", Scores(0.9, 0.9)).blocked
    assert not Verdict("review", Scores(0.9, 0.5)).blocked
    assert not Verdict("allow", Scores(0.0, 0.0)).blocked


def test_unknown_decision_is_refused() -> None:
    with pytest.raises(ValueError, match="decision"):
        Verdict("maybe", Scores(0.0, 0.0))  # type: ignore[arg-type]


def test_verdict_is_frozen() -> None:
    v = _full()
    with pytest.raises(dataclasses.FrozenInstanceError):
        v.decision = "allow"  # type: ignore[misc]


def test_reason_to_dict_puts_code_first_with_details() -> None:
    assert Reason("no_face", {"minor": 0.0}).to_dict() == {"code": "no_face", "minor": 0.0}
    assert Reason("frames").to_dict() == {"code": "frames"}
