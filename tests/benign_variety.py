"""A deterministic stream of varied benign images from scikit-image's non-photo samples and noise.

For false-match tests of the PDQ blocklist: none of these images derives from
the photos the tests list (astronaut, coffee, chelsea/cat, rocket, camera).
Every image is benign.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

SOURCES = (
    "brick", "cell", "clock", "coins", "colorwheel", "grass", "gravel", "hubble_deep_field",
    "immunohistochemistry", "moon", "page", "retina", "text", "horse", "binary_blobs", "logo", "microaneurysms",
)
LISTED_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera")


def _rgb(a: np.ndarray) -> np.ndarray:
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    return np.ascontiguousarray(a[:, :, :3]).astype(np.uint8)


def benign_images(n: int, seed: int = 0, max_side: int = 128) -> Iterator[np.ndarray]:
    """``n`` RGB uint8 images: random crops, resizes, flips, tone changes and noise of the sources, and pure noise."""
    from PIL import Image
    from skimage import data

    rng = np.random.default_rng(seed)
    sources = []
    for name in SOURCES:  # at most 384 px a side, so that crops resize fast
        im = Image.fromarray(_rgb(getattr(data, name)()))
        im.thumbnail((384, 384), Image.Resampling.BILINEAR)
        sources.append(np.asarray(im))
    faces = data.lfw_subset()  # 200 small grey faces (25x25), benign
    for _ in range(n):
        side = int(rng.integers(32, max_side + 1))
        size = (max(16, int(side * float(rng.uniform(0.6, 1.6)))), side)
        kind = rng.random()
        if kind < 0.1:  # smooth noise: random values on a coarse grid, upscaled
            g = int(rng.integers(2, 16))
            img = rng.integers(0, 256, (g, g, 3), dtype=np.uint8)
        elif kind < 0.15:
            img = _rgb((faces[int(rng.integers(len(faces)))] * 255).astype(np.uint8))
        else:
            src = sources[int(rng.integers(len(sources)))]
            h, w = src.shape[:2]
            ch, cw = int(rng.integers(max(16, h // 8), h + 1)), int(rng.integers(max(16, w // 8), w + 1))
            y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            img = src[y : y + ch, x : x + cw]
        img = np.asarray(Image.fromarray(np.ascontiguousarray(img)).resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0))
        if rng.random() < 0.3:
            img = img[:, ::-1]
        if rng.random() < 0.3:
            img = np.rot90(img, int(rng.integers(1, 4)))
        if rng.random() < 0.3:  # tone: gamma and contrast
            f = (img.astype(np.float32) / 255.0) ** float(rng.uniform(0.5, 2.0))
            f = 0.5 + (f - 0.5) * float(rng.uniform(0.3, 1.5))
            img = (np.clip(f, 0, 1) * 255).astype(np.uint8)
        if rng.random() < 0.2:
            img = np.clip(img.astype(np.int16) + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)
        yield np.ascontiguousarray(img)
