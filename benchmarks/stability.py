"""How often the minor decision flips under everyday transformations.

A deterministic subset of UTKFace dev faces (read in place, never copied): one
face of every age present, then evenly spaced faces sorted by (age, name) up to
``--n``. Each face is scored as is and after each transformation:

- ``jpeg_q50``: re-encoded as JPEG at quality 50;
- ``half``: downscaled to half width and height (bicubic);
- ``hflip``: mirrored left to right;
- ``crop90``: the centre 90% (each side);
- ``gray``: a grayscale copy (as RGB).

The decision is ``minor >= policy.minor_threshold`` of the head in use (the
shipped one by default). Reported per transformation: the flip rate (all faces,
and among faces under and over 18), and the mean absolute change of the minor
score. ``--folder`` runs the same on any folder of images (e.g. the scene set);
ages are then unknown.

Run::

    python benchmarks/stability.py --n 1000 --out benchmarks/results/stability.json
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import UTKFACE, machine  # noqa: E402


def _jpeg50(img: Image.Image) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=50)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def _crop90(img: Image.Image) -> Image.Image:
    w, h = img.size
    dx, dy = round(w * 0.05), round(h * 0.05)
    return img.crop((dx, dy, w - dx, h - dy))


TRANSFORMS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "jpeg_q50": _jpeg50,
    "half": lambda im: im.resize((max(1, im.width // 2), max(1, im.height // 2)), Image.Resampling.BICUBIC),
    "hflip": lambda im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
    "crop90": _crop90,
    "gray": lambda im: im.convert("L").convert("RGB"),
}


def subset(n: int) -> list[tuple[Path, int | None]]:
    """``n`` UTKFace faces: one of every age, then evenly spaced over (age, name)."""
    from genguard.learn.datasets import parse_utkface_name

    faces = sorted(
        ((a[0], p) for p in UTKFACE.iterdir() if (a := parse_utkface_name(p.name)) is not None),
        key=lambda t: (t[0], t[1].name),
    )
    picked: dict[Path, int] = {}
    for age, p in faces:
        if age not in picked.values():
            picked[p] = age
    evenly = [int(k * len(faces) / n) for k in range(n)]
    for idx in evenly + list(range(len(faces))):  # evenly spaced, then the first unpicked ones to make up n
        if len(picked) >= n:
            break
        age, p = faces[idx]
        picked.setdefault(p, age)
    out = sorted(picked.items(), key=lambda t: (t[1], t[0].name))
    return [(p, a) for p, a in out][:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="faces in the UTKFace subset")
    parser.add_argument("--folder", type=Path, default=None, help="score these images instead (no ages)")
    parser.add_argument("--head", default=None, help="head (default: the shipped head)")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()

    from genguard import Guard
    from genguard.learn.datasets import iter_image_files

    guard = Guard(head=args.head)  # both scores for every image (the default)
    threshold = guard.policy.minor_threshold
    items = [(p, None) for p in iter_image_files(args.folder)][: args.n] if args.folder else subset(args.n)
    images = [Image.open(p).convert("RGB") for p, _ in items]
    ages = np.array([-1 if a is None else a for _, a in items])

    def minor_scores(imgs: list[Image.Image]) -> np.ndarray:
        return np.array([v.scores.minor for v in guard.classify_batch([np.asarray(i) for i in imgs])])

    t0 = time.perf_counter()
    base = minor_scores(images)
    results: dict[str, Any] = {
        "machine": machine(), "head": guard.head.identifier, "minor_threshold": threshold,
        "source": str(args.folder or "utkface dev"), "n": len(images),
        "n_minor": int(((ages >= 0) & (ages < 18)).sum()),
        "base_positive_rate": float(np.mean(base >= threshold)), "transforms": {},
    }
    print(f"head {guard.head.identifier}, minor_threshold {threshold}, {len(images)} images "
          f"({results['n_minor']} under 18), {np.mean(base >= threshold):.1%} decided minor as is")
    print(f"{'transform':10s} {'flips':>7s} {'<18':>7s} {'>=18':>7s} {'mean|d|':>8s}")
    for name, fn in TRANSFORMS.items():
        scores = minor_scores([fn(i) for i in images])
        flips = (scores >= threshold) != (base >= threshold)
        row = {
            "flip_rate": float(flips.mean()),
            "flip_rate_minor": float(flips[(ages >= 0) & (ages < 18)].mean()) if ((ages >= 0) & (ages < 18)).any() else None,
            "flip_rate_adult": float(flips[ages >= 18].mean()) if (ages >= 18).any() else None,
            "flips": int(flips.sum()),
            "mean_abs_change": float(np.abs(scores - base).mean()),
        }
        results["transforms"][name] = row
        fmt = lambda v: "   -   " if v is None else f"{v:7.2%}"  # noqa: E731
        print(f"{name:10s} {fmt(row['flip_rate'])} {fmt(row['flip_rate_minor'])} {fmt(row['flip_rate_adult'])} "
              f"{row['mean_abs_change']:8.4f}")
    results["seconds"] = time.perf_counter() - t0
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
