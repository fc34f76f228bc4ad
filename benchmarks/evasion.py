"""Minor recall under evasion: a child's face made small in a big scene, or tiled into a grid.

UTKFace faces aged <= 12 (read in place, never copied; a deterministic, evenly
spaced subset) are scored

- *clean*: the face image alone (the 200 px chip);
- *pasted*: resized to 48, 64 and 96 px and pasted at a seeded random place into
  a 1024x1024 benign background (scikit-image photos without people, and
  gradients);
- *grid*: 2x2 and 3x3 grids of child face images tiled into one image, as is
  (400 and 600 px) and shrunk to 512 px.

Recall is the share of images whose minor score reaches the shipped head's
``policy.minor_threshold``. Also reported: seconds per image for each condition,
and, on the backgrounds alone (no person; each also mirrored), the share of
scenes where a face was "found" and where the minor score reached the threshold
(false alarms the small-face pass could add).

Run::

    python benchmarks/evasion.py --n 120 --out benchmarks/results/evasion.json
    python benchmarks/evasion.py --n 120 --no-small-faces --out benchmarks/results/evasion_single_pass.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import UTKFACE, _scene, machine  # noqa: E402

BACKGROUNDS = ("coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina", "gradient")
PASTE_SIDES = (48, 64, 96)


def child_faces(n: int, max_age: int = 12) -> list[Path]:
    """``n`` evenly spaced UTKFace files (sorted by name) aged ``<= max_age``."""
    from genguard.learn.datasets import parse_utkface_name

    pool = [p for p in sorted(UTKFACE.iterdir()) if (a := parse_utkface_name(p.name)) is not None and a[0] <= max_age]
    if len(pool) < n:
        raise SystemExit(f"only {len(pool)} faces aged <= {max_age} in {UTKFACE}")
    return [pool[int(i * len(pool) / n)] for i in range(n)]


def background(name: str, size: int = 1024) -> Image.Image:
    if name == "gradient":
        y, x = np.mgrid[0:size, 0:size]
        rgb = np.stack([255 * x / size, 255 * y / size, 128 + 0 * x], axis=2).astype(np.uint8)
        return Image.fromarray(rgb)
    return _scene(name, size)


def pasted(face: Image.Image, side: int, i: int, rng: np.random.Generator) -> np.ndarray:
    bg = background(BACKGROUNDS[i % len(BACKGROUNDS)])
    x, y = (int(v) for v in rng.integers(0, 1024 - side, 2))
    bg.paste(face.resize((side, side), Image.Resampling.LANCZOS), (x, y))
    return np.asarray(bg)


def grid(faces: list[Image.Image], k: int, out_side: int | None) -> np.ndarray:
    cell = faces[0].size[0]
    canvas = Image.new("RGB", (k * cell, k * cell))
    for j, f in enumerate(faces[: k * k]):
        canvas.paste(f.resize((cell, cell)), ((j % k) * cell, (j // k) * cell))
    if out_side is not None:
        canvas = canvas.resize((out_side, out_side), Image.Resampling.LANCZOS)
    return np.asarray(canvas)


def conditions(paths: list[Path], seed: int) -> dict[str, list[np.ndarray]]:
    faces = [Image.open(p).convert("RGB") for p in paths]
    rng = np.random.default_rng(seed)
    scenes = [np.asarray(background(b)) for b in BACKGROUNDS]
    out: dict[str, list[np.ndarray]] = {"scenes_no_person": scenes + [s[:, ::-1] for s in scenes]}
    out["clean"] = [np.asarray(f) for f in faces]
    for side in PASTE_SIDES:
        out[f"pasted_{side}px"] = [pasted(f, side, i, rng) for i, f in enumerate(faces)]
    for k in (2, 3):
        groups = [[faces[(i + j) % len(faces)] for j in range(k * k)] for i in range(0, len(faces), k * k)]
        out[f"grid_{k}x{k}"] = [grid(g, k, None) for g in groups]
        out[f"grid_{k}x{k}_512px"] = [grid(g, k, 512) for g in groups]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=120, help="child faces (grids use them k*k at a time)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--head", default=None, help="head to evaluate (default: the shipped head)")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()

    from genguard import Guard

    guard = Guard(head=args.head)  # both scores for every image (the default)
    threshold = guard.policy.minor_threshold
    results: dict[str, Any] = {
        "machine": machine(), "head": guard.head.identifier, "minor_threshold": threshold,
        "n_faces": args.n, "seed": args.seed, "conditions": {},
    }
    print(f"head {guard.head.identifier}, minor_threshold {threshold}")
    print(f"{'condition':18s} {'images':>6s} {'recall':>7s} {'s/img':>6s}")
    for name, images in conditions(child_faces(args.n), args.seed).items():
        t0 = time.perf_counter()
        verdicts = guard.classify_batch(images)
        seconds = (time.perf_counter() - t0) / len(images)
        minors = [v.scores.minor for v in verdicts]
        recall = float(np.mean([m >= threshold for m in minors]))
        found = float(np.mean([any(r.code in ("face", "minor_face") for r in v.reasons) for v in verdicts]))
        results["conditions"][name] = {"images": len(images), "recall": recall, "face_found": found,
                                       "mean_minor": float(np.mean(minors)), "seconds_per_image": seconds}
        print(f"{name:18s} {len(images):6d} {recall:7.3f} {seconds:6.2f}  (a face found in {found:.0%})")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
