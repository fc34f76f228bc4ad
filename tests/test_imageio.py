"""The loader: modes, orientation, animations, limits and refusals, input kinds.

Every image here is built from shapes and gradients (tests/make_corpus.py).
"""

from __future__ import annotations

import io
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from make_corpus import _animation, _exif_rotated, _gif_many_frames, encode, raw_png, shapes
from PIL import Image

from genguard.imageio import loader as imageio
from genguard.imageio._formats import count_gif_frames, sniff_unsupported
from genguard.errors import GenguardError, ImageLoadError, ImageTooLargeError, UnsupportedFormatError
from genguard.imageio.loader import MAX_ANIMATION_FRAMES, load_image

RGB = shapes()


def _check_rgb(loaded: imageio.LoadedImage, w: int, h: int) -> None:
    for frame in loaded.frames:
        assert frame.dtype == np.uint8 and frame.shape == (h, w, 3)
        assert frame.flags.c_contiguous and not frame.flags.writeable


# ------------------------------------------------------------------- modes
@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "I", "F", "YCbCr", "RGBX"])
def test_every_pillow_mode_becomes_rgb(mode: str) -> None:
    img = Image.fromarray(RGB)
    if mode == "I;16":
        conv = Image.fromarray((np.asarray(img.convert("L"), np.uint16) * 257))
    elif mode in ("I", "F"):
        conv = img.convert("L").convert(mode)
    else:
        conv = img.convert(mode)
    loaded = load_image(conv)
    _check_rgb(loaded, 96, 64)
    gray = np.asarray(img.convert("L"), np.int16)
    if mode in ("L", "LA", "I;16", "I", "F"):  # one channel: every channel equals the gray value (up to rounding)
        out = loaded.frames[0].astype(np.int16)
        assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
        scale = 255 / max(int(gray.max()) - int(gray.min()), 1) if mode in ("I", "F") else 1.0
        expected = (gray - gray.min()) * scale if mode in ("I", "F") else gray
        assert np.abs(out[..., 0] - expected).max() <= 2


def test_sixteen_bit_uses_the_full_range() -> None:
    ramp = np.linspace(0, 65535, 256, dtype=np.uint16).reshape(16, 16)
    out = load_image(encode(Image.fromarray(ramp), "PNG")).frames[0]
    assert out[0, 0, 0] == 0 and out[-1, -1, 0] == 255
    rows16 = b"".join(b"\x00" + np.full((4, 3), 65535 * (r % 2), ">u2").tobytes() for r in range(4))
    out16 = load_image(raw_png(4, 4, 16, 2, rows16)).frames[0]
    assert out16[0].max() == 0 and out16[1].min() == 255


def test_float_image_with_nan_and_inf_is_finite() -> None:
    arr = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    arr[0, 0], arr[0, 1] = np.nan, np.inf
    out = load_image(Image.fromarray(arr, mode="F")).frames[0]
    assert out.dtype == np.uint8 and out[7, 7, 0] == 255


def test_transparency_is_composited_over_white() -> None:
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:2, :, 3] = 255  # top opaque red-ish, bottom fully transparent
    for source in (rgba, Image.fromarray(rgba, "RGBA"), encode(Image.fromarray(rgba, "RGBA"), "PNG")):
        out = load_image(source).frames[0]
        assert tuple(out[0, 0]) == (200, 0, 0) and tuple(out[3, 3]) == (255, 255, 255)
    pal = Image.fromarray(RGB).convert("P", palette=Image.Palette.ADAPTIVE)
    index = pal.getpixel((0, 0))
    out = load_image(encode(pal, "PNG", transparency=index)).frames[0]
    assert tuple(out[0, 0]) == (255, 255, 255)


def test_exif_orientation_is_applied() -> None:
    out = load_image(_exif_rotated()).frames[0]
    assert out.shape == (40, 20, 3)  # stored 40x20, displayed 20x40
    top_right, top_left = out[2, 17].astype(int), out[2, 2].astype(int)
    assert top_right[0] > 200 and top_right[2] < 60  # the red block moved to the top right
    assert top_left[2] > 200


@pytest.mark.parametrize("size", [(1, 1), (1, 20000), (20000, 1)])
def test_tiny_and_extreme_aspect_ratios(size: tuple[int, int]) -> None:
    w, h = size
    _check_rgb(load_image(encode(Image.fromarray(shapes(w, h)), "PNG")), w, h)


# -------------------------------------------------------------- animations
@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG", "TIFF"])
def test_every_distinct_frame_is_kept_and_more_than_max_frames_is_refused(fmt: str) -> None:
    if fmt == "TIFF":
        pages = [Image.fromarray(shapes(64, 64, seed=i)) for i in range(40)]
        data = encode(pages[0], "TIFF", save_all=True, append_images=pages[1:])
    else:
        data = _animation(fmt, 40, duration=40, **({"lossless": True} if fmt == "WEBP" else {}))
    with pytest.raises(ImageTooLargeError, match=f"more than {imageio.MAX_FRAMES} distinct frames"):
        load_image(data)
    loaded = load_image(data, max_frames=40)
    assert loaded.n_frames == 40 and loaded.frame_indices == tuple(range(40)) and loaded.distinct_frames == 40
    with Image.open(io.BytesIO(data)) as ref:  # each frame is the one at its index
        for idx, frame in zip(loaded.frame_indices, loaded.frames):
            ref.seek(idx)
            assert np.abs(np.asarray(ref.convert("RGB"), np.int16) - frame).max() <= 1


def test_short_animation_keeps_every_frame() -> None:
    loaded = load_image(_animation("GIF", 3), max_frames=16)
    assert loaded.frame_indices == (0, 1, 2)
    with pytest.raises(ImageTooLargeError, match="more than 1 distinct frames"):
        load_image(_animation("GIF", 5), max_frames=1)


def test_repeated_frames_are_scored_once() -> None:
    a, b = shapes(64, 64, seed=1), shapes(64, 64, seed=2)
    frames = [Image.fromarray(x) for x in (a, b, a, b, a)]
    data = encode(frames[0], "PNG", save_all=True, append_images=frames[1:], duration=[0, 60_000, 0, 10, 0])
    loaded = load_image(data, max_frames=2)
    assert loaded.n_frames == 5 and loaded.frame_indices == (0, 1)


def test_caller_pil_animation_keeps_its_frame() -> None:
    img = Image.open(io.BytesIO(_animation("GIF", 10)))
    img.seek(4)
    load_image(img)
    assert img.tell() == 4


def test_animation_over_the_frame_cap_is_refused_quickly() -> None:
    data = _gif_many_frames(MAX_ANIMATION_FRAMES + 10)
    start = time.perf_counter()
    with pytest.raises(ImageTooLargeError, match="frames"):
        load_image(data)
    assert time.perf_counter() - start < 1.0


def test_animation_over_the_decoded_pixel_budget_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(imageio, "MAX_DECODED_PIXELS", 64 * 64 * 10)
    with pytest.raises(ImageTooLargeError, match="decoded pixels"):
        load_image(_animation("GIF", 11))
    assert load_image(_animation("GIF", 9)).n_frames == 9


def test_gif_frame_counter() -> None:
    assert count_gif_frames(_gif_many_frames(7), cap=100) == 7
    assert count_gif_frames(_gif_many_frames(500), cap=100) == 101
    assert count_gif_frames(_animation("GIF", 12), cap=100) == 12
    assert count_gif_frames(b"GIF89a", cap=5) == 0 and count_gif_frames(b"\x89PNG", cap=5) == 0


# ----------------------------------------------------------------- refusals
@pytest.mark.parametrize(("w", "h"), [(100_000, 100_000), (8000, 8000), (50_000, 1001)])
def test_decompression_bomb_is_refused_from_the_header(w: int, h: int) -> None:
    bomb = raw_png(w, h, 8, 2, b"\x00")  # a valid header over a few bytes of data
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(ImageTooLargeError, match="pixels"):
            load_image(bomb)
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert elapsed < 1.0
    assert peak < 8 * 1024 * 1024  # the pixels (>= 150 MB) were never allocated


def test_pixel_limit_applies_to_arrays_and_pil_images() -> None:
    with pytest.raises(ImageTooLargeError):
        load_image(np.zeros((10, 11, 3), np.uint8), max_pixels=100)
    with pytest.raises(ImageTooLargeError):
        load_image(Image.new("RGB", (11, 10)), max_pixels=100)


def test_byte_limit_is_checked_before_reading(tmp_path: Path) -> None:
    data = encode(Image.fromarray(RGB), "PNG")
    path = tmp_path / "big.png"
    path.write_bytes(data)
    for source in (data, path, io.BytesIO(data)):
        with pytest.raises(ImageTooLargeError, match="bytes"):
            load_image(source, max_bytes=len(data) - 1)
        assert load_image(source if not isinstance(source, io.BytesIO) else io.BytesIO(data), max_bytes=len(data)).size == (96, 64)


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (b"%PDF-1.7\n", "PDF"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "SVG"),
        (b"8BPS\x00\x01" + b"\x00" * 40, "PSD"),
        (b"\x00\x00\x00\x18ftypheic" + b"\x00" * 20, "HEIC"),
        (b"\x00\x00\x00\x1cftypavif" + b"\x00" * 20, "AVIF"),
        (b"\x00\x00\x00\x0cjP  \r\n\x87\n" + b"\x00" * 20, "JPEG 2000"),
        (b"%!PS-Adobe-3.0 EPSF-3.0\n", "EPS"),
    ],
)
def test_other_formats_are_named_and_refused(data: bytes, name: str) -> None:
    with pytest.raises(UnsupportedFormatError, match=name):
        load_image(data)


def test_formats_genguard_does_not_list_are_never_decoded() -> None:
    tga = encode(Image.fromarray(RGB), "TGA")  # Pillow can read it, genguard does not accept it
    with pytest.raises(ImageLoadError, match="not a recognised image"):
        load_image(tga)
    assert sniff_unsupported(encode(Image.fromarray(RGB), "PNG")) is None


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00", b"hello world", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"\xff\xd8\xff", b"<html></html>"],
)
def test_garbage_raises_image_load_error(data: bytes) -> None:
    with pytest.raises(ImageLoadError):
        load_image(data)


# ------------------------------------------------------------- input kinds
def test_input_kinds_give_the_same_pixels(tmp_path: Path) -> None:
    data = encode(Image.fromarray(RGB), "PNG")
    path = tmp_path / "a.png"
    path.write_bytes(data)
    ref = load_image(RGB).frames[0]
    for source in (data, bytearray(data), memoryview(data), path, str(path), io.BytesIO(data), Image.fromarray(RGB)):
        assert np.array_equal(load_image(source).frames[0], ref)


def test_caller_array_is_not_modified() -> None:
    arr = shapes()
    before = arr.copy()
    out = load_image(arr).frames[0]
    assert np.array_equal(arr, before) and not out.flags.writeable


@pytest.mark.parametrize(
    "array",
    [np.zeros((4, 4, 3), np.float32), np.zeros((4, 4, 2), np.uint8), np.zeros((4,), np.uint8), np.zeros((0, 4, 3), np.uint8)],
)
def test_bad_arrays_raise_image_load_error(array: np.ndarray) -> None:
    with pytest.raises(ImageLoadError):
        load_image(array)


def test_bad_paths_and_types(tmp_path: Path) -> None:
    with pytest.raises(ImageLoadError, match="directory"):
        load_image(tmp_path)
    with pytest.raises(ImageLoadError, match="could not read"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(TypeError):
        load_image(12345)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="binary"):
        load_image(io.StringIO("text"))  # type: ignore[arg-type]


def test_errors_are_chained_and_typed() -> None:
    data = encode(Image.fromarray(RGB), "PNG")
    with pytest.raises(ImageLoadError) as info:
        load_image(data[: len(data) // 2])
    assert isinstance(info.value, GenguardError) and isinstance(info.value, ValueError)
    assert info.value.__cause__ is not None


def test_sha256_of_each_input_kind(tmp_path: Path) -> None:
    """The digest the audit log records: encoded bytes for files/bytes/streams, pixel bytes for arrays/PIL."""
    import hashlib

    from genguard.imageio import load_image as load

    arr = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    Image.fromarray(arr).save(tmp_path / "c.png")
    data = (tmp_path / "c.png").read_bytes()
    want = hashlib.sha256(data).hexdigest()
    assert load(tmp_path / "c.png").sha256 == load(data).sha256 == want
    with open(tmp_path / "c.png", "rb") as stream:
        assert load(stream).sha256 == want
    assert load(arr).sha256 == hashlib.sha256(arr.tobytes()).hexdigest()
    assert load(Image.fromarray(arr)).sha256 == hashlib.sha256(Image.fromarray(arr).tobytes()).hexdigest()


def test_tiff_pages_of_growing_size_are_counted_as_walked(monkeypatch: pytest.MonkeyPatch) -> None:
    """A small first page must not hide large later ones from the frames x pixels limit."""
    monkeypatch.setattr(imageio, "MAX_DECODED_PIXELS", 64 * 64 * 5)
    pages = [Image.new("RGB", (1, 1))] + [Image.fromarray(shapes(64, 64, seed=i)) for i in range(10)]
    data = encode(pages[0], "TIFF", save_all=True, append_images=pages[1:])
    with pytest.raises(ImageTooLargeError, match="walk over"):
        load_image(data, max_frames=16)


def test_large_frames_are_shrunk_to_the_analysis_size_and_16_bit_keeps_its_range() -> None:
    big = Image.fromarray(np.full((4200, 4300), 65535, np.uint16))
    loaded = load_image(big)
    assert loaded.size == (2150, 2100) and int(loaded.frames[0].min()) == 255
    rgba = np.zeros((4100, 4100, 4), np.uint8)
    rgba[..., 3] = 255
    assert load_image(rgba[..., :3]).size == (4100, 4100)  # an RGB array is used as it is, never copied
    assert load_image(rgba).size == load_image(encode(Image.fromarray(rgba, "RGBA"), "PNG")).size == (2050, 2050)
