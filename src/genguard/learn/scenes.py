"""A deterministic scene set: faces pasted into benign backgrounds.

Generated images are whole scenes, not face crops. :func:`build_scenes` pastes
1-4 faces (from the *val* split of a UTKFace folder, so no training face is
reused) at sizes from 48 to 256 px onto benign backgrounds: scikit-image photos
without people, gradients, noise and textures. A scene is labelled minor when
any pasted face is under 18. It writes the images and a CSV manifest that
``genguard eval --data OUT/manifest.csv`` reads; :func:`face_recall` measures
how many pasted faces the backbone finds.

With ``hard=True`` every pasted face is also made harder to find, one way each
(:data:`HARD_KINDS`): rotated by up to 30 degrees, a third of it hidden behind a
flat block, blurred, at a third of its contrast, or, for a fifth of the scenes,
alone in a smaller frame with wide margins (a loosely cropped portrait, 256-640
px, the face 30-45% of its side).

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

__all__ = ["HARD_KINDS", "SCENE_SIZE", "build_scenes", "face_recall"]

logger = logging.getLogger(__name__)

SCENE_SIZE: Final = 1024
FACE_SIZES: Final = (48, 256)
HARD_KINDS: Final = ("rotated", "occluded", "blurred", "low_contrast", "margin")
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
    hard: bool = False,
) -> Path:
    """Write ``n`` scenes and ``OUT/manifest.csv``; returns the manifest path.

    Half the scenes hold at least one face under 18; the other half only adults.
    With ``hard``, each face is also made harder to find (see the module docstring;
    the manifest records each face's ``kind``). The same arguments always give the same scenes.
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
            kinds = [""] * len(chosen)
            if hard and rng.random() < 0.2:
                chosen, kinds = chosen[:1], ["margin"]
                scene, boxes = _portrait(bg, chosen[0], rng)
            else:
                if hard:
                    kinds = [HARD_KINDS[int(rng.integers(len(HARD_KINDS) - 1))] for _ in chosen]
                scene, boxes = _paste(bg.copy(), chosen, rng, kinds)
            name = f"scene_{i:05d}.jpg"
            Image.fromarray(scene).save(outdir / name, quality=92)
            faces = [{"box": b, "age": r.age, "px": b[2] - b[0], **({"kind": k} if k else {})} for b, r, k in zip(boxes, chosen, kinds)]
            writer.writerow([name, int(any(r.minor for r in chosen)), 0, len(chosen), json.dumps(faces)])
    logger.info("wrote %d scenes to %s", n, outdir)
    return manifest


def _harden(chip: Image.Image, kind: str, rng: np.random.Generator) -> Image.Image:
    """One face chip made harder to find, the ``kind`` way (an empty kind leaves it as it is)."""
    from PIL import ImageFilter

    if kind == "rotated":  # the corners it uncovers keep the chip's own mean colour
        fill = tuple(int(c) for c in np.asarray(chip).reshape(-1, 3).mean(axis=0))
        return chip.rotate(float(rng.uniform(12, 30)) * (1 if rng.random() < 0.5 else -1), resample=Image.Resampling.BILINEAR, fillcolor=fill)
    if kind == "occluded":  # a flat block over a third of the face: its top, bottom, left or right
        arr = np.asarray(chip).copy()
        s = arr.shape[0]
        cut = s // 3
        colour = rng.integers(0, 256, 3)
        side = int(rng.integers(4))
        region = [np.s_[: cut + s // 10, :], np.s_[s - cut :, :], np.s_[:, : cut], np.s_[:, s - cut :]][side]
        arr[region] = colour
        return Image.fromarray(arr)
    if kind == "blurred":
        return chip.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(1.0, 2.5)) * chip.width / 100))
    if kind == "low_contrast":
        arr = np.asarray(chip).astype(np.float32)
        return Image.fromarray(np.clip(arr.mean() + (arr - arr.mean()) * float(rng.uniform(0.25, 0.4)), 0, 255).astype(np.uint8))
    return chip


def _portrait(background: np.ndarray, r: Record, rng: np.random.Generator) -> tuple[np.ndarray, list[list[int]]]:
    """One face in a smaller frame with wide margins, cut from ``background``; returns it and the face chip's box."""
    side = int(rng.integers(256, 641))
    size = int(side * rng.uniform(0.3, 0.45))
    x0, y0 = (int(v) for v in rng.integers(0, SCENE_SIZE - side, 2))
    frame = background[y0 : y0 + side, x0 : x0 + side].copy()
    chip = np.asarray(Image.open(r.path).convert("RGB").resize((size, size), Image.Resampling.BILINEAR))
    x, y = (int(v) for v in rng.integers(0, side - size, 2))
    frame[y : y + size, x : x + size] = chip
    return frame, [[x, y, x + size, y + size]]


def _paste(
    scene: np.ndarray, faces: Sequence[Record], rng: np.random.Generator, kinds: Sequence[str] = ()
) -> tuple[np.ndarray, list[list[int]]]:
    """Paste faces without overlap (best effort); returns the scene and each face chip's box."""
    boxes: list[list[int]] = []
    for k, r in enumerate(faces):
        size = int(rng.integers(FACE_SIZES[0], FACE_SIZES[1] + 1))
        face = Image.open(r.path).convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
        chip = np.asarray(_harden(face, kinds[k], rng) if kinds else face)
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
    Returns overall recall, recall by pasted size (48-95, 96-159, 160-256 px; a "margin" portrait's face
    counts by its size too), and for hard scenes recall by kind.
    """
    manifest = Path(manifest)
    hits: dict[str, list[int]] = {"48-95": [], "96-159": [], "160-256": []}
    by_kind: dict[str, list[int]] = {}
    with manifest.open(newline="") as fh:
        rows = list(csv.DictReader(fh))[:limit]
    for row in rows:
        found = [f.box for e in embed(manifest.parent / row["path"]) for f in e.faces]
        for face in json.loads(row["faces"]):
            x0, y0, x1, y1 = face["box"]
            hit = any(x0 <= (b[0] + b[2]) / 2 <= x1 and y0 <= (b[1] + b[3]) / 2 <= y1 for b in found)
            band = "48-95" if face["px"] < 96 else "96-159" if face["px"] < 160 else "160-256"
            hits[band].append(int(hit))
            if "kind" in face:
                by_kind.setdefault(face["kind"], []).append(int(hit))
    every = [h for v in hits.values() for h in v]
    return {
        "scenes": len(rows),
        "faces": len(every),
        "face_recall": float(np.mean(every)) if every else None,
        "face_recall_by_size": {k: (float(np.mean(v)) if v else None) for k, v in hits.items()},
        **({"face_recall_by_kind": {k: float(np.mean(by_kind[k])) for k in HARD_KINDS if k in by_kind}} if by_kind else {}),
    }
