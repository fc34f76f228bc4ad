"""What a person could see is what genguard scores: alpha views and every distinct frame (issue 14).

Property tests (hypothesis) over alpha layouts and frame layouts, and unit tests of the rules:

- a frame whose alpha is not fully opaque is scored over white, over black and as its colours without
  alpha (identical views kept once); a fully opaque one is scored once;
- every distinct frame of an animation or multi-page file is kept, whatever its duration; more
  distinct frames than ``max_frames`` is refused; identical and near-identical frames are kept once.

All images are benign: flat colours, gradients and noise.
"""

from __future__ import annotations

import io
import os
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from genguard.errors import ImageTooLargeError
from genguard.imageio.loader import load_image

EXAMPLES = max(10, int(os.environ.get("GENGUARD_FUZZ_EXAMPLES", "300")) // 4)
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=os.environ.get("GENGUARD_FUZZ_EXAMPLES") is None,  # the suite replays the same examples; a long run explores
    deadline=timedelta(seconds=10),
    suppress_health_check=[HealthCheck.too_slow],
)


def _reference_views(rgba: np.ndarray) -> dict[str, np.ndarray]:
    """Compositing done independently, in floats: what a viewer shows over white and over black, and the colours."""
    c = rgba[..., :3].astype(np.float64)
    a = rgba[..., 3:4].astype(np.float64) / 255.0
    return {
        "over_white": np.rint(c * a + 255.0 * (1 - a)).astype(np.uint8),
        "over_black": np.rint(c * a).astype(np.uint8),
        "colour": rgba[..., :3].copy(),
    }


def _check_views(rgba: np.ndarray, loaded: Any) -> None:
    if rgba[..., 3].min() == 255:
        assert loaded.views == ("",)
        np.testing.assert_array_equal(loaded.frames[0], rgba[..., :3])
        return
    got = dict(zip(loaded.views, loaded.frames))
    assert set(got) <= {"over_white", "over_black", "colour"} and "over_white" in got
    assert len(loaded.frames) == len(got)  # each view once
    for name, ref in _reference_views(rgba).items():
        # every view a person could see is scored, itself or as an identical view kept under another name
        assert any(np.abs(arr.astype(int) - ref).max() <= 1 for arr in got.values()), name
        if name in got:
            assert np.abs(got[name].astype(int) - ref).max() <= 1, name


alpha_layouts = st.sampled_from(["opaque", "zero", "one", "random", "mask", "luma", "single"])


@st.composite
def rgba_images(draw: Any) -> np.ndarray:
    h, w = draw(st.integers(1, 24)), draw(st.integers(1, 24))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    colour = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    if draw(st.booleans()):
        colour[:] = draw(st.sampled_from([0, 255]))  # white or black under the alpha: the hiding places
    layout = draw(alpha_layouts)
    alpha = {
        "opaque": np.full((h, w), 255, np.uint8),
        "zero": np.zeros((h, w), np.uint8),
        "one": np.ones((h, w), np.uint8),
        "random": rng.integers(0, 256, (h, w), dtype=np.uint8),
        "mask": np.where(rng.random((h, w)) < 0.5, 0, 255).astype(np.uint8),
        "luma": rng.integers(0, 256, (h, w), dtype=np.uint8),
        "single": np.full((h, w), 255, np.uint8),
    }[layout]
    if layout == "single":
        alpha[rng.integers(0, h), rng.integers(0, w)] = 254  # one pixel short of opaque is not trivial
    return np.dstack([colour, alpha])


@FUZZ
@given(rgba_images(), st.sampled_from(["array", "PNG", "WEBP", "TIFF"]))
def test_every_alpha_view_is_scored(rgba: np.ndarray, source: str) -> None:
    if source == "array":
        loaded = load_image(rgba)
    else:
        kw = {"lossless": True, "exact": True} if source == "WEBP" else {}
        buf = io.BytesIO()
        Image.fromarray(rgba, "RGBA").save(buf, source, **kw)
        loaded = load_image(buf.getvalue())
    _check_views(rgba, loaded)


def test_opaque_images_pay_for_one_view() -> None:
    rgba = np.dstack([np.full((8, 8, 3), 90, np.uint8), np.full((8, 8), 255, np.uint8)])
    assert load_image(rgba).views == ("",)
    p_mode = Image.new("P", (8, 8))
    assert load_image(p_mode).views == ("",)


def test_palette_transparency_gets_the_alpha_views() -> None:
    img = Image.new("P", (8, 8), 1)
    img.putpalette([0, 0, 0, 200, 50, 50] + [0] * 762)
    img.info["transparency"] = 1  # the whole picture is the transparent index: invisible over white
    buf = io.BytesIO()
    img.save(buf, "GIF", transparency=1)
    loaded = load_image(buf.getvalue())
    assert set(loaded.views) == {"over_white", "over_black", "colour"}
    colour = dict(zip(loaded.views, loaded.frames))["colour"]
    assert tuple(colour[0, 0]) == (200, 50, 50)


# ------------------------------------------------------------------- frames
_BASES = [np.full((24, 32, 3), c, np.uint8) for c in ((200, 30, 30), (30, 200, 30), (30, 30, 200), (220, 220, 40), (20, 20, 20), (240, 240, 240))]
for _i, _b in enumerate(_BASES):
    _b[4 + 2 * _i : 12 + 2 * _i, 5:25] = (255 - _b[0, 0]).astype(np.uint8)  # a bar, so no two bases are alike anywhere


def _encode_frames(frames: list[np.ndarray], fmt: str, durations: list[int]) -> bytes:
    images = [Image.fromarray(f) for f in frames]
    buf = io.BytesIO()
    if fmt == "TIFF":
        images[0].save(buf, "TIFF", save_all=True, append_images=images[1:])
    else:
        kw: dict[str, Any] = {"lossless": True} if fmt == "WEBP" else {}
        images[0].save(buf, fmt, save_all=True, append_images=images[1:], duration=durations, **kw)
    return buf.getvalue()


@FUZZ
@given(
    st.lists(st.integers(0, len(_BASES) - 1), min_size=1, max_size=12),
    st.sampled_from(["GIF", "PNG", "WEBP", "TIFF"]),
    st.integers(1, 6),
    st.data(),
)
def test_no_distinct_frame_goes_unseen(order: list[int], fmt: str, max_frames: int, data: Any) -> None:
    durations = data.draw(st.lists(st.sampled_from([0, 10, 100, 60_000]), min_size=len(order), max_size=len(order)))
    frames = [_BASES[i] for i in order]
    encoded = _encode_frames(frames, fmt, durations)
    with Image.open(io.BytesIO(encoded)) as ref:  # what Pillow (a viewer) shows, frame by frame
        shown = []
        for i in range(getattr(ref, "n_frames", 1)):
            ref.seek(i)
            shown.append(np.asarray(ref.convert("RGB")))
    distinct = {s.tobytes() for s in shown}
    if len(distinct) > max_frames:
        with pytest.raises(ImageTooLargeError, match="distinct frames"):
            load_image(encoded, max_frames=max_frames)
        return
    loaded = load_image(encoded, max_frames=max_frames)
    assert loaded.distinct_frames == len(distinct)
    for s in shown:
        assert any(np.array_equal(s, f) for f in loaded.frames)
    # every distinct source index appears once in the order shown
    assert list(loaded.frame_indices) == sorted(set(loaded.frame_indices))


def test_near_identical_frames_are_scored_once() -> None:
    base = np.zeros((256, 256, 3), np.uint8)
    base[:, :] = (70, 120, 90)
    frames = []
    for i in range(30):
        a = base.copy()
        a[i, 3 * i] = (90, 130, 100)  # one pixel a few levels off: invisible at any viewing size
        frames.append(a)
    loaded = load_image(_encode_frames(frames, "PNG", [40] * 30), max_frames=1)
    assert loaded.distinct_frames == 1 and loaded.n_frames == 30


def test_more_distinct_frames_than_the_limit_is_refused_with_a_clear_error() -> None:
    encoded = _encode_frames(_BASES[:4], "PNG", [40] * 4)
    with pytest.raises(ImageTooLargeError, match=r"more than 3 distinct frames.*raise max_frames"):
        load_image(encoded, max_frames=3)
    assert load_image(encoded, max_frames=4).distinct_frames == 4


def test_alpha_animation_frames_each_get_their_views() -> None:
    frames = []
    for i in range(3):
        rgba = np.zeros((16, 16, 4), np.uint8)
        rgba[..., :3] = _BASES[i][:16, :16]
        rgba[..., 3] = 0 if i == 1 else 255  # frame 1 invisible over white: its colours are still scored
        frames.append(Image.fromarray(rgba, "RGBA"))
    buf = io.BytesIO()
    frames[0].save(buf, "PNG", save_all=True, append_images=frames[1:], duration=0)
    loaded = load_image(buf.getvalue())
    colour_of_1 = [f for f, i, v in zip(loaded.frames, loaded.frame_indices, loaded.views) if i == 1 and v == "colour"]
    assert colour_of_1 and np.array_equal(colour_of_1[0], _BASES[1][:16, :16])


# ---------------------------------------------------- guard, blocklist, audit
def test_views_are_hashed_matched_and_audited_from_one_decode(stub_guard: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The picture hidden in the alpha channel: one decode gives the verdict, the blocklist match and the audit hashes."""
    import genguard.pipeline as pipeline
    from make_corpus import listed_picture

    from genguard.defences.audit import AuditLog
    from genguard.defences.blocklist import Blocklist, pdq_hash
    from genguard.serving.screening import Screening

    pic = listed_picture()
    luma = np.asarray(Image.fromarray(pic).convert("L"))
    buf = io.BytesIO()
    Image.fromarray(np.dstack([np.full(pic.shape, 255, np.uint8), luma]), "RGBA").save(buf, "PNG")
    decodes: list[int] = []
    real = pipeline.load_image
    monkeypatch.setattr(pipeline, "load_image", lambda *a, **k: decodes.append(1) or real(*a, **k))
    audit = AuditLog(tmp_path / "audit.jsonl")
    guard = stub_guard(blocklist=Blocklist([pdq_hash(pic).hash]))
    screened = Screening(guard, audit=audit).screen(buf.getvalue(), subject="u1")
    verdict = screened.verdict
    assert decodes == [1] and verdict.blocked and verdict.error is None
    match = next(r.detail for r in verdict.reasons if r.code == "hash_match")
    assert match["view"] == "over_black" and match["distance"] <= 31
    alpha = next(r.detail for r in verdict.reasons if r.code == "alpha")
    assert alpha["views"] == ["over_white", "over_black"]  # the colours are all white: the colour view is over_white
    (record,) = list(audit.records())
    assert record["pdq"] == list(verdict.pdq) and len(verdict.pdq) == 2


def test_read_ahead_is_bounded_in_bytes_and_never_deadlocks(stub_guard: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a 1-byte read-ahead budget, decoding waits for scoring: one batch ahead at most, every verdict, in order."""
    import threading
    import time

    import genguard.pipeline as pipeline

    guard = stub_guard(batch_size=2)
    lock = threading.Lock()
    loaded, finished = [0], [0]
    ahead: list[int] = []
    real_load, real_score = guard.pipeline.load, guard.pipeline.score

    def load(image: Any) -> Any:
        item = real_load(image)
        with lock:
            loaded[0] += 1
            ahead.append(loaded[0] - finished[0])
        return item

    def score(items: Any, policy: Any, batch_size: int) -> Any:
        time.sleep(0.2)  # slow models: an unbounded read-ahead fills up meanwhile
        out = real_score(items, policy, batch_size)
        with lock:
            finished[0] += len(items)
        return out

    monkeypatch.setattr(guard.pipeline, "load", load)
    monkeypatch.setattr(guard.pipeline, "score", score)
    images = [np.full((64, 64, 3), i, np.uint8) for i in range(10)]
    unbounded = guard.classify_batch(images, batch_size=2, workers=2)
    assert max(ahead) == 4  # two batches ahead by count alone
    ahead.clear()
    loaded[0] = finished[0] = 0
    monkeypatch.setattr(pipeline, "READAHEAD_BYTES", 1)
    verdicts = guard.classify_batch(images, batch_size=2, workers=2)
    assert verdicts == unbounded and len(verdicts) == 10
    assert max(ahead) <= 2, ahead  # only the batch the models wait for
