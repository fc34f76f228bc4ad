"""Byte-level checks the loader makes before handing data to Pillow.

Two pure functions, both bounded in time by the size of their input:

- :func:`sniff_unsupported` names a known image or document format that genguard
  does not decode, from its magic bytes, so the error can say what it was;
- :func:`count_gif_frames` counts a GIF's frames by walking its block structure,
  stopping at a cap, so a file of millions of tiny frames is refused in
  milliseconds instead of being walked by Pillow.

>>> sniff_unsupported(b"%PDF-1.7 ...")
'PDF'
>>> sniff_unsupported(b"\\x89PNG\\r\\n\\x1a\\n") is None
True
"""

from __future__ import annotations

from typing import Final

__all__ = ["count_gif_frames", "sniff_unsupported"]

_MAGIC: Final = (
    (b"%PDF", "PDF"),
    (b"8BPS", "PSD (Photoshop)"),
    (b"%!PS", "PostScript/EPS"),
    (b"\xc5\xd0\xd3\xc6", "EPS (binary)"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000 codestream"),
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n", "JPEG XL"),
    (b"\xff\x0a", "JPEG XL codestream"),
    (b"gimp xcf", "XCF (GIMP)"),
    (b"v/1\x01", "OpenEXR"),
    (b"DDS ", "DDS"),
    (b"icns", "ICNS"),
    (b"qoif", "QOI"),
    (b"#?RADIANCE", "Radiance HDR"),
    (b"SIMPLE  =", "FITS"),
    (b"\x01\xda", "SGI"),
    (b"\xd7\xcd\xc6\x9a", "WMF"),
    (b"\x1a\x45\xdf\xa3", "Matroska/WebM video"),
    (b"PK\x03\x04", "ZIP archive"),
    (b"\x1f\x8b", "gzip archive"),
)
_FTYP_BRANDS: Final = {
    b"heic": "HEIC", b"heix": "HEIC", b"hevc": "HEIC", b"heim": "HEIC", b"heis": "HEIC",
    b"mif1": "HEIF", b"msf1": "HEIF", b"avif": "AVIF", b"avis": "AVIF",
}


def sniff_unsupported(data: bytes) -> str | None:
    """Name the unsupported format of ``data`` from its first bytes, or None when it is not one genguard knows.

    Parameters
    ----------
    data : bytes
        The start of the encoded input (the first 512 bytes are enough).

    Returns
    -------
    str or None
        A human-readable format name such as ``"PDF"``, ``"SVG"`` or ``"HEIC"``.

    Examples
    --------
    >>> sniff_unsupported(b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>')
    'SVG'
    """
    head = data[:512]
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        return _FTYP_BRANDS.get(brand, f"ISO media ({brand.decode('latin-1').strip() or '?'})")
    if len(head) >= 132 and data[128:132] == b"DICM":
        return "DICOM"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith(b"<svg") or (text.startswith(b"<?xml") and b"<svg" in text):
        return "SVG"
    return None


def count_gif_frames(data: bytes, cap: int) -> int:
    """Count the image blocks of a GIF, stopping as soon as the count passes ``cap``.

    Walks only block headers and sub-block lengths, so the cost is bounded by the
    file size and never decodes pixels. A malformed stream ends the count where it
    breaks (Pillow then reports the damage when it decodes).

    Parameters
    ----------
    data : bytes
        A whole GIF file.
    cap : int
        Stop counting at ``cap + 1``.

    Returns
    -------
    int
        The number of frames, or ``cap + 1`` when there are more than ``cap``.

    Examples
    --------
    >>> tiny = bytes.fromhex("47494638396101000100800000000000ffffff")
    >>> frame = bytes.fromhex("2c00000000010001000008040001040400")
    >>> count_gif_frames(tiny + frame * 3 + b";", cap=10), count_gif_frames(tiny + frame * 30 + b";", cap=10)
    (3, 11)
    """
    n = len(data)
    if n < 13 or data[:3] != b"GIF":
        return 0
    pos = 13
    flags = data[10]
    if flags & 0x80:
        pos += 3 * (2 << (flags & 0x07))
    frames = 0
    while pos < n:
        block = data[pos]
        if block == 0x3B:  # trailer
            break
        if block == 0x21:  # extension: label, then sub-blocks
            pos = _skip_sub_blocks(data, pos + 2)
        elif block == 0x2C:  # image descriptor: 10 bytes, optional local table, LZW size, sub-blocks
            if pos + 10 > n:
                break
            local = data[pos + 9]
            pos += 10
            if local & 0x80:
                pos += 3 * (2 << (local & 0x07))
            pos = _skip_sub_blocks(data, pos + 1)
            frames += 1
            if frames > cap:
                return cap + 1
        else:
            break
    return frames


def _skip_sub_blocks(data: bytes, pos: int) -> int:
    n = len(data)
    while pos < n:
        size = data[pos]
        pos += 1 + size
        if size == 0:
            break
    return pos
