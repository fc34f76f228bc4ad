"""Shrinking by exact halvings first: the same sizes as a direct area resize, and nearly the same pixels."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from genguard.embedders.bundled.resizing import halve_to, resize


def _photo(h: int, w: int) -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(cv2.resize(data.astronaut(), (w, h), interpolation=cv2.INTER_LINEAR))


def test_halve_to_stops_before_the_target_and_at_odd_sides() -> None:
    assert halve_to(_photo(1024, 1024), 320, 320).shape == (512, 512, 3)
    assert halve_to(_photo(1024, 1024), 96, 96).shape == (256, 256, 3)  # the last step is 256 -> 96, not 128 -> 96
    assert halve_to(_photo(1024, 1024), 342, 10).shape == (1024, 1024, 3)
    assert halve_to(_photo(2048, 1024), 96, 96).shape == (512, 256, 3)  # both sides must stay at least 1.5 x the target
    assert halve_to(_photo(1022, 1000), 100, 100).shape == (511, 500, 3)  # 511 is odd: no further halving
    odd = _photo(1023, 1024)
    assert halve_to(odd, 100, 100) is odd


def test_an_exact_half_is_the_two_by_two_average() -> None:
    img = _photo(64, 96).astype(np.float64)
    expected = (img[0::2, 0::2] + img[1::2, 0::2] + img[0::2, 1::2] + img[1::2, 1::2]) / 4
    assert np.abs(resize(_photo(64, 96), 48, 32).astype(np.float64) - expected).max() <= 0.5 + 1e-9


@pytest.mark.parametrize(("size", "target"), [((1024, 1024), (320, 320)), ((1024, 768), (72, 96)), ((1024, 1024), (96, 96)), ((1024, 1024), (192, 192)), ((1000, 1400), (300, 420))])
def test_resize_matches_direct_area_averaging_up_to_rounding(size: tuple[int, int], target: tuple[int, int]) -> None:
    img = _photo(*size)
    ours = resize(img, *target).astype(np.int16)
    direct = cv2.resize(img, target, interpolation=cv2.INTER_AREA).astype(np.int16)
    assert ours.shape == direct.shape
    assert np.abs(ours - direct).mean() < 1.0  # grey levels: only pixels whose area cuts a 2 x 2 block differ


def test_growing_is_bilinear_and_same_size_is_a_copy() -> None:
    img = _photo(40, 60)
    np.testing.assert_array_equal(resize(img, 120, 80), cv2.resize(img, (120, 80), interpolation=cv2.INTER_LINEAR))
    same = resize(img, 60, 40)
    np.testing.assert_array_equal(same, img)


@pytest.mark.parametrize("shape", [(1024, 1024), (750, 1000), (517, 333), (3000, 4000), (100, 100)])
def test_nsfw_view_is_the_centre_of_the_256_px_resize_bit_for_bit(shape: tuple[int, int]) -> None:
    from PIL import Image

    from genguard.embedders.bundled.inputs import _nsfw_normalise, nsfw_view

    frame = np.random.default_rng(shape[0]).integers(0, 256, (*shape, 3), dtype=np.uint8)
    whole = np.asarray(Image.fromarray(frame).resize((256, 256), Image.Resampling.BILINEAR))[16:240, 16:240]
    np.testing.assert_array_equal(nsfw_view(frame), _nsfw_normalise(whole))
