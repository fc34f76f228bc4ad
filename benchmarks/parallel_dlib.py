"""Prototype of one proposed change: one dlib detector per thread instead of one detector behind a lock.

The bundled embedder finds faces frame by frame on two worker threads, but its
detections share one dlib detector behind a lock, so the threads take turns.
This script subclasses the embedder so that each thread gets its own detector,
checks that the embeddings are identical, and times both versions alternately
(1024 JPEG, batch 8). It needs the embedder's ``_dlib_faces`` method.

Run::

    python benchmarks/parallel_dlib.py --images 16 --rounds 2
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, time_batches, write_corpus

from genguard import Guard, load_image
from genguard.embedders import bundled


class ThreadDetectors(bundled.BundledEmbedder):
    """The bundled embedder with a dlib HOG detector per thread (no lock around detection)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._local = threading.local()

    def _dlib_faces(self, small: Any, upsample: int, scale: float, size: tuple[int, int]) -> list[Any]:
        detector = getattr(self._local, "detector", None)
        if detector is None:
            detector = self._local.detector = self._dlib.get_frontal_face_detector()
        rects, scores, _ = detector.run(np.ascontiguousarray(small), upsample, 0.0)
        out = []
        for r, s in zip(rects, scores):
            box = bundled._clip_box((r.left() / scale, r.top() / scale, (r.right() + 1) / scale, (r.bottom() + 1) / scale), *size)
            if box is not None:
                out.append((box, "dlib", float(s)))
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2, help="alternating timing rounds")
    args = parser.parse_args()
    if not hasattr(bundled.BundledEmbedder, "_dlib_faces"):
        raise SystemExit("this checkout's BundledEmbedder has no _dlib_faces method; nothing to compare")
    print(machine())
    with tempfile.TemporaryDirectory(prefix="genguard-bench-") as tmp:
        paths = write_corpus(Path(tmp), 1024, "JPEG")
        frames = [load_image(p).frames[0] for p in paths]
        locked, local = bundled.BundledEmbedder(), ThreadDetectors()
        for a, b in zip(locked.embed(frames[:8]), local.embed(frames[:8])):
            assert np.array_equal(a.vector, b.vector)
            assert [f.box for f in a.faces] == [f.box for f in b.faces]
            assert all(np.array_equal(x.vector, y.vector) for x, y in zip(a.faces, b.faces))
        print("embeddings identical")
        for _ in range(args.rounds):
            for name, emb in (("one locked detector", locked), ("a detector per thread", local)):
                guard = Guard(embedder=emb, batch_size=8)
                r = time_batches(lambda chunk, g=guard: g.classify_batch(chunk, batch_size=8), paths, 8, args.images)
                print(f"{name:24s} {r['ms_per_image']:7.1f} ms/image, {r['cpu_ms_per_image']:7.1f} cpu ms/image", flush=True)


if __name__ == "__main__":
    main()
