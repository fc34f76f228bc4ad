"""Write scikit-image's sample photos (no children, nothing sexual) to a folder as PNG, for benign evaluations.

Usage::

    python tools/benign_photos.py /tmp/benign
    genguard eval --data /tmp/benign --assume minor=0,sexual=0 --report docs/model/eval/benign-skimage

The photos ship inside the scikit-image wheel (``skimage.data``; no download): the 25
below are the ones that need no network.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

NAMES = (
    "astronaut", "binary_blobs", "brick", "camera", "cat", "cell", "checkerboard", "chelsea", "clock", "coffee",
    "coins", "colorwheel", "grass", "gravel", "horse", "hubble_deep_field", "immunohistochemistry", "logo",
    "microaneurysms", "moon", "page", "retina", "rocket", "shepp_logan_phantom", "text",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder to write NAME.png into")
    args = parser.parse_args()
    import skimage.data

    args.out.mkdir(parents=True, exist_ok=True)
    for name in NAMES:
        arr = np.asarray(getattr(skimage.data, name)())
        if arr.dtype == bool:
            arr = arr.astype(np.uint8) * 255
        elif arr.dtype != np.uint8:
            arr = (255 * (arr - arr.min()) / max(float(arr.max() - arr.min()), 1e-12)).astype(np.uint8)
        Image.fromarray(arr).save(args.out / f"{name}.png")
        print(args.out / f"{name}.png")


if __name__ == "__main__":
    main()
