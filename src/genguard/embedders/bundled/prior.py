"""The bundled backbone's starting head, before (or without) training.

A hand-set head (justified in docs/model/MODEL_CARD.md). Its sexual branch is
also what every trained bundled head keeps, since no sexual images may be used
to train one here. (CLIP's starting head is the zero-shot head.)
"""

from __future__ import annotations

from typing import Any

import torch

from genguard.heads.head import Head, HeadMetadata
from genguard.policy import Policy

__all__ = ["SEXUAL_PRIOR_BIAS", "SEXUAL_PRIOR_WEIGHTS", "bundled_prior_head"]

# open_nsfw's logit, plus NudeNet's exposed-part scores (weights per class).
SEXUAL_PRIOR_WEIGHTS: dict[str, float] = {
    "nsfw_logit": 1.0,
    "FEMALE_GENITALIA_EXPOSED": 2.0,
    "MALE_GENITALIA_EXPOSED": 2.0,
    "ANUS_EXPOSED": 2.0,
    "FEMALE_BREAST_EXPOSED": 2.0,
    "BUTTOCKS_EXPOSED": 1.0,
}
SEXUAL_PRIOR_BIAS = 0.0


def bundled_prior_head(feature_layout: dict[str, Any] | None = None) -> Head:
    """The hand-set head for the bundled backbone.

    minor: ``sigmoid(-(age - 18) / 3)`` on the age network's expected age;
    sexual: ``sigmoid(w . features + bias)`` with :data:`SEXUAL_PRIOR_WEIGHTS`.
    """
    from genguard.embedders.bundled.embedder import FACE_DIM, IMAGE_DIM, NUDENET_LABELS

    meta = HeadMetadata(
        backbone="bundled",
        minor_source="face",
        minor_dim=FACE_DIM,
        sexual_dim=IMAGE_DIM,
        hidden=0,
        name="bundled-prior-v1",
        policy=Policy(minor_threshold=0.5, sexual_threshold=0.8, review_minor=0.25, review_sexual=0.4).to_dict(),
        feature_layout=feature_layout or {},
        provenance={"kind": "hand-set prior", "sexual": SEXUAL_PRIOR_WEIGHTS, "minor": "sigmoid(-(expected_age - 18) / 3)"},
    )
    head = Head(meta)
    minor, sexual = head.minor_net, head.sexual_net
    assert isinstance(minor, torch.nn.Linear) and isinstance(sexual, torch.nn.Linear)
    with torch.no_grad():
        minor.weight.zero_()
        minor.weight[0, FACE_DIM - 1] = -100.0 / 3.0
        minor.bias.fill_(6.0)
        sexual.weight.zero_()
        sexual.bias.fill_(SEXUAL_PRIOR_BIAS)
        sexual.weight[0, 0] = SEXUAL_PRIOR_WEIGHTS["nsfw_logit"]
        for label, w in SEXUAL_PRIOR_WEIGHTS.items():
            if label in NUDENET_LABELS:
                sexual.weight[0, 1 + NUDENET_LABELS.index(label)] = w
    return head
