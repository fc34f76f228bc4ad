"""Chip-level figures of a tuned age network: per view (native, scene), with and without mirror averaging.

A face's chip is the one the pipeline cuts (the chip cache), and ``mirror=True`` scores it with
the embedder's own function (:func:`genguard.embedders.bundled.embedder.age_outputs`), so for an
image with one face these are the scores ``Guard`` gives. Images with several faces (the
image's score is the maximum) and images with no face are only in ``genguard eval``'s figures.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .chips import VIEWS, load_chip_cache
from .train import minor_metrics

__all__ = ["evaluate_chips"]


def evaluate_chips(model: str | os.PathLike[str], cache: str | os.PathLike[str], *, split: str = "val", fpr: float = 0.01) -> dict[str, Any]:
    """Minor metrics of ``model`` (an exported ONNX file) on ``split``'s chips; thresholds at ``fpr`` of that split's adults.

    Returns ``{view: {"mirror": metrics, "single": metrics, "n": faces}}`` (see :func:`.train.minor_metrics`).
    """
    import onnxruntime as ort

    from genguard.embedders.bundled.face_stage import age_outputs

    session = ort.InferenceSession(os.fspath(model), providers=["CPUExecutionProvider"])
    d = load_chip_cache(cache)
    out: dict[str, Any] = {"split": split, "target_fpr": fpr}
    for v, view in enumerate(VIEWS):
        sel = np.flatnonzero((d["split"] == split) & (d["found"][:, v] > 0))
        chips = d["chips"][sel, v]
        mirrored = np.concatenate([age_outputs(session, chips[s : s + 256])[2] for s in range(0, len(chips), 256)])
        single = np.concatenate(
            [session.run(["minor_logits"], {"images": _input(chips[s : s + 256])})[0] for s in range(0, len(chips), 256)]
        )
        age, group = d["age"][sel], d["group"][sel]
        out[view] = {
            "n": int(len(sel)),
            "found": float(len(sel) / max(1, int((d["split"] == split).sum()))),
            "mirror": minor_metrics(mirrored[:, 2], age, group, fpr),
            "single": minor_metrics(single[:, 2], age, group, fpr),
        }
    return out


def _input(chips: np.ndarray) -> np.ndarray:
    from .model import normalise

    return normalise(chips).numpy()
