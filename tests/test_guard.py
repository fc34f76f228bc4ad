"""Guard: the pipeline end to end.

Decisions and reasons are checked with a stub embedder/head that return chosen
scores (never sexual images); the real bundled models run on benign photos and
UTKFace faces for the behaviour of the minor axis, batching and input safety.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import EXAMPLES, ScoreEmbedder, ScoreHead, StagedScoreEmbedder, painted, utkface_sample
from PIL import Image

from genguard import Guard, HeadError, ImageLoadError, Policy, Verdict

POLICY = {"minor_threshold": 0.5, "sexual_threshold": 0.8, "review_minor": 0.25, "review_sexual": 0.4}


def _codes(v: Verdict) -> list[str]:
    return [r.code for r in v.reasons]


# ------------------------------------------------------------- injected scores
@pytest.mark.parametrize(
    ("minor", "sexual", "decision", "codes"),
    [
        (0.9, 0.9, "block", ["minor_face", "sexual_content", "both_high"]),
        (0.9, 0.5, "review", ["minor_face", "sexual_content", "review_band"]),
        (0.9, 0.1, "allow", ["minor_face"]),
        (0.1, 0.95, "allow", ["face", "sexual_content"]),
        (0.1, 0.1, "allow", ["face"]),
    ],
)
def test_decision_and_reasons_follow_the_and_rule(
    stub_guard: Callable[..., Guard], minor: float, sexual: float, decision: str, codes: list[str]
) -> None:
    v = stub_guard(head_policy=POLICY).classify(painted(minor, sexual, age=12))
    assert (v.decision, v.blocked) == (decision, decision == "block")
    assert (v.scores.minor, v.scores.sexual) == (minor, sexual)
    assert _codes(v) == codes
    face = v.reasons[0].detail
    assert face["age"] == 12.0 and face["box"] == [1, 2, 11, 12] and face["score"] == minor
    assert v.error is None and v.frame == 0
    assert (v.backbone, v.head) == ("stub", "stub-head@stub")


def test_no_face_gives_the_heads_no_face_value_and_a_reason(stub_guard: Callable[..., Guard]) -> None:
    v = stub_guard(head_policy=POLICY, no_face_minor=0.3).classify(painted(0.99, 0.5, age=0))
    assert v.scores.minor == 0.3  # the painted 0.99 is ignored: no face carries it
    assert v.decision == "review"
    assert "no_face" in _codes(v)


def test_policy_comes_from_the_head_and_can_be_overridden(stub_guard: Callable[..., Guard]) -> None:
    strict = {**POLICY, "minor_threshold": 0.3, "review_minor": 0.2}
    assert stub_guard(head_policy=strict).policy == Policy.from_dict(strict)
    image = painted(0.4, 0.9, age=15)
    assert stub_guard(head_policy=strict).classify(image).decision == "block"
    assert stub_guard(head_policy=strict, policy=Policy(**POLICY)).classify(image).decision == "review"


def test_zero_thresholds_block_a_benign_image_with_the_real_models(guard: Guard, benign_images: dict[str, Any]) -> None:
    """The AND rule with thresholds injected: 0/0 makes even a photo of coffee block."""
    g = Guard(embedder=guard.embedder, head=guard.head, policy=Policy(0.0, 0.0, 0.0, 0.0))
    v = g.classify(benign_images["coffee"])
    assert v.blocked and "both_high" in _codes(v)
    assert guard.classify(benign_images["coffee"]).decision == "allow"


@pytest.mark.parametrize("on_error", ["block", "allow"])
def test_unreadable_bytes_follow_on_error(stub_guard: Callable[..., Guard], on_error: str) -> None:
    v = stub_guard(on_error=on_error).classify(b"this is not an image")
    assert v.decision == on_error
    assert isinstance(v.error, str) and v.error  # the loader's message; its wording is imageio's business
    assert v.reasons[0].detail["type"].endswith("Error")
    assert v.frame is None
    assert _codes(v) == ["load_error"] and v.reasons[0].detail["on_error"] == on_error
    # unknown is not 1.0: nothing was scored, whatever on_error decided
    assert (v.scores.minor, v.scores.sexual) == (None, None)
    assert "unknown" in v.reasons[0].detail["scores"] and json.loads(json.dumps(v.to_dict()))["scores"] == {"minor": None, "sexual": None}
    assert Verdict.from_dict(json.loads(json.dumps(v.to_dict()))) == v


def test_on_error_raise_raises_image_load_error(stub_guard: Callable[..., Guard]) -> None:
    with pytest.raises(ImageLoadError):
        stub_guard(on_error="raise").classify(b"this is not an image")


def test_block_is_the_default_on_error(stub_guard: Callable[..., Guard]) -> None:
    assert stub_guard().classify(b"").blocked


def test_one_bad_image_does_not_spoil_the_batch(stub_guard: Callable[..., Guard]) -> None:
    g = stub_guard(head_policy=POLICY, batch_size=2)
    images = [painted(0.9, 0.9, 8), b"junk", painted(0.1, 0.1, 40), 12345, painted(0.3, 0.5, 30)]
    vs = g.classify_batch(images)
    assert [v.decision for v in vs] == ["block", "block", "allow", "block", "review"]
    assert [v.error is not None for v in vs] == [False, True, False, True, False]
    assert "int" in (vs[3].error or "")


class _Flaky(ScoreEmbedder):
    """Raises on any batch holding a frame painted with face age 255."""

    def embed(self, frames: Any) -> Any:
        if any(int(f[0, 0, 2]) == 255 for f in frames):
            raise RuntimeError("boom")
        return super().embed(frames)


@pytest.mark.parametrize("on_error", ["block", "allow"])
def test_a_frame_the_models_choke_on_gets_its_own_error_verdict(on_error: str) -> None:
    g = Guard(embedder=_Flaky(), head=ScoreHead(POLICY), on_error=on_error, batch_size=4)
    vs = g.classify_batch([painted(0.9, 0.9, 8), painted(0.1, 0.1, 255), painted(0.3, 0.5, 30)])
    assert [v.decision for v in vs] == ["block", on_error, "review"]
    assert [v.error is not None for v in vs] == [False, True, False]
    assert "boom" in (vs[1].error or "")


def test_a_model_failure_raises_under_on_error_raise() -> None:
    g = Guard(embedder=_Flaky(), head=ScoreHead(POLICY), on_error="raise")
    with pytest.raises(ImageLoadError) as info:
        g.classify(painted(0.1, 0.1, 255))
    assert isinstance(info.value.__cause__, RuntimeError)


def test_batch_keeps_order_and_reports_progress(stub_guard: Callable[..., Guard]) -> None:
    g = stub_guard(head_policy=POLICY, batch_size=3)
    images = [painted(i / 10, 1 - i / 10, age=5) for i in range(10)]
    done: list[int] = []
    vs = g.classify_batch(images, progress=done.append)
    assert [v.scores.minor for v in vs] == [i / 10 for i in range(10)]
    assert sum(done) == 10
    assert max(g.embedder.calls) <= 3  # type: ignore[attr-defined]


def test_animation_is_decided_by_its_worst_frame(stub_guard: Callable[..., Guard]) -> None:
    frames = [Image.fromarray(painted(m, s, age=9)) for m, s in ((0.1, 0.1), (0.9, 0.9), (0.3, 0.5))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=40)
    v = stub_guard(head_policy=POLICY).classify(buf.getvalue())
    assert v.decision == "block" and v.frame == 1
    assert (v.scores.minor, v.scores.sexual) == (0.9, 0.9)
    (frames_reason,) = [r for r in v.reasons if r.code == "frames"]
    assert frames_reason.detail == {"total": 3, "scored": 3, "deciding": 1}


def test_head_for_another_backbone_is_refused(guard: Guard) -> None:
    with pytest.raises(HeadError, match="stub"):
        Guard(embedder=ScoreEmbedder(), head=guard.head)


def test_head_for_another_version_of_the_backbone_is_refused(guard: Guard) -> None:
    """A head trained on the 257-float face vectors of the untuned age network does not load onto the new backbone."""
    from genguard.heads.head import Head, HeadMetadata

    meta = guard.head.metadata
    old = Head(HeadMetadata(backbone="bundled", minor_source="face", minor_dim=257, sexual_dim=meta.sexual_dim))
    with pytest.raises(HeadError, match="257"):
        Guard(embedder=guard.embedder, head=old)
    moved = dict(meta.feature_layout, face={"age_penultimate": [0, 256], "expected_age_div100": [256, 257], "x": [257, 260]})
    same_size = Head(HeadMetadata(backbone="bundled", minor_source="face", minor_dim=meta.minor_dim,
                                  sexual_dim=meta.sexual_dim, feature_layout=moved))
    with pytest.raises(HeadError, match="laid out"):
        Guard(embedder=guard.embedder, head=same_size)
    Guard(embedder=guard.embedder, head=guard.head)  # the shipped head fits


@pytest.mark.parametrize("kwargs", [{"on_error": "ignore"}, {"batch_size": 0}])
def test_bad_arguments_raise_value_error(stub_guard: Callable[..., Guard], kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        stub_guard(**kwargs)


def test_unknown_backbone_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="bundled"):
        Guard("resnet")


# ------------------------------------------------------------------ input safety
def test_caller_array_is_not_modified(guard: Guard, benign_images: dict[str, Any]) -> None:
    image = benign_images["astronaut"]
    small = np.ascontiguousarray(image[::2, ::2])
    rgba = np.dstack([small, np.full(small.shape[:2], 200, np.uint8)])
    arrays = [image, rgba, small[:, :, 0], image[::2, ::2]]  # RGB, RGBA, grey, non-contiguous view
    before = [a.copy() for a in arrays]
    guard.classify(image)
    guard.classify_batch(arrays)
    for arr, copy in zip(arrays, before, strict=True):
        np.testing.assert_array_equal(arr, copy)
        assert arr.flags.writeable and arr.dtype == np.uint8


def test_caller_pil_image_is_not_modified(guard: Guard, benign_images: dict[str, Any]) -> None:
    for mode in ("RGB", "RGBA", "L", "P"):
        img = Image.fromarray(benign_images["astronaut"]).convert(mode)
        before = (img.mode, img.size, img.tobytes(), dict(img.info))
        guard.classify(img)
        assert (img.mode, img.size, img.tobytes(), dict(img.info)) == before


def test_caller_animated_pil_image_keeps_its_frame(stub_guard: Callable[..., Guard]) -> None:
    frames = [Image.fromarray(painted(0.1 * k, 0.1, 5)) for k in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    img = Image.open(io.BytesIO(buf.getvalue()))
    stub_guard().classify(img)
    assert img.tell() == 0


def test_reused_buffer_generator_scores_each_image(stub_guard: Callable[..., Guard]) -> None:
    g = stub_guard(head_policy=POLICY, batch_size=2)
    buf = painted(0.0, 0.0, age=5)

    def frames() -> Any:
        for k in range(6):
            buf[0, 0, 0] = 10 * k
            yield buf

    assert [v.scores.minor for v in g.classify_batch(frames())] == [k / 10 for k in range(6)]


# --------------------------------------------------------- real bundled models
def test_adult_astronaut_scores_low_on_minor(guard: Guard, benign_images: dict[str, Any]) -> None:
    v = guard.classify(benign_images["astronaut"])
    faces = [r for r in v.reasons if r.code in ("face", "minor_face")]
    assert len(faces) == 1 and faces[0].detail["age"] >= 18
    assert v.scores.minor < guard.policy.review_minor
    assert v.decision == "allow" and not v.blocked
    assert 0.0 <= v.scores.sexual < guard.policy.review_sexual


def test_every_input_kind_gives_the_same_verdict(guard: Guard, benign_images: dict[str, Any], tmp_path: Path) -> None:
    array = benign_images["astronaut"]
    path = tmp_path / "a.png"
    Image.fromarray(array).save(path)
    data = path.read_bytes()
    inputs = [array, Image.fromarray(array), str(path), path, data, bytearray(data), io.BytesIO(data)]
    verdicts = [guard.classify(x) for x in inputs]
    for v in verdicts[1:]:
        assert v.decision == verdicts[0].decision
        assert v.scores.minor == pytest.approx(verdicts[0].scores.minor, abs=1e-5)
        assert v.scores.sexual == pytest.approx(verdicts[0].scores.sexual, abs=1e-5)


def test_batch_equals_one_by_one(guard: Guard, benign_images: dict[str, Any]) -> None:
    images = [*benign_images.values(), EXAMPLES / "astronaut.png", b"not an image"]
    batch = guard.classify_batch(images, batch_size=3)
    single = [guard.classify(x) for x in images]
    for b, s in zip(batch, single, strict=True):
        assert b.decision == s.decision and b.error == s.error and _codes(b) == _codes(s)
        assert b.scores.minor == pytest.approx(s.scores.minor, abs=1e-5)
        assert b.scores.sexual == pytest.approx(s.scores.sexual, abs=1e-5)


def test_real_verdict_round_trips_through_json(guard: Guard, benign_images: dict[str, Any]) -> None:
    for image in benign_images.values():
        v = guard.classify(image)
        assert Verdict.from_dict(json.loads(json.dumps(v.to_dict()))) == v


def test_scenes_without_people_are_allowed(guard: Guard, benign_images: dict[str, Any]) -> None:
    for name in ("chelsea", "coffee", "rocket"):
        v = guard.classify(benign_images[name])
        assert v.decision == "allow", name
        assert 0.0 <= v.scores.minor <= 1.0 and 0.0 <= v.scores.sexual <= 1.0


def test_one_guard_can_be_shared_by_threads(guard: Guard, benign_images: dict[str, Any]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    images = [benign_images["astronaut"], benign_images["chelsea"]] * 2
    expected = [guard.classify(x) for x in images[:2]] * 2
    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(guard.classify, images))
    for g, e in zip(got, expected, strict=True):
        assert g.decision == e.decision and _codes(g) == _codes(e)
        assert g.scores.minor == pytest.approx(e.scores.minor, abs=1e-5)


def test_embed_returns_the_backbone_embedding_of_each_frame(guard: Guard, benign_images: dict[str, Any]) -> None:
    (e,) = guard.embed(benign_images["astronaut"])
    assert len(e.faces) == 1 and e.vector.shape == (guard.embedder.image_dim,)


@pytest.mark.slow
@pytest.mark.utkface
def test_young_children_score_high_and_adults_low(guard: Guard, utkface_dir: Path) -> None:
    """Behaviour, not exact numbers: the shipped head may be retrained, so assert on rates with a margin."""
    children = utkface_sample(utkface_dir, 1, 6, 20)
    adults = utkface_sample(utkface_dir, 30, 60, 20)
    t = guard.policy.minor_threshold
    child_minor = [v.scores.minor for v in guard.classify_batch(children)]
    adult_minor = [v.scores.minor for v in guard.classify_batch(adults)]
    child_rate = np.mean([m >= t for m in child_minor])
    adult_rate = np.mean([m >= t for m in adult_minor])
    assert child_rate >= 0.75, f"only {child_rate:.0%} of children aged 1-6 reach minor >= {t}: {child_minor}"
    assert adult_rate <= 0.15, f"{adult_rate:.0%} of adults aged 30-60 reach minor >= {t}: {adult_minor}"
    assert np.median(child_minor) > np.median(adult_minor)


# ------------------------------------- both scores by default; the short-circuit is an explicit option
def test_default_guard_scores_both_axes_of_every_image(guard: Guard, benign_images: dict[str, Any]) -> None:
    for name, image in benign_images.items():
        v = guard.classify(image)
        assert isinstance(v.scores.minor, float) and isinstance(v.scores.sexual, float), name
        assert "minor_skipped" not in [r.code for r in v.reasons]


def test_skip_minor_below_review_keeps_every_decision(guard: Guard, benign_images: dict[str, Any]) -> None:
    fast = Guard(embedder=guard.embedder, head=guard.head, skip_minor_below_review=True)
    for name, image in benign_images.items():
        full, quick = guard.classify(image), fast.classify(image)
        assert quick.decision == full.decision, name
        assert quick.scores.sexual == pytest.approx(full.scores.sexual, abs=1e-6)
        assert quick.scores.sexual < fast.policy.review_sexual
        assert quick.scores.minor is None
        assert [r.code for r in quick.reasons] == ["minor_skipped"]
        assert Verdict.from_dict(json.loads(json.dumps(quick.to_dict()))) == quick


def test_skip_minor_below_review_gives_the_same_decisions_on_injected_scores() -> None:
    """Every combination of scores, both modes: the same decisions; the face stage runs only where it could matter."""
    images = [painted(minor, sexual, age=10) for minor in (0.0, 0.3, 0.6, 0.95) for sexual in (0.0, 0.3, 0.45, 0.85, 0.99)]
    head = ScoreHead()
    full = Guard(embedder=StagedScoreEmbedder(), head=head).classify_batch(images, batch_size=8)
    staged = StagedScoreEmbedder()
    quick = Guard(embedder=staged, head=head, skip_minor_below_review=True).classify_batch(images, batch_size=8)
    assert [v.decision for v in quick] == [v.decision for v in full]
    assert {v.decision for v in full} == {"allow", "review", "block"}
    for q, f in zip(quick, full):
        assert isinstance(f.scores.minor, float)
        if f.scores.sexual >= head.policy.review_sexual:
            assert q.scores.minor == f.scores.minor
        else:
            assert q.scores.minor is None and [r.code for r in q.reasons] == ["minor_skipped"]
    needed = sum(f.scores.sexual >= head.policy.review_sexual for f in full)
    assert sum(staged.face_calls) == needed < len(images)


def test_skip_minor_below_review_scores_minor_once_sexual_reaches_review(guard: Guard, benign_images: dict[str, Any]) -> None:
    from genguard import Policy

    # review_sexual 0 makes every frame one where the minor score could matter.
    p = Policy(minor_threshold=0.5, sexual_threshold=0.8, review_minor=0.25, review_sexual=0.0)
    fast = Guard(embedder=guard.embedder, head=guard.head, policy=p, skip_minor_below_review=True)
    full = Guard(embedder=guard.embedder, head=guard.head, policy=p)
    v, w = fast.classify(benign_images["astronaut"]), full.classify(benign_images["astronaut"])
    assert v.scores.minor is not None and v.scores.minor == pytest.approx(w.scores.minor, abs=1e-6)
    assert [r.code for r in v.reasons] == [r.code for r in w.reasons]


def test_a_ready_embedder_cannot_be_combined_with_backbone_options() -> None:
    """Guard(embedder=...) used to ignore backbone, device and options silently."""
    from conftest import ScoreEmbedder, ScoreHead

    for kwargs in ({"backbone": "clip"}, {"device": "cuda"}, {"threads": 2}):
        with pytest.raises(ValueError, match="embedder="):
            Guard(embedder=ScoreEmbedder(), head=ScoreHead(), **kwargs)  # type: ignore[arg-type]
    Guard(embedder=ScoreEmbedder(), head=ScoreHead())  # alone it is fine
