"""Shared pieces of the benchmarks: a benign test corpus and a description of the machine.

The corpus is built at run time in a temporary folder and never committed:

- *scene* frames: scikit-image's sample photographs, cover-cropped to a square;
- *portrait* frames: a scene with one to three UTKFace faces pasted in at
  120-420 px (read in place from ``$GENGUARD_UTKFACE`` or
  ``../shared/data/utkface/dev``; without it, the astronaut's face is pasted).

Every image is benign. Generated images usually show people, so half the corpus
has faces: the face-dependent work (landmarks, chips, age model) is measured.
"""

from __future__ import annotations

import os
import platform
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

SCENES = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina", "colorwheel")
UTKFACE = Path(os.environ.get("GENGUARD_UTKFACE", Path(__file__).resolve().parents[2] / "shared/data/utkface/dev"))


def _scene(name: str, size: int) -> Image.Image:
    import skimage.data

    arr = getattr(skimage.data, name)()
    img = Image.fromarray(arr).convert("RGB")
    w, h = img.size
    side = min(w, h)
    img = img.crop(((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side))
    return img.resize((size, size), Image.Resampling.BICUBIC)


def _faces(n: int, rng: random.Random) -> list[Image.Image]:
    if UTKFACE.is_dir():
        names = sorted(os.listdir(UTKFACE))
        return [Image.open(UTKFACE / rng.choice(names)).convert("RGB") for _ in range(n)]
    import skimage.data

    face = Image.fromarray(skimage.data.astronaut()).crop((150, 50, 300, 200))
    return [face] * n


def corpus_frames(size: int, n: int = 16, seed: int = 0) -> list[Image.Image]:
    """``n`` benign square RGB frames of side ``size``: alternately a scene and a scene with faces."""
    rng = random.Random(seed)
    frames = []
    for i in range(n):
        img = _scene(SCENES[i % len(SCENES)], size)
        if i % 2 == 1:
            k = rng.randint(1, 3)
            for face in _faces(k, rng):
                side = int(rng.uniform(120, 420) * size / 1024)
                x, y = rng.randint(0, size - side), rng.randint(0, size - side)
                img.paste(face.resize((side, side), Image.Resampling.BICUBIC), (x, y))
        frames.append(img)
    return frames


FACELESS = ("coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina", "colorwheel", "coins",
            "moon", "brick", "grass", "gravel", "page", "text", "clock", "horse")


def write_faceless(folder: Path, size: int = 1024, n: int = 16) -> list[Path]:
    """``n`` benign JPEG photos without people (scikit-image), cover-cropped to ``size`` px squares."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"nofaces_{i:02d}.jpg"
        if not path.exists():
            _scene(FACELESS[i % len(FACELESS)], size).save(path, "JPEG", quality=90)
        paths.append(path)
    return paths


def write_face_scenes(folder: Path, n: int = 16, seed: int = 0) -> list[Path] | None:
    """``n`` 1024 px ``genguard scenes`` (1-4 UTKFace val faces, 48-256 px, in benign backgrounds); None without UTKFace."""
    if not UTKFACE.is_dir():
        return None
    from genguard.learn.scenes import build_scenes

    build_scenes(UTKFACE, folder, n=n, seed=seed)
    return sorted(folder.glob("scene_*.jpg"))


def write_corpus(folder: Path, size: int, fmt: str, n: int = 16) -> list[Path]:
    """Write the corpus as ``fmt`` ("JPEG" quality 90, or "PNG") files; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, img in enumerate(corpus_frames(size, n)):
        path = folder / f"{size}_{i:02d}.{'jpg' if fmt == 'JPEG' else 'png'}"
        if not path.exists():
            img.save(path, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
        paths.append(path)
    return paths


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """CPU, cores, load and library versions, for the JSON record."""
    import onnxruntime
    import torch

    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "loadavg": list(os.getloadavg()),
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
    }


def time_batches(
    fn: Callable[[Sequence[Any]], Any], items: Sequence[Any], batch: int, min_images: int, warmup: int | None = None
) -> dict[str, float]:
    """Call ``fn`` on consecutive batches (cycling ``items``) after one warm-up call on ``warmup`` items (default: a batch).

    Returns wall milliseconds per image, images per second and CPU milliseconds per
    image (all threads of this process; steadier than wall time on a loaded machine)
    over at least ``min_images`` images.
    """
    def take(start: int) -> list[Any]:
        return [items[(start + j) % len(items)] for j in range(batch)]

    fn(take(0)[: warmup or batch])  # warm-up: first-call allocations, lazy loads
    done, start = 0, 0
    t0, c0 = time.perf_counter(), time.process_time()
    while done < max(min_images, batch):
        fn(take(start))
        start += batch
        done += batch
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "ms_per_image": 1000.0 * elapsed / done,
        "images_per_s": done / elapsed,
        "cpu_ms_per_image": 1000.0 * cpu / done,
        "images": done,
    }
