"""Ship a tuned age network: calibrate its under-18 logit on calib and build the head that reads it.

The bundled embedder puts the network's mirror-averaged under-12/15/18 logits at the end of
each face vector (``feature_layout["face"]["minor_logits"]``). The shipped head's minor branch
is linear and reads only the under-18 logit; Platt scaling and the minor threshold (1% adult
false positives) are fitted on the calib split, on the chips the pipeline cuts (the chip
cache), scored by the exported ONNX file exactly as the embedder scores them.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from .chips import load_chip_cache

__all__ = ["build_head", "calib_logits"]


def calib_logits(onnx_path: str | os.PathLike[str], chips: npt.NDArray[np.uint8], *, batch: int = 256) -> npt.NDArray[np.float32]:
    """Mirror-averaged minor logits ``[N, 3]`` of chips, from the ONNX file (the embedder's own arithmetic)."""
    from genguard.embedders.bundled.face_stage import age_outputs

    import onnxruntime as ort

    session = ort.InferenceSession(os.fspath(onnx_path), providers=["CPUExecutionProvider"])
    parts = [age_outputs(session, chips[s : s + batch])[2] for s in range(0, len(chips), batch)]
    return np.concatenate(parts) if parts else np.zeros((0, 3), np.float32)


def build_head(
    onnx_path: str | os.PathLike[str],
    cache: str | os.PathLike[str],
    base_head: str | os.PathLike[str],
    *,
    target_fpr: float = 0.01,
    review_fpr: float = 0.05,
    provenance: dict[str, Any] | None = None,
) -> Any:
    """A head whose minor branch reads the under-18 logit, calibrated on calib; the sexual branch is ``base_head``'s.

    Calib images in which the pipeline finds no face count as minor score ``no_face_minor`` (0).
    The block threshold flags ``target_fpr`` of calib adults; the review threshold (``review_minor``)
    flags ``review_fpr`` of them, so that an uncertain face near the 18 boundary is sent to review
    whenever its sexual score reaches ``review_sexual``.
    """
    from genguard.embedders.bundled.embedder import FACE_DIM, FACE_FINDER, FACE_LAYOUT
    from genguard.heads.head import Head, HeadMetadata, load_head
    from genguard.learn.calibration import calibrate_platt, threshold_for_fpr
    from genguard.policy import Policy

    base = load_head(base_head)
    d = load_chip_cache(cache)
    calib = np.flatnonzero(d["split"] == "calib")
    has_face = d["found"][calib, 0] > 0
    z = calib_logits(onnx_path, d["chips"][calib[has_face], 0])[:, 2].astype(np.float64)
    y = (d["age"][calib] < 18).astype(np.float64)
    platt = calibrate_platt(z, y[has_face])
    p = np.zeros(len(calib))
    p[has_face] = 1 / (1 + np.exp(-(platt["a"] * z + platt["b"])))
    t_minor = threshold_for_fpr(p, y, target_fpr)
    # review band: an uncertain face (the 13-20 boundary) is reviewed whenever the sexual score is raised
    review_minor = min(t_minor, threshold_for_fpr(p, y, review_fpr))
    teens = (d["age"][calib] >= 13) & (d["age"][calib] <= 17)
    old = base.policy
    policy = Policy(t_minor, old.sexual_threshold, review_minor, old.review_sexual)
    slot = FACE_LAYOUT["minor_logits"][0] + 2  # the under-18 logit
    meta = HeadMetadata(
        backbone=base.metadata.backbone,
        minor_source="face",
        minor_dim=FACE_DIM,
        sexual_dim=base.metadata.sexual_dim,
        hidden=0,
        sexual_hidden=base.metadata.sexual_hidden,
        no_face_minor=0.0,
        policy=policy.to_dict(),
        calibration={"minor": platt, "sexual": dict(base.metadata.calibration["sexual"])},
        calibrated={"minor": True, "sexual": bool(base.metadata.calibrated["sexual"])},
        name="bundled-agenet",
        feature_layout=dict(base.metadata.feature_layout, face={k: list(v) for k, v in FACE_LAYOUT.items()}, face_finder=FACE_FINDER),
        provenance=dict(provenance or {}, minor=f"Platt-scaled under-18 logit of the tuned age network (face vector slot {slot})",
                        sexual=base.metadata.provenance.get("sexual")),
        metrics={"calib": {"n": int(len(calib)), "with_face": int(has_face.sum()), "threshold": t_minor,
                           "review_minor": review_minor, "teens_13_17_at_review_minor": float((p[teens] >= review_minor).mean())}},
    )
    head = Head(meta)
    state = head.state_dict()
    with torch.no_grad():
        weight = torch.zeros_like(state["minor_net.weight"])
        weight[0, slot] = 1.0
        state["minor_net.weight"] = weight
        state["minor_net.bias"] = torch.zeros_like(state["minor_net.bias"])
        for k, v in base.state_dict().items():
            if k.startswith("sexual"):
                state[k] = v.clone()
    head.load_state_dict(state, strict=True)
    return head.eval()
