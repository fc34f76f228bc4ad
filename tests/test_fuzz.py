"""Property-based fuzzing of the loader and of ``Guard.classify`` on random and mutated bytes.

The only exceptions allowed are the documented ones: :class:`~genguard.ImageLoadError`
(and its subclasses) from the loader and from a Guard under ``on_error="raise"``;
under the default policy every input gets a verdict. A per-example deadline
catches hangs.

The CI setting is bounded (well under two minutes on two cores) and derandomized: every run
of the suite tries the same examples, so a red CI means a change, not a lucky draw. For a
longer run with fresh random examples set ``GENGUARD_FUZZ_EXAMPLES``, for example::

    GENGUARD_FUZZ_EXAMPLES=20000 python -m pytest tests/test_fuzz.py -q

which scales every test's example count (the real-model test gets a tenth).
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from make_corpus import _animation, _exif_rotated, encode, raw_png, shapes
from PIL import Image

from genguard import Guard
from genguard.errors import ImageLoadError
from genguard.imageio.loader import LoadedImage, load_image

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:PIL")  # Pillow warns on corrupt metadata

RANDOM = os.environ.get("GENGUARD_FUZZ_EXAMPLES")
EXAMPLES = int(RANDOM or "300")
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=RANDOM is None,  # the suite (and CI) replays the same examples; GENGUARD_FUZZ_EXAMPLES explores
    deadline=timedelta(seconds=10),  # a hang fails the test
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def _seeds() -> list[bytes]:
    img = Image.fromarray(shapes(24, 16))
    rgba = img.convert("RGBA")
    return [
        encode(img, "JPEG"),
        encode(img, "JPEG", progressive=True),
        encode(img, "PNG"),
        encode(rgba, "PNG"),
        encode(img.convert("P"), "GIF"),
        encode(img, "WEBP"),
        encode(rgba, "WEBP", lossless=True),
        encode(img, "BMP"),
        encode(img, "TIFF"),
        encode(img.convert("CMYK"), "TIFF", compression="tiff_lzw"),
        encode(img, "PPM"),
        encode(img.resize((16, 16)), "ICO"),
        raw_png(4, 4, 16, 2, b"".join(b"\x00" + bytes(24) for _ in range(4))),
        _exif_rotated(),
        _animation("GIF", 4, size=16),
        _animation("PNG", 4, size=16),
        _animation("WEBP", 4, size=16),
    ]


SEEDS = _seeds()


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid small image with a few bytes flipped, inserted, deleted, or cut off."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "dup"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[pos] = draw(st.sampled_from([0x00, 0xFF, 0x7F, 0x80]))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 16))]
        elif op == "truncate":
            del data[pos:]
        elif op == "dup":
            data[pos:pos] = data[pos : pos + draw(st.integers(1, 64))]
    return bytes(data)


ANY_BYTES = st.one_of(st.binary(max_size=512), mutated())


def _check_loaded(loaded: LoadedImage) -> None:
    # every view of a frame is an entry of ``frames``: an alpha frame can give three entries
    assert loaded.frames and len(loaded.frames) == len(loaded.frame_indices) == len(loaded.views)
    assert all(0 <= i < loaded.n_frames for i in loaded.frame_indices)
    assert len(set(loaded.frame_indices)) <= loaded.n_frames
    for frame in loaded.frames:
        assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3 and frame.size > 0


def _half_transparent_png() -> bytes:
    rgba = np.dstack([shapes(24, 16), np.full((16, 24), 128, np.uint8)])
    return encode(Image.fromarray(rgba, "RGBA"), "PNG")


@FUZZ
@given(data=ANY_BYTES)
@example(data=_half_transparent_png())  # one frame, three views: CI found the old invariant wrong
def test_loader_only_raises_image_load_error(data: bytes) -> None:
    try:
        loaded = load_image(data)
    except ImageLoadError:
        return
    _check_loaded(loaded)


@FUZZ
@given(data=mutated())
def test_loader_from_a_file_object_matches_bytes(data: bytes) -> None:
    def outcome(source: Any) -> Any:
        try:
            return load_image(source).frames[0].tobytes()
        except ImageLoadError as exc:
            return type(exc)

    assert outcome(io.BytesIO(data)) == outcome(data)


@settings(FUZZ, max_examples=max(EXAMPLES // 2, 10))
@given(data=ANY_BYTES)
def test_classify_never_raises_under_fail_closed_and_only_typed_under_raise(
    data: bytes, stub_guard: Callable[..., Guard]
) -> None:
    verdict = stub_guard().classify(data)
    assert verdict.decision in ("allow", "review", "block")
    if verdict.error is not None:
        assert verdict.decision == "block"
    try:
        raised = stub_guard(on_error="raise").classify(data)
    except ImageLoadError:
        assert verdict.error is not None
        return
    assert raised == verdict


@pytest.mark.slow
@settings(FUZZ, max_examples=max(EXAMPLES // 10, 10), deadline=timedelta(seconds=30))
@given(data=mutated())
def test_real_models_survive_mutated_images(data: bytes, guard: Guard) -> None:
    verdict = guard.classify(data)
    assert verdict.decision in ("allow", "review", "block")
    if verdict.error is not None:  # unreadable: unknown scores, never a made-up 1.0
        assert verdict.scores.minor is None and verdict.scores.sexual is None
    else:
        assert verdict.scores.minor is not None and verdict.scores.sexual is not None
        assert 0.0 <= verdict.scores.minor <= 1.0 and 0.0 <= verdict.scores.sexual <= 1.0
