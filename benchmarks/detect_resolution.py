"""Face recall and cost of the bundled face finding at several dlib detection resolutions.

UTKFace faces (read in place, never copied) are pasted one per frame into a
1024x1024 benign scene at a range of sizes. For each ``detect_max_side`` the
frame goes through the embedder's own face finding (NudeNet boxes from the
same batched call, then ``_find_faces``); a face counts as found when a kept
box's centre lies inside the pasted square. Reported per face size: recall of
dlib alone, NudeNet alone and both merged (what the embedder uses), and the
mean dlib milliseconds per frame.

Run::

    python benchmarks/detect_resolution.py --per-size 30 --out benchmarks/detect_resolution.json
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import UTKFACE, _scene, machine

SIZES = (48, 64, 96, 128, 160, 200, 256, 384)


def frames(per_size: int, seed: int = 0) -> list[tuple[np.ndarray, tuple[int, int, int, int], int]]:
    """``(frame, pasted box, face side)`` triples; one UTKFace face per 1024x1024 scene."""
    if not UTKFACE.is_dir():
        raise SystemExit(f"UTKFace not found at {UTKFACE}; set GENGUARD_UTKFACE")
    rng = random.Random(seed)
    names = sorted(p.name for p in UTKFACE.iterdir())
    scenes = [_scene(s, 1024) for s in ("coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "colorwheel")]
    out = []
    for side in SIZES:
        for i in range(per_size):
            img = scenes[i % len(scenes)].copy()
            face = Image.open(UTKFACE / rng.choice(names)).convert("RGB").resize((side, side), Image.Resampling.BICUBIC)
            x, y = rng.randint(0, 1024 - side), rng.randint(0, 1024 - side)
            img.paste(face, (x, y))
            out.append((np.asarray(img), (x, y, x + side, y + side), side))
    return out


def _hit(boxes: list[tuple[int, int, int, int]], target: tuple[int, int, int, int]) -> bool:
    for b in boxes:
        cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
        if target[0] <= cx <= target[2] and target[1] <= cy <= target[3]:
            return True
    return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-size", type=int, default=30, help="faces per pasted size")
    parser.add_argument("--sides", type=int, nargs="+", default=[1024, 768, 640, 512], help="detect_max_side values")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()

    from genguard.embedders.bundled.embedder import BundledEmbedder

    data = frames(args.per_size)
    nude_faces: list[list] = []
    emb = BundledEmbedder(face_detectors=("nudenet",))
    for start in range(0, len(data), 8):
        chunk = [d[0] for d in data[start : start + 8]]
        nude_faces.extend(emb._run_nudenet(chunk)[1])
    results: dict[str, dict] = {"machine": machine(), "per_size": args.per_size, "face_sides": list(SIZES), "by_side": {}}
    nude_hits = [_hit([b for b, _ in nf], d[1]) for nf, d in zip(nude_faces, data)]
    for max_side in args.sides:
        dlib_only = BundledEmbedder(face_detectors=("dlib",), detect_max_side=max_side)
        both = BundledEmbedder(detect_max_side=max_side)
        dlib_hits, both_hits, seconds = [], [], 0.0
        for (frame, target, _), nf in zip(data, nude_faces):
            t0 = time.perf_counter()
            found = dlib_only._find_faces(frame, [])
            seconds += time.perf_counter() - t0
            dlib_hits.append(_hit([f[0] for f in found], target))
            both_hits.append(_hit([f[0] for f in both._find_faces(frame, nf)], target))
        row = {}
        for side in SIZES:
            idx = [i for i, d in enumerate(data) if d[2] == side]
            row[str(side)] = {
                "dlib": float(np.mean([dlib_hits[i] for i in idx])),
                "nudenet": float(np.mean([nude_hits[i] for i in idx])),
                "merged": float(np.mean([both_hits[i] for i in idx])),
            }
        results["by_side"][str(max_side)] = {"dlib_ms_per_frame": 1000 * seconds / len(data), "recall": row}
        print(f"detect_max_side={max_side}: dlib {1000 * seconds / len(data):.1f} ms/frame")
        print("  face px  " + " ".join(f"{s:>6d}" for s in SIZES))
        for key in ("dlib", "nudenet", "merged"):
            print(f"  {key:8s} " + " ".join(f"{row[str(s)][key]:6.2f}" for s in SIZES))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
