"""A deterministic scene set: faces pasted into benign backgrounds.

Generated images are whole scenes, not face crops. :func:`build_scenes` pastes
1-4 faces (from the *val* split of a UTKFace folder, so no training face is
reused) at sizes from 48 to 256 px onto benign backgrounds: scikit-image photos
without people, gradients, noise and textures. A scene is labelled minor when
any pasted face is under 18. It writes the images and a CSV manifest that
``genguard eval --data OUT/manifest.csv`` reads; :func:`face_recall` measures
how many pasted faces the backbone finds.

The scenes are derived from UTKFace (research-only licence): write them outside
the repository and never commit them.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
from PIL import Image

from genguard.learn.datasets import Record, load_utkface, split_of

__all__ = ["SCENE_SIZE", "build_scenes", "face_recall"]

logger = logging.getLogger(__name__)

SCENE_SIZE: Final = 1024
FACE_SIZES: Final = (48, 256)
_PHOTOS: Final = ("coffee", "chelsea", "rocket", "hubble_deep_field", "coins", "moon", "brick", "grass", "gravel", "colorwheel", "cell", "page")


def _backgrounds() -> list[np.ndarray]:
    from skimage import data

    out = []
    for name in _PHOTOS:
        img = np.asarray(getattr(data, name)())
        if img.ndim == 2:
            img = np.repeat(img[:, :, None], 3, axis=2)
        if img.dtype != np.uint8:
            img = (255 * (img.astype(np.float64) - img.min()) / max(float(img.max() - img.min()), 1e-9)).astype(np.uint8)
        out.append(np.asarray(Image.fromarray(img[:, :, :3]).resize((SCENE_SIZE, SCENE_SIZE), Image.Resampling.BILINEAR)))
    return out


def _synthetic_background(rng: np.random.Generator) -> np.ndarray:
    kind = rng.integers(3)
    yy, xx = np.mgrid[0:SCENE_SIZE, 0:SCENE_SIZE] / SCENE_SIZE
    if kind == 0:  # linear gradient between two colours
        c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        t = (xx * rng.random() + yy * (1 - rng.random()))[:, :, None]
        img = c0 * (1 - t / t.max()) + c1 * (t / t.max())
    elif kind == 1:  # smooth noise
        small = rng.integers(0, 256, (16, 16, 3)).astype(np.uint8)
        img = np.asarray(Image.fromarray(small).resize((SCENE_SIZE, SCENE_SIZE), Image.Resampling.BICUBIC), dtype=np.float64)
    else:  # stripes texture
        f = rng.uniform(4, 40)
        s = 0.5 + 0.5 * np.sin(2 * np.pi * f * (xx + yy * rng.random()))
        img = s[:, :, None] * rng.integers(0, 256, 3) + (1 - s[:, :, None]) * rng.integers(0, 256, 3)
    out: np.ndarray = np.clip(img, 0, 255).astype(np.uint8)
    return out


def build_scenes(
    faces_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    n: int = 400,
    seed: int = 0,
    split: str = "val",
) -> Path:
    """Write ``n`` scenes and ``OUT/manifest.csv``; returns the manifest path.

    Half the scenes hold at least one face under 18; the other half only adults.
    The same arguments always give the same scenes.
    """
    rng = np.random.default_rng(seed)
    records = [r for r in load_utkface(faces_dir) if split == "all" or split_of(r.path) == split]
    minors = [r for r in records if r.minor == 1]
    adults = [r for r in records if r.minor == 0]
    if not minors or not adults:
        raise ValueError(f"{faces_dir} ({split} split) needs both minors and adults to build scenes")
    photos = _backgrounds()
    outdir = Path(out)
    outdir.mkdir(parents=True, exist_ok=True)
    manifest = outdir / "manifest.csv"
    with manifest.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "minor", "sexual", "n_faces", "faces"])
        for i in range(n):
            want_minor = i % 2 == 0
            k = int(rng.integers(1, 5))
            chosen: list[Record] = [minors[rng.integers(len(minors))]] if want_minor else []
            while len(chosen) < k:
                pool = records if want_minor else adults
                chosen.append(pool[rng.integers(len(pool))])
            bg = photos[rng.integers(len(photos))] if rng.random() < 0.6 else _synthetic_background(rng)
            scene, boxes = _paste(bg.copy(), chosen, rng)
            name = f"scene_{i:05d}.jpg"
            Image.fromarray(scene).save(outdir / name, quality=92)
            faces = [{"box": b, "age": r.age, "px": b[2] - b[0]} for b, r in zip(boxes, chosen)]
            writer.writerow([name, int(any(r.minor for r in chosen)), 0, len(chosen), json.dumps(faces)])
    logger.info("wrote %d scenes to %s", n, outdir)
    return manifest


def _paste(scene: np.ndarray, faces: Sequence[Record], rng: np.random.Generator) -> tuple[np.ndarray, list[list[int]]]:
    """Paste faces without overlap (best effort); returns the scene and each face chip's box."""
    boxes: list[list[int]] = []
    for r in faces:
        size = int(rng.integers(FACE_SIZES[0], FACE_SIZES[1] + 1))
        chip = np.asarray(Image.open(r.path).convert("RGB").resize((size, size), Image.Resampling.BILINEAR))
        for _ in range(50):
            x, y = int(rng.integers(0, SCENE_SIZE - size)), int(rng.integers(0, SCENE_SIZE - size))
            if all(x + size <= b[0] or b[2] <= x or y + size <= b[1] or b[3] <= y for b in boxes):
                break
        scene[y : y + size, x : x + size] = chip
        boxes.append([x, y, x + size, y + size])
    return scene, boxes


def face_recall(
    manifest: str | os.PathLike[str], embed: Callable[[Path], Any], *, limit: int | None = None
) -> dict[str, Any]:
    """Fraction of pasted faces found: a found box whose centre lies in a pasted chip counts as a hit.

    ``embed`` maps an image path to its :class:`~genguard.embedders.ImageEmbedding` list (e.g. ``guard.embed``).
    Returns overall recall and recall by pasted size (48-95, 96-159, 160-256 px).
    """
    manifest = Path(manifest)
    hits: dict[str, list[int]] = {"48-95": [], "96-159": [], "160-256": []}
    with manifest.open(newline="") as fh:
        rows = list(csv.DictReader(fh))[:limit]
    for row in rows:
        found = [f.box for e in embed(manifest.parent / row["path"]) for f in e.faces]
        for face in json.loads(row["faces"]):
            x0, y0, x1, y1 = face["box"]
            hit = any(x0 <= (b[0] + b[2]) / 2 <= x1 and y0 <= (b[1] + b[3]) / 2 <= y1 for b in found)
            band = "48-95" if face["px"] < 96 else "96-159" if face["px"] < 160 else "160-256"
            hits[band].append(int(hit))
    every = [h for v in hits.values() for h in v]
    return {
        "scenes": len(rows),
        "faces": len(every),
        "face_recall": float(np.mean(every)) if every else None,
        "face_recall_by_size": {k: (float(np.mean(v)) if v else None) for k, v in hits.items()},
    }
