"""Augmentations and targets for fine-tuning the age network on face chips.

The augmentations imitate what generated images do to a face chip: JPEG, blur, noise,
colour shifts, grayscale, mirror, small rotations, off-centre crops and down-then-up
scaling. Targets: a Gaussian-smoothed age distribution over the 81 bins, and soft
under-12/15/18 labels (label smoothing over the ages next to each boundary).

>>> age_targets(np.array([10])).shape
torch.Size([1, 81])
>>> [round(float(v), 2) for v in minor_targets(np.array([17]))[0]]
[0.0, 0.0, 0.81]
"""

from __future__ import annotations

import io
from typing import Final

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from PIL import Image

from .model import AGE_BINS, CHIP, MINOR_AGES, normalise

__all__ = ["age_targets", "augment", "minor_targets"]

_JPEG_P: Final = 0.3
_ROTATE_DEG: Final = 12.0
_SHIFT_PX: Final = 4.0
_DOWNUP_P: Final = 0.25
_BLUR_P: Final = 0.2
_GRAY_P: Final = 0.1
_NOISE_P: Final = 0.3


def _jpeg(chip: npt.NDArray[np.uint8], quality: int) -> npt.NDArray[np.uint8]:
    buf = io.BytesIO()
    Image.fromarray(chip).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"), dtype=np.uint8)


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    k = torch.exp(-((torch.arange(5) - 2.0) ** 2) / (2 * sigma**2))
    k = (k / k.sum()).float()
    x = F.conv2d(F.pad(x, (2, 2, 0, 0), mode="reflect"), k.view(1, 1, 1, 5).repeat(3, 1, 1, 1), groups=3)
    return F.conv2d(F.pad(x, (0, 0, 2, 2), mode="reflect"), k.view(1, 1, 5, 1).repeat(3, 1, 1, 1), groups=3)


def augment(chips: npt.NDArray[np.uint8], rng: np.random.Generator) -> torch.Tensor:
    """Augment uint8 chips ``[N, 64, 64, 3]`` and return the network's input (see :func:`normalise`)."""
    chips = chips.copy()
    for i in np.flatnonzero(rng.random(len(chips)) < _JPEG_P):
        chips[i] = _jpeg(chips[i], int(rng.integers(25, 90)))
    x = torch.from_numpy(chips).float().permute(0, 3, 1, 2) / 255.0
    n = len(x)
    g = torch.Generator().manual_seed(int(rng.integers(2**31)))

    def uniform(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=g) * 2 - 1

    # geometry: mirror, rotation, scale 0.9-1.12, shift (off-centre crops); reflected borders
    angle = uniform(n) * np.deg2rad(_ROTATE_DEG)
    scale = 0.9 + torch.rand(n, generator=g) * 0.22
    flip = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
    tx, ty = uniform(n) * (_SHIFT_PX / (CHIP / 2)), uniform(n) * (_SHIFT_PX / (CHIP / 2))
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, [n, 3, CHIP, CHIP], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    sel = torch.rand(n, generator=g) < _DOWNUP_P  # down-then-up scaling
    if sel.any():
        s = int(rng.integers(20, 48))
        small = F.interpolate(x[sel], size=(s, s), mode="bilinear", antialias=True, align_corners=False)
        x[sel] = F.interpolate(small, size=(CHIP, CHIP), mode="bilinear", align_corners=False)
    sel = torch.rand(n, generator=g) < _BLUR_P
    if sel.any():
        x[sel] = _blur(x[sel], float(rng.uniform(0.5, 1.3)))
    # colour: contrast, brightness, per-channel gain, saturation (0 = grayscale)
    bright = 1 + uniform(n, 1, 1, 1) * 0.25
    contrast = 1 + uniform(n, 1, 1, 1) * 0.25
    gain = 1 + uniform(n, 3, 1, 1) * 0.08
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = ((x - mean) * contrast + mean) * bright * gain
    gray = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
    sat = 1 + uniform(n, 1, 1, 1) * 0.3
    sat = torch.where(torch.rand(n, 1, 1, 1, generator=g) < _GRAY_P, torch.zeros_like(sat), sat)
    x = gray + (x - gray) * sat
    sd = torch.where(torch.rand(n, 1, 1, 1, generator=g) < _NOISE_P, torch.rand(n, 1, 1, 1, generator=g) * 0.04, torch.zeros(n, 1, 1, 1))
    x = x + torch.randn(x.shape, generator=g) * sd
    x = (x.clamp(0, 1) * 255.0).round()  # back on the uint8 grid, as chips are at inference
    return normalise(x.permute(0, 2, 3, 1))


def age_targets(age: npt.NDArray[np.integer] | npt.NDArray[np.floating]) -> torch.Tensor:
    """Gaussian-smoothed age distributions over :data:`AGE_BINS`: sigma 1 year up to age 10, 10% of the age above."""
    a = np.clip(np.asarray(age, np.float64), 0.25, 80.0)[:, None]
    sigma = np.maximum(1.0, 0.1 * a)
    p = np.exp(-0.5 * ((AGE_BINS[None, :] - a) / sigma) ** 2)
    return torch.from_numpy((p / p.sum(1, keepdims=True)).astype(np.float32))


def minor_targets(age: npt.NDArray[np.integer] | npt.NDArray[np.floating], tau: float = 0.35) -> torch.Tensor:
    """Soft under-12/15/18 targets, ``sigmoid((T - 0.5 - age) / tau)``: 0.81 at 17 and 0.19 at 18 for T = 18."""
    t = np.array(MINOR_AGES, np.float64)[None, :]
    return torch.from_numpy((1 / (1 + np.exp(-(t - 0.5 - np.asarray(age, np.float64)[:, None]) / tau))).astype(np.float32))
