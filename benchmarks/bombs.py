"""Peak memory and time per image for the small-file bombs of issue 14, through genguard's loader and PDQ hashes.

Files (benign, built here in a temporary folder, never committed):

- ``png-7000-rgba``: a 7000 x 7000 RGBA PNG of a smooth gradient (about 200 KB);
- ``apng-8``: an 8-frame 4000 x 4000 RGBA APNG (about 80 KB): over the frame-pixel limit, refused;
- ``apng-8-3000``: the same at 3000 x 3000 (decoded, every frame kept);
- ``gif-9999``: a 9,999-frame GIF of 16 x 16 noise tiles on a 256 x 256 screen (about 3 MB):
  refused from its block count;
- ``gif-1000-same``: 1,000 frames of a 256 x 256 grey ramp, each with one pixel 30 levels off
  (walked to the end, near-identical frames scored once);
- ``gif-1000-distinct``: 1,000 frames of 64 x 64 noise (refused at the 17th distinct frame);
- ``jpeg-8000``: an 8000 x 6000 JPEG (decoded reduced, Pillow's draft mode).

Each file is loaded in a fresh child process that has imported genguard, numpy and Pillow; the child
reports the wall and CPU time of ``load_image`` plus the PDQ hash of every scored view (what a Guard with
a blocklist does before any model runs), and its peak RSS (``VmHWM``, reset through ``/proc/self/clear_refs``
just before the load) less its RSS then: the figure per image is the rise over that baseline (Linux only). Targets (issue 14): at most 400 MB and
2 s per image. A refusal (``ImageTooLargeError``) counts as done: the image fails closed.

Run::

    python benchmarks/bombs.py                  # prints a table
    python benchmarks/bombs.py --out benchmarks/results/bombs.json
    PYTHONPATH=OLD/src python benchmarks/bombs.py     # the same files through another checkout
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

_CHILD = r"""
import json, sys, time
import numpy as np, PIL.Image
from genguard.imageio import load_image
from genguard.defences.blocklist import pdq_hash
from genguard.errors import GenguardError
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak (VmHWM) to the current RSS
before = status("VmRSS")
t, c = time.perf_counter(), time.process_time()
try:
    loaded = load_image(sys.argv[1])
    hashes = [pdq_hash(f) for f in loaded.frames]
    distinct = len(set(loaded.frame_indices))  # also on checkouts older than the views
    outcome = f"{distinct} frame(s), {len(loaded.frames)} view(s), {loaded.size[0]}x{loaded.size[1]}"
except GenguardError as exc:
    outcome = f"refused: {type(exc).__name__}: {exc}"
wall, cpu = time.perf_counter() - t, time.process_time() - c
after = status("VmHWM")
print(json.dumps({"wall_s": wall, "cpu_s": cpu, "rss_before_mb": before, "rss_peak_mb": after,
                  "rss_rise_mb": after - before, "outcome": outcome}))
"""


def _gradient(w: int, h: int, alpha: bool) -> np.ndarray:
    x = np.arange(w, dtype=np.uint16)
    y = np.arange(h, dtype=np.uint16)[:, None]
    img = np.empty((h, w, 4 if alpha else 3), np.uint8)
    img[..., 0] = (x % 256).astype(np.uint8)
    img[..., 1] = (y % 256).astype(np.uint8)
    img[..., 2] = ((x[None, :] + y) % 256).astype(np.uint8)
    if alpha:
        img[..., 3] = 255
        img[h // 3 : h // 2, w // 3 : w // 2, 3] = 40
    return img


def _tiled_gif(rng: np.random.Generator, n: int) -> bytes:
    """A GIF89a of ``n`` 16x16 noise tiles (8-bit codes, no compression to speak of) on a 256x256 screen."""
    out = bytearray(b"GIF89a" + (256).to_bytes(2, "little") * 2 + bytes([0xF7, 0, 0]))
    out += rng.integers(0, 256, 768, dtype=np.uint8).tobytes()
    for i in range(n):
        x, y = 16 * (i % 16), 16 * ((i // 16) % 16)
        out += b"," + x.to_bytes(2, "little") + y.to_bytes(2, "little") + (16).to_bytes(2, "little") * 2 + b"\x00"
        out += b"\x08" + _lzw_uncompressed(rng.integers(0, 256, 256, dtype=np.uint8).tobytes()) + b"\x00"
    return bytes(out + b";")


def _lzw_uncompressed(pixels: bytes) -> bytes:
    """8-bit GIF LZW data that never grows its dictionary: 9-bit codes, a clear code every 254 pixels."""
    codes: list[int] = []
    for start in range(0, len(pixels), 254):
        codes.append(256)
        codes.extend(pixels[start : start + 254])
    codes.append(257)
    bits, nbits, out = 0, 0, bytearray()
    for c in codes:
        bits |= c << nbits
        nbits += 9
        while nbits >= 8:
            out.append(bits & 0xFF)
            bits >>= 8
            nbits -= 8
    if nbits:
        out.append(bits & 0xFF)
    return b"".join(bytes([len(out[i : i + 255])]) + out[i : i + 255] for i in range(0, len(out), 255))


def build(folder: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    p = folder / "png-7000-rgba.png"
    Image.fromarray(_gradient(7000, 7000, True), "RGBA").save(p, "PNG", compress_level=9)
    files["png-7000-rgba"] = p
    for side, name in ((4000, "apng-8"), (3000, "apng-8-3000")):
        base = _gradient(side, side, True)
        frames = []
        for i in range(8):
            a = base.copy()
            a[: 100 * (i + 1), :200, :3] = 30 * i
            frames.append(Image.fromarray(a, "RGBA"))
        p = folder / f"{name}.png"
        frames[0].save(p, "PNG", save_all=True, append_images=frames[1:], compress_level=9)
        files[name] = p
    rng = np.random.default_rng(0)
    p = folder / "gif-9999.gif"
    p.write_bytes(_tiled_gif(rng, 9999))
    files["gif-9999"] = p
    distinct = [Image.fromarray(rng.integers(0, 256, (64, 64, 3), np.uint8)).convert("P") for _ in range(1000)]
    p = folder / "gif-1000-distinct.gif"
    distinct[0].save(p, "GIF", save_all=True, append_images=distinct[1:], duration=20)
    files["gif-1000-distinct"] = p
    ramp = (np.add.outer(np.arange(256), np.arange(256)) // 2).astype(np.uint8)  # palette indices of a grey ramp
    grey = [v for i in range(256) for v in (i, i, i)]
    same = []
    for i in range(1000):
        a = ramp.copy()
        y, x = (7 * i) % 256, (13 * i) % 256
        a[y, x] = int(a[y, x]) + 30 if a[y, x] < 226 else int(a[y, x]) - 30  # one pixel, 30 levels off
        frame = Image.fromarray(a, "P")
        frame.putpalette(grey)
        same.append(frame)
    p = folder / "gif-1000-same.gif"
    same[0].save(p, "GIF", save_all=True, append_images=same[1:], duration=0, optimize=False)
    files["gif-1000-same"] = p
    p = folder / "jpeg-8000.jpg"
    Image.fromarray(_gradient(8000, 6000, False)).save(p, "JPEG", quality=85)
    files["jpeg-8000"] = p
    return files


def measure(path: Path) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", _CHILD, str(path)], capture_output=True, text=True, check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=None, help="write the figures as JSON here")
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in build(Path(tmp)).items():
            row = {"file": name, "bytes": path.stat().st_size, **measure(path)}
            row["within_targets"] = row["rss_rise_mb"] <= 400 and row["wall_s"] <= 2.0
            rows.append(row)
            print(f"{name:15} {row['bytes']:>9} B  wall {row['wall_s']:5.2f} s  cpu {row['cpu_s']:5.2f} s  "
                  f"RSS +{row['rss_rise_mb']:6.1f} MB (peak {row['rss_peak_mb']:6.1f})  {row['outcome'][:90]}", flush=True)
    result = {"load_avg": os.getloadavg(), "cpus": os.cpu_count(), "rows": rows}
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
