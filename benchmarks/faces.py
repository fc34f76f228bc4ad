"""Face finding: recall on generated scenes (plain and hard), false faces on benign photos without people, time.

Measures the bundled face finder (:class:`genguard.embedders.bundled.faces.FaceFinder`,
the code ``Guard()`` runs, with NudeNet's face proposals from the whole-image stage unless
``--no-proposals``) on

- ``genguard scenes``: UTKFace val faces (48-256 px) pasted into 1024 px benign
  backgrounds, recall by pasted size;
- the same with ``hard=True``: each face rotated up to 30 degrees, a third occluded,
  blurred, at a third of its contrast, or alone in a wide-margin portrait; recall by kind;
- benign images without people: scikit-image photos (whole, mirrored, three quadrants,
  each scaled to 1024 px) and synthetic backgrounds; the share of images with a false face.

The scenes are derived from UTKFace (research-only): they are written to a temporary
folder and never kept. Timing is of ``FaceFinder.find`` alone at the given batch size,
one onnxruntime thread unless ``--threads`` says otherwise.

``--set tune`` measures the same on the set the finder's thresholds were chosen on: calib
faces (seed 2) and other views of the photos (bottom-left quarter, centre, rotated, upside
down) with 300 other synthetic backgrounds.

Run::

    python benchmarks/faces.py --faces ../shared/data/utkface/dev --n 200 --out benchmarks/results/faces.json
    python benchmarks/faces.py --faces ../shared/data/utkface/dev --n 200 --set tune --out benchmarks/results/faces_tune.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine

_NO_PEOPLE = ("brick", "cat", "cell", "checkerboard", "chelsea", "clock", "coffee", "coins", "colorwheel", "grass", "gravel",
              "horse", "hubble_deep_field", "immunohistochemistry", "logo", "microaneurysms", "moon", "page", "retina",
              "rocket", "text", "binary_blobs", "shepp_logan_phantom", "stereo_motorcycle")


_VARIANTS = {  # the reported set's views of each photo, and the tuning set's (none shared)
    "report": {"": lambda a: a, "-mirror": lambda a: a[:, ::-1], "-tl": lambda a: a[: a.shape[0] // 2, : a.shape[1] // 2],
               "-br": lambda a: a[a.shape[0] // 2 :, a.shape[1] // 2 :], "-tr": lambda a: a[: a.shape[0] // 2, a.shape[1] // 2 :]},
    "tune": {"-bl": lambda a: a[a.shape[0] // 2 :, : a.shape[1] // 2],
             "-centre": lambda a: a[a.shape[0] // 4 : 3 * a.shape[0] // 4, a.shape[1] // 4 : 3 * a.shape[1] // 4],
             "-rot90": np.rot90, "-flipud": lambda a: a[::-1]},
}
SETS = {  # name: (UTKFace split pasted into scenes, scene seed, synthetic backgrounds, their seed)
    "report": ("val", 1, 60, 7),
    "tune": ("calib", 2, 300, 1000),
}
"""The reported set, and the set the face finder's thresholds were chosen on (``--set tune``)."""


def faceless_images(synthetic: int = 60, *, which: str = "report", seed: int = 7) -> list[tuple[str, np.ndarray]]:
    """Benign images without people: scikit-image photos in the set's variants, and synthetic backgrounds."""
    from skimage import data

    from genguard.learn.scenes import _synthetic_background

    out = []
    for name in _NO_PEOPLE:
        try:
            img = getattr(data, name)()
        except Exception:  # an optional photo this scikit-image cannot load offline
            continue
        img = np.asarray(img[0] if isinstance(img, tuple) else img)
        if img.dtype == bool:
            img = img.astype(np.uint8) * 255
        if img.dtype != np.uint8:
            img = (255 * (img.astype(np.float64) - img.min()) / max(float(img.max() - img.min()), 1e-9)).astype(np.uint8)
        if img.ndim == 2:
            img = np.repeat(img[:, :, None], 3, axis=2)
        img = img[:, :, :3]
        for suffix, view in _VARIANTS[which].items():
            v = view(img)
            s = 1024 / max(v.shape[:2])
            size = (max(1, round(v.shape[1] * s)), max(1, round(v.shape[0] * s)))
            out.append((name + suffix, np.asarray(Image.fromarray(np.ascontiguousarray(v)).resize(size, Image.Resampling.BILINEAR))))
    rng = np.random.default_rng(seed)
    out += [(f"synthetic-{i}", _synthetic_background(rng)) for i in range(synthetic)]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", required=True, help="UTKFace folder (its val split is pasted into scenes)")
    parser.add_argument("--n", type=int, default=200, help="scenes per set (default 200)")
    parser.add_argument("--set", choices=sorted(SETS), default="report",
                        help="report: val faces, the figures quoted in the docs; tune: calib faces and other photos, "
                             "the set the thresholds were chosen on")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="write the figures as JSON here")
    parser.add_argument("--no-proposals", action="store_true", help="BlazeFace alone, without NudeNet's face proposals")
    args = parser.parse_args()

    from genguard.embedders.bundled import BundledEmbedder
    from genguard.learn.scenes import build_scenes, face_recall

    embedder = BundledEmbedder(threads=args.threads)
    finder = embedder.face_stage.finder
    seconds = {"frames": 0, "s": 0.0}

    def find(frames: list[np.ndarray]) -> list[Any]:
        # NudeNet's face proposals come from the whole-image stage, as in Guard (untimed: it runs anyway)
        proposals = None if args.no_proposals else [e.face_proposals for e in embedder.embed_images(frames)]
        t0 = time.perf_counter()
        found = finder.find(frames, proposals)
        seconds["s"] += time.perf_counter() - t0
        seconds["frames"] += len(frames)
        return found

    split, seed, synthetic, synthetic_seed = SETS[args.set]
    result: dict[str, Any] = {"machine": machine(), "set": args.set, "split": split, "n": args.n, "seed": seed, "batch": args.batch,
                              "threads": args.threads, "proposals": not args.no_proposals}
    with tempfile.TemporaryDirectory() as tmp:
        for label, hard in (("scenes", False), ("hard_scenes", True)):
            manifest = build_scenes(args.faces, Path(tmp) / label, n=args.n, seed=seed, split=split, hard=hard)
            paths = sorted(manifest.parent.glob("scene_*.jpg"))
            found: dict[Path, Any] = {}
            for k in range(0, len(paths), args.batch):
                chunk = paths[k : k + args.batch]
                for p, faces in zip(chunk, find([np.asarray(Image.open(p).convert("RGB")) for p in chunk])):
                    found[p] = faces
            seconds_before = dict(seconds)
            result[label] = face_recall(manifest, lambda p: [SimpleNamespace(faces=found[Path(p)])])
            print(label, json.dumps(result[label]), flush=True)
        result["find_ms_per_scene"] = round(1000 * seconds_before["s"] / max(seconds_before["frames"], 1), 1)
    images = faceless_images(synthetic, which=args.set, seed=synthetic_seed)
    false = []
    start = dict(seconds)
    for k in range(0, len(images), args.batch):
        chunk = images[k : k + args.batch]
        for (name, _), faces in zip(chunk, find([img for _, img in chunk])):
            if faces:
                false.append({"image": name, "scores": [round(f.score, 3) for f in faces], "boxes": [list(f.box) for f in faces]})
    result["faceless"] = {
        "images": len(images),
        "images_with_a_false_face": len(false),
        "rate": len(false) / len(images),
        "false": false,
        "find_ms_per_image": round(1000 * (seconds["s"] - start["s"]) / len(images), 1),
    }
    print("faceless", json.dumps({k: v for k, v in result["faceless"].items() if k != "false"}), flush=True)
    result["machine"]["loadavg_after"] = machine()["loadavg"]
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
