"""Generate the hostile-input corpus: broken, hostile and unusual image files, all benign.

Every file is built here from shapes, gradients and noise (never committed), and
``manifest.json`` beside them records what genguard must do with each:

- ``ok``: a valid but unusual image; it must load (``size``, ``n_frames`` and
  ``frames`` given when they are checked) and be allowed, with no error;
- ``load``: unreadable (empty, truncated, corrupt, not an image): ``ImageLoadError``;
- ``too_large``: refused before decoding: ``ImageTooLargeError``;
- ``unsupported``: another format (PDF, SVG, PSD, HEIC, ...): ``UnsupportedFormatError``;
- ``either``: damage a decoder may or may not notice (e.g. garbage inside JPEG
  scan data): a normal verdict or an error verdict, never a crash;
- ``listed``: an attacker's file (``adv_*``, issue 14) that shows the benign
  :func:`listed_picture` to a person while hiding it from a naive loader: in the
  alpha channel, under alpha 0 or 1, in one frame of 40 (shown for a minute or for
  0 ms), on one page of a TIFF. It must load, and a Guard whose blocklist holds the
  picture's PDQ hash must block it through a ``hash_match`` (``frame`` and ``view``
  say where). Other ``adv_*`` files are ``too_large``: they must be refused.

Every file has an image suffix, so a folder walk (``genguard classify DIR``) sees
them all. Usage::

    python tests/make_corpus.py OUT_DIR
"""

from __future__ import annotations

import io
import json
import struct
import sys
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

__all__ = ["EXPECTATIONS", "adversarial_entries", "build_corpus", "listed_picture"]

EXPECTATIONS = ("ok", "load", "too_large", "unsupported", "either", "listed")
_MAX_BYTES = 64 * 1024 * 1024  # genguard.imageio.loader.MAX_BYTES, kept literal so the script stands alone


# ------------------------------------------------------------- benign pixels
def shapes(w: int = 96, h: int = 64, seed: int = 0) -> np.ndarray:
    """An RGB picture of a gradient with a disc, a bar and some noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w, 3), np.float64)
    img[..., 0] = 255 * x / max(w - 1, 1)
    img[..., 1] = 255 * y / max(h - 1, 1)
    img[..., 2] = 128
    disc = (x - w * 0.6) ** 2 + (y - h * 0.5) ** 2 < (min(w, h) * 0.25) ** 2
    img[disc] = (230, 200, 40)
    img[int(h * 0.1) : int(h * 0.25), int(w * 0.1) : int(w * 0.4)] = (20, 60, 200)
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def encode(img: Image.Image, fmt: str, **kw: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _chunk(ctype: bytes, body: bytes, crc: int | None = None) -> bytes:
    c = zlib.crc32(ctype + body) if crc is None else crc
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", c & 0xFFFFFFFF)


def raw_png(w: int, h: int, bit_depth: int, color_type: int, rows: bytes, ihdr_crc: int | None = None) -> bytes:
    """A PNG written by hand (for 16-bit RGB, which Pillow cannot save, and for header tricks)."""
    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr, ihdr_crc) + _chunk(b"IDAT", zlib.compress(rows)) + _chunk(b"IEND", b"")


def _animation(fmt: str, n: int, size: int = 64, **kw: Any) -> bytes:
    frames = []
    for i in range(n):
        a = shapes(size, size, seed=i)
        a[:, : (i * size) // n] = (i * 5 % 255, 90, 160)  # a bar that grows: every frame differs
        frames.append(Image.fromarray(a))
    return encode(frames[0], fmt, save_all=True, append_images=frames[1:], **kw)


def _patch(data: bytes, offset: int, new: bytes) -> bytes:
    return data[:offset] + new + data[offset + len(new) :]


def _jpeg_with_size(w: int, h: int) -> bytes:
    data = encode(Image.fromarray(shapes(32, 32)), "JPEG")
    sof = data.index(b"\xff\xc0")
    return _patch(data, sof + 5, struct.pack(">HH", h, w))


def _exif_rotated() -> bytes:
    a = np.zeros((20, 40, 3), np.uint8)  # stored 40 wide x 20 high, a red block at the top left
    a[:, :] = (0, 0, 255)
    a[:8, :8] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 clockwise on display: shows 20 wide x 40 high, red block at top right
    return encode(Image.fromarray(a), "JPEG", exif=exif.tobytes(), quality=95)


def _gif_many_frames(n: int) -> bytes:
    header = bytes.fromhex("47494638396101000100800000000000ffffff")
    frame = bytes.fromhex("2c00000000010001000008040001040400")
    return header + frame * n + b";"


def _modes() -> dict[str, tuple[bytes, dict[str, Any]]]:
    rgb = Image.fromarray(shapes())
    out: dict[str, tuple[bytes, dict[str, Any]]] = {}
    out["mode_1.png"] = (encode(rgb.convert("1"), "PNG"), {})
    out["mode_L.png"] = (encode(rgb.convert("L"), "PNG"), {})
    la = rgb.convert("LA")
    la.putalpha(Image.linear_gradient("L").resize(rgb.size))
    out["mode_LA.png"] = (encode(la, "PNG"), {})
    out["mode_P.png"] = (encode(rgb.convert("P", palette=Image.Palette.ADAPTIVE), "PNG"), {})
    out["mode_P_transparency.png"] = (encode(rgb.convert("P", palette=Image.Palette.ADAPTIVE), "PNG", transparency=0), {})
    out["mode_P_transparency.gif"] = (encode(rgb.convert("P", palette=Image.Palette.ADAPTIVE), "GIF", transparency=3), {})
    rgba = rgb.convert("RGBA")
    rgba.putalpha(128)
    out["mode_RGBA.png"] = (encode(rgba, "PNG"), {})
    out["mode_RGBA.webp"] = (encode(rgba, "WEBP", lossless=True), {})
    out["mode_CMYK.jpg"] = (encode(rgb.convert("CMYK"), "JPEG"), {})
    out["mode_CMYK.tif"] = (encode(rgb.convert("CMYK"), "TIFF"), {})
    ramp = (np.linspace(0, 65535, 96 * 64).reshape(64, 96)).astype(np.uint16)
    out["mode_I16.png"] = (encode(Image.fromarray(ramp), "PNG"), {})
    out["mode_I.tif"] = (encode(Image.fromarray(ramp.astype(np.int32) * 1000 - 5_000_000, mode="I"), "TIFF"), {})
    out["mode_F.tif"] = (encode(Image.fromarray(ramp.astype(np.float32) / 65535.0, mode="F"), "TIFF"), {})
    rows16 = b"".join(b"\x00" + (np.full((96, 3), r * 1000, ">u2")).tobytes() for r in range(64))
    out["png16_rgb.png"] = (raw_png(96, 64, 16, 2, rows16), {})
    out["mode_RGB.bmp"] = (encode(rgb, "BMP"), {})
    out["mode_RGB.ppm"] = (encode(rgb, "PPM"), {})
    out["mode_RGB.ico"] = (encode(rgb.resize((64, 64)), "ICO"), {"size": [64, 64]})
    out["progressive.jpg"] = (encode(rgb, "JPEG", progressive=True), {})
    out["interlaced.png"] = (raw_png(2, 2, 8, 0, b"\x00\x10\x20\x00\x30\x40"), {"size": [2, 2]})
    return out


# ------------------------------------------------------------- adversarial
def listed_picture(side: int = 256) -> np.ndarray:
    """The benign "listed" picture of the adversarial files: discs, bars and a gradient with texture (PDQ quality well over 50)."""
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:side, 0:side]
    img = np.zeros((side, side, 3), np.float64)
    img[..., 0] = 255 * x / (side - 1)
    img[..., 1] = 255 * (1 - y / (side - 1))
    img[..., 2] = 127 + 100 * np.sin(x / 9.0) * np.cos(y / 13.0)
    for cx, cy, r, colour in ((0.3, 0.3, 0.18, (240, 220, 30)), (0.7, 0.6, 0.22, (20, 40, 200)), (0.45, 0.8, 0.12, (200, 30, 60))):
        img[(x - cx * side) ** 2 + (y - cy * side) ** 2 < (r * side) ** 2] = colour
    img[int(side * 0.05) : int(side * 0.15), int(side * 0.55) : int(side * 0.95)] = (10, 10, 10)
    img += rng.normal(0, 4, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _decoys(n: int, side: int = 256) -> list[np.ndarray]:
    """``n`` near-identical benign frames: one flat picture, each with a different pixel set to grey."""
    base = np.zeros((side, side, 3), np.uint8)
    base[:, :] = (70, 120, 90)
    base[side // 4 : side // 2, side // 4 : side // 2] = (160, 110, 60)
    out = []
    for i in range(n):
        a = base.copy()
        a[i % side, (7 * i) % side] = (128, 128, 128)
        out.append(a)
    return out


def _frames_file(frames: list[np.ndarray], fmt: str, durations: list[int], **kw: Any) -> bytes:
    images = [Image.fromarray(f) for f in frames]
    if fmt == "GIF":
        images = [im.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE) for im in images]
    return encode(images[0], fmt, save_all=True, append_images=images[1:], duration=durations, **kw)


def adversarial_entries() -> dict[str, tuple[bytes, str, dict[str, Any]]]:
    """Files that hid the listed picture from genguard (issue 14): each must end blocked by the blocklist, or in error.

    ``listed``: blocked through a PDQ hash match on the listed picture (``listed_pdq`` in the manifest is
    made by the test from :func:`listed_picture`); ``too_large``: refused with ``ImageTooLargeError``.
    """
    pic = listed_picture()
    luma = np.asarray(Image.fromarray(pic).convert("L"))
    e: dict[str, tuple[bytes, str, dict[str, Any]]] = {}
    e["adv_listed_control.png"] = (encode(Image.fromarray(pic), "PNG"), "listed", {"view": ""})
    white = np.full(pic.shape, 255, np.uint8)
    e["adv_alpha_only.png"] = (encode(Image.fromarray(np.dstack([white, luma]), "RGBA"), "PNG"), "listed", {"view": "over_black"})
    e["adv_alpha_one.png"] = (encode(Image.fromarray(np.dstack([pic, np.ones_like(luma)]), "RGBA"), "PNG"), "listed", {"view": "colour"})
    e["adv_alpha_zero.webp"] = (encode(Image.fromarray(np.dstack([pic, np.zeros_like(luma)]), "RGBA"), "WEBP", lossless=True, exact=True),
                                "listed", {"view": "colour"})
    la = np.dstack([np.full(luma.shape, 255, np.uint8), luma])
    e["adv_alpha_only_la.png"] = (encode(Image.fromarray(la, "LA"), "PNG"), "listed", {"view": "over_black"})
    decoys = _decoys(40)
    for fmt, suffix in (("GIF", "gif"), ("PNG", "png"), ("WEBP", "webp")):
        frames = decoys[:1] + [pic] + decoys[2:]
        kw: dict[str, Any] = {"lossless": True} if fmt == "WEBP" else {}
        e[f"adv_frame1_of_40.{suffix}"] = (_frames_file(frames, fmt, [60_000 if i == 1 else 40 for i in range(40)], **kw),
                                          "listed", {"frame": 1})
        e[f"adv_frame39_0ms.{suffix}"] = (_frames_file(decoys[:39] + [pic], fmt, [40] * 39 + [0], **kw), "listed", {"frame": 39})
    pages = [Image.fromarray(f) for f in decoys[:1] + [pic] + decoys[2:40]]
    e["adv_page1_of_40.tif"] = (encode(pages[0], "TIFF", save_all=True, append_images=pages[1:]), "listed", {"frame": 1})
    rng = np.random.default_rng(3)
    noisy = [rng.integers(0, 256, (64, 64, 3), np.uint8) for _ in range(39)]
    e["adv_distinct_40.gif"] = (_frames_file(noisy[:1] + [pic[:64, :64]] + noisy[1:], "GIF", [40] * 40), "too_large", {})
    e["adv_gif_2000_frames.gif"] = (_gif_many_frames(2000), "too_large", {})
    return e


# ------------------------------------------------------------------ corpus
def _entries() -> dict[str, tuple[bytes, str, dict[str, Any]]]:
    rgb = Image.fromarray(shapes())
    jpeg, png, gif = encode(rgb, "JPEG", quality=90), encode(rgb, "PNG"), encode(rgb.convert("P"), "GIF")
    webp = encode(rgb, "WEBP")
    rng = np.random.default_rng(1)
    e: dict[str, tuple[bytes, str, dict[str, Any]]] = {}
    for name, (data, extra) in _modes().items():
        e[name] = (data, "ok", {"size": [96, 64], **extra})
    e["tiny_1x1.png"] = (encode(Image.new("RGB", (1, 1), (10, 200, 30)), "PNG"), "ok", {"size": [1, 1]})
    e["tall_1x20000.png"] = (encode(Image.fromarray(shapes(1, 20000)), "PNG"), "ok", {"size": [1, 20000]})
    e["wide_20000x1.png"] = (encode(Image.fromarray(shapes(20000, 1)), "PNG"), "ok", {"size": [20000, 1]})
    e["exif_rotated.jpg"] = (_exif_rotated(), "ok", {"size": [20, 40], "orientation": 6})
    e["animated_16.gif"] = (_animation("GIF", 16, duration=40), "ok", {"n_frames": 16, "frames": 16})
    e["animated_16.webp"] = (_animation("WEBP", 16, duration=40, lossless=True), "ok", {"n_frames": 16, "frames": 16})
    e["animated_16.png"] = (_animation("PNG", 16, duration=40), "ok", {"n_frames": 16, "frames": 16})
    # 40 distinct frames: more than MAX_FRAMES (16) distinct frames is refused, never sampled
    e["animated_40.gif"] = (_animation("GIF", 40, duration=40), "too_large", {"n_frames": 40})
    e["animated_40.webp"] = (_animation("WEBP", 40, duration=40, lossless=True), "too_large", {"n_frames": 40})
    e["animated_40.png"] = (_animation("PNG", 40, duration=40), "too_large", {"n_frames": 40})
    e["animated_3.gif"] = (_animation("GIF", 3), "ok", {"n_frames": 3, "frames": 3})
    e["png_named.jpg"] = (png, "ok", {"size": [96, 64]})
    e["gif_named.webp"] = (gif, "ok", {"size": [96, 64]})
    e["jpeg_named.png"] = (jpeg, "ok", {"size": [96, 64]})
    # unreadable
    e["empty.png"] = (b"", "load", {})
    e["random_4k.jpg"] = (rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(), "load", {})
    e["random_7.png"] = (rng.integers(0, 256, 7, dtype=np.uint8).tobytes(), "load", {})
    e["text.png"] = (b"This is a plain text file, not an image.\n" * 20, "load", {})
    e["html.jpg"] = (b"<!doctype html><html><body><img src='x.png'></body></html>\n", "load", {})
    e["json.gif"] = (b'{"image": "no", "pixels": [1, 2, 3]}', "load", {})
    e["truncated_half.jpg"] = (jpeg[: len(jpeg) // 2], "load", {})
    e["truncated_header.jpg"] = (jpeg[:20], "load", {})
    e["truncated_half.png"] = (png[: len(png) // 2], "load", {})
    e["truncated_header.png"] = (png[:30], "load", {})
    e["truncated_half.gif"] = (gif[: len(gif) // 2], "load", {})
    e["truncated_header.gif"] = (gif[:10], "load", {})
    e["truncated_half.webp"] = (webp[: len(webp) // 2], "load", {})
    e["png_bad_ihdr_crc.png"] = (raw_png(8, 8, 8, 0, b"\x00" * 72, ihdr_crc=0xDEADBEEF), "load", {})
    e["png_bad_idat.png"] = (_patch(png, png.index(b"IDAT") + 8, b"\xff" * 16), "load", {})
    e["png_zero_width.png"] = (raw_png(0, 8, 8, 0, b""), "load", {})
    e["gif_zero_screen.gif"] = (_patch(gif, 6, b"\x00\x00\x00\x00"), "either", {})  # Pillow may use the frame's size
    e["jpeg_scan_garbage.jpg"] = (_patch(jpeg, len(jpeg) - 200, rng.integers(0, 256, 100, dtype=np.uint8).tobytes()), "either", {})
    e["jpeg_no_eoi.jpg"] = (jpeg[:-2], "either", {})
    # refused before decoding
    e["bomb_png_100000x100000.png"] = (raw_png(100_000, 100_000, 8, 2, b"\x00"), "too_large", {"pixels": 10**10})
    e["bomb_png_8000x8000.png"] = (raw_png(8000, 8000, 8, 2, b"\x00"), "too_large", {"pixels": 64_000_000})
    e["bomb_jpeg_65000x65000.jpg"] = (_jpeg_with_size(65000, 65000), "too_large", {"pixels": 65000**2})
    e["bomb_gif_65535x65535.gif"] = (_patch(gif, 6, b"\xff\xff\xff\xff"), "too_large", {"pixels": 65535**2})
    e["gif_20000_frames.gif"] = (_gif_many_frames(20_000), "too_large", {})
    e["oversize.png"] = (png + b"\x00" * (_MAX_BYTES + 1 - len(png)), "too_large", {})
    # other formats
    e["document.pdf.png"] = (b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << >>\n%%EOF\n", "unsupported", {"format": "PDF"})
    e["drawing.svg.png"] = (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
                            b'<rect width="10" height="10" fill="red"/></svg>\n', "unsupported", {"format": "SVG"})
    e["layers.psd.png"] = (b"8BPS\x00\x01" + b"\x00" * 6 + struct.pack(">HIIHH", 3, 64, 96, 8, 3) + b"\x00" * 64, "unsupported", {"format": "PSD"})
    e["photo.heic.jpg"] = (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64, "unsupported", {"format": "HEIC"})
    e["photo.avif.png"] = (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf" + b"\x00" * 64, "unsupported", {"format": "AVIF"})
    e["scan.jp2.png"] = (b"\x00\x00\x00\x0cjP  \r\n\x87\n" + b"\x00" * 64, "unsupported", {"format": "JPEG 2000"})
    e["figure.eps.png"] = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "unsupported", {"format": "PostScript/EPS"})
    e["archive.zip.png"] = (b"PK\x03\x04" + b"\x00" * 60, "unsupported", {"format": "ZIP archive"})
    e.update(adversarial_entries())
    return e


def build_corpus(folder: str | Path) -> dict[str, dict[str, Any]]:
    """Write every corpus file and ``manifest.json`` into ``folder``; return the manifest.

    Parameters
    ----------
    folder : str or Path
        Created when missing.

    Returns
    -------
    dict
        File name -> ``{"expect": one of EXPECTATIONS, ...details}``.

    Examples
    --------
    >>> import tempfile
    >>> manifest = build_corpus(tempfile.mkdtemp())
    >>> len(manifest) >= 40
    True
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, dict[str, Any]] = {}
    for name, (data, expect, details) in sorted(_entries().items()):
        if expect not in EXPECTATIONS:
            raise ValueError(f"{name}: unknown expectation {expect!r}")
        (out / name).write_bytes(data)
        manifest[name] = {"expect": expect, "bytes": len(data), **details}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return manifest


def main(argv: list[str] | None = None, echo: Callable[[str], None] = print) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        echo("usage: python tests/make_corpus.py OUT_DIR")
        return 2
    manifest = build_corpus(args[0])
    counts: dict[str, int] = {}
    for entry in manifest.values():
        counts[entry["expect"]] = counts.get(entry["expect"], 0) + 1
    echo(f"wrote {len(manifest)} files to {args[0]}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
