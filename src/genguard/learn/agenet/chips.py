"""The chip cache: the 64 px age chips the bundled pipeline cuts from each UTKFace image.

Two views of every image, both found and aligned by the bundled backbone's
:class:`~genguard.embedders.bundled.face_stage.FaceStage` (the code ``Guard.classify`` runs):

- ``native``: the image as the loader decodes it;
- ``scene``: the face resized (bilinear) to 48-256 px, pasted into a crop of a benign
  background (as :mod:`genguard.learn.scenes` builds its scenes), saved as JPEG q92 and decoded;
  the chip of the face whose centre lies in the pasted square is kept.

Each view is seeded by the file name, so the cache is the same on every run. Files
``part{K}.npz`` hold ``chips`` (uint8 ``[N, 2, 64, 64, 3]``), ``found`` (``[N, 2]``: 0 no face,
1 a face) and ``names``; they hold UTKFace pixels (research-only licence): keep them
outside the repository.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from genguard._types import Box, RGBArray

__all__ = ["build_chip_cache", "load_chip_cache", "pipeline_chips"]

logger = logging.getLogger(__name__)

VIEWS = ("native", "scene")


def face_stage(*, threads: int = 1) -> Any:
    """The bundled backbone's face stage with the settings ``BundledEmbedder`` uses by default (CPU)."""
    from genguard.embedders.bundled.embedder import BundledEmbedder
    from genguard.embedders.bundled.face_stage import FaceStage

    defaults = BundledEmbedder.__init__.__kwdefaults__ or {}
    return FaceStage(
        providers=["CPUExecutionProvider"], threads=threads, max_faces=defaults["max_faces"],
        min_face=defaults["min_face"], detect_max_side=defaults["detect_max_side"],
    )


def pipeline_chips(stage: Any, frame: RGBArray) -> list[tuple[Box, npt.NDArray[np.uint8]]]:
    """The faces ``stage`` (a :class:`FaceStage`) keeps in ``frame``, largest first, with their 64 px age chips."""
    return [(face.box, chip) for face, chip in stage.chips([frame])[0]]


def _seed(name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"agenet-scene:{name}".encode()).digest()[:8], "big")


def scene_view(path: Path, backgrounds: list[npt.NDArray[np.uint8]], rng: np.random.Generator) -> tuple[bytes, Box]:
    """JPEG bytes of the face at ``path`` pasted at 48-256 px into a background crop, and the pasted square."""
    from genguard.learn.scenes import _synthetic_background

    s = int(rng.integers(48, 257))
    face = np.asarray(Image.open(path).convert("RGB").resize((s, s), Image.Resampling.BILINEAR))
    margin = int(max(40, s * rng.uniform(0.3, 0.8)))
    c = s + 2 * margin
    if rng.random() < 0.6:
        bg = backgrounds[rng.integers(len(backgrounds))]
        x0, y0 = rng.integers(0, bg.shape[1] - c + 1), rng.integers(0, bg.shape[0] - c + 1)
        canvas = bg[y0 : y0 + c, x0 : x0 + c].copy()
    else:
        canvas = _synthetic_background(rng)[:c, :c].copy()
    ox, oy = int(rng.integers(0, 2 * margin + 1)), int(rng.integers(0, 2 * margin + 1))
    canvas[oy : oy + s, ox : ox + s] = face
    buf = io.BytesIO()
    Image.fromarray(canvas).save(buf, format="JPEG", quality=92)
    return buf.getvalue(), (ox, oy, ox + s, oy + s)


def _build_part(data: str, out: str, part: int, parts: int, limit: int | None) -> str:
    from genguard.imageio import load_image
    from genguard.learn.datasets import load_utkface
    from genguard.learn.scenes import _backgrounds

    records = load_utkface(data, limit=limit)[part::parts]
    stage = face_stage(threads=1)
    backgrounds = _backgrounds()
    chips = np.zeros((len(records), len(VIEWS), 64, 64, 3), np.uint8)
    found = np.zeros((len(records), len(VIEWS)), np.int8)
    t0 = time.time()
    for i, r in enumerate(records):
        rng = np.random.default_rng(_seed(r.path.name))
        scene, square = scene_view(r.path, backgrounds, rng)
        for v, (frame, want) in enumerate([(load_image(str(r.path)).frames[0], None), (load_image(scene).frames[0], square)]):
            for box, chip in pipeline_chips(stage, frame):
                cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
                if want is None or (want[0] <= cx <= want[2] and want[1] <= cy <= want[3]):
                    chips[i, v], found[i, v] = chip, 1
                    break
        if i % 500 == 0:
            logger.info("part %d: %d of %d images, %.0f s", part, i, len(records), time.time() - t0)
    path = Path(out) / f"part{part}.npz"
    np.savez(path, chips=chips, found=found, names=np.array([r.path.name for r in records]))
    return str(path)


def build_chip_cache(data: str | os.PathLike[str], out: str | os.PathLike[str], *, workers: int = 2, limit: int | None = None) -> list[Path]:
    """Cut both views of every UTKFace image in ``data`` into ``out/part{K}.npz``, one part per worker process."""
    Path(out).mkdir(parents=True, exist_ok=True)
    if workers == 1:
        return [Path(_build_part(os.fspath(data), os.fspath(out), 0, 1, limit))]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(_build_part, os.fspath(data), os.fspath(out), k, workers, limit) for k in range(workers)]
        return [Path(f.result()) for f in futures]


def load_chip_cache(cache: str | os.PathLike[str]) -> dict[str, npt.NDArray[Any]]:
    """All parts of a chip cache, sorted by file name, with ``age``, ``group`` (gender|race) and ``split`` columns."""
    from genguard.learn.datasets import parse_utkface_name, split_of

    files = sorted(Path(cache).glob("part*.npz"))
    if not files:
        raise FileNotFoundError(f"no chip cache in {cache}; build it with: genguard agenet chips --data DIR --out {cache}")
    parts = [np.load(p, allow_pickle=False) for p in files]
    names = np.concatenate([p["names"] for p in parts])
    order = np.argsort(names)
    out: dict[str, npt.NDArray[Any]] = {k: np.concatenate([p[k] for p in parts])[order] for k in ("chips", "found")}
    out["names"] = names[order]
    parsed = [parse_utkface_name(str(n)) for n in out["names"]]
    out["age"] = np.array([p[0] if p else -1 for p in parsed])
    out["group"] = np.array([f"{p[1]}|{p[2]}" if p else "None|None" for p in parsed])
    out["split"] = np.array([split_of(str(n)) for n in out["names"]])
    return out
