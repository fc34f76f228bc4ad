"""Policy: the AND rule, review band, validation and serialisation (scores injected)."""

from __future__ import annotations

import json
import math

import pytest

from genguard import Policy

P = Policy(minor_threshold=0.5, sexual_threshold=0.8, review_minor=0.25, review_sexual=0.4)


@pytest.mark.parametrize(
    ("minor", "sexual", "expected"),
    [
        (0.9, 0.9, "block"),
        (0.5, 0.8, "block"),  # thresholds are inclusive
        (1.0, 1.0, "block"),
        (0.99, 0.79, "review"),  # minor high, sexual only in the review band
        (0.49, 0.99, "review"),
        (0.25, 0.4, "review"),
        (1.0, 0.0, "allow"),  # a child's portrait: one axis alone never blocks
        (0.0, 1.0, "allow"),  # adult content: not this gate's business
        (0.24, 0.99, "allow"),
        (0.99, 0.39, "allow"),
        (0.0, 0.0, "allow"),
    ],
)
def test_decide_follows_the_and_rule(minor: float, sexual: float, expected: str) -> None:
    assert P.decide(minor, sexual) == expected


def test_one_high_axis_never_blocks_at_any_level() -> None:
    grid = [i / 20 for i in range(21)]
    for high in grid:
        assert P.decide(high, 0.79) != "block"
        assert P.decide(0.49, high) != "block"


def test_nan_scores_fail_closed() -> None:
    assert P.decide(math.nan, 0.9) == "block"
    assert P.decide(0.9, math.nan) == "block"
    assert P.decide(math.nan, 0.0) == "allow"


def test_zero_thresholds_block_everything() -> None:
    p = Policy(0.0, 0.0, 0.0, 0.0)
    assert p.decide(0.0, 0.0) == "block"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"minor_threshold": 1.5},
        {"sexual_threshold": -0.1},
        {"minor_threshold": math.nan},
        {"review_minor": "0.2"},
        {"review_sexual": True},
        {"minor_threshold": 0.3, "review_minor": 0.4},  # review above block
        {"sexual_threshold": 0.3, "review_sexual": 0.5},
    ],
)
def test_invalid_thresholds_raise_value_error_naming_the_field(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs)) if len(kwargs) == 1 else "review"):
        Policy(**kwargs)  # type: ignore[arg-type]


def test_to_dict_round_trips_through_json() -> None:
    p = Policy(0.6, 0.7, 0.1, 0.2)
    assert Policy.from_dict(json.loads(json.dumps(p.to_dict()))) == p


def test_from_dict_rejects_unknown_keys_and_lists_known_ones() -> None:
    with pytest.raises(ValueError, match="minor_threshold"):
        Policy.from_dict({"minor_treshold": 0.5})


def test_policy_is_frozen() -> None:
    with pytest.raises(AttributeError):
        P.minor_threshold = 0.1  # type: ignore[misc]
