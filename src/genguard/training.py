"""Training heads: the prior head, and `genguard train` on labelled embeddings."""

from __future__ import annotations

import logging
from typing import Any

import torch

from .embedders.bundled import FACE_DIM, IMAGE_DIM, NUDENET_LABELS
from .head import Head, HeadMetadata
from .policy import Policy

__all__ = ["SEXUAL_PRIOR_WEIGHTS", "prior_head"]

logger = logging.getLogger(__name__)

# The sexual axis cannot be trained here: no sexual images may be used. Its
# branch is set by hand over the bundled detectors' own outputs (see
# models/MODEL_CARD.md): open_nsfw's logit, plus NudeNet's exposed-part scores.
SEXUAL_PRIOR_WEIGHTS: dict[str, float] = {
    "nsfw_logit": 1.0,
    "FEMALE_GENITALIA_EXPOSED": 2.0,
    "MALE_GENITALIA_EXPOSED": 2.0,
    "ANUS_EXPOSED": 2.0,
    "FEMALE_BREAST_EXPOSED": 2.0,
    "BUTTOCKS_EXPOSED": 1.0,
}
SEXUAL_PRIOR_BIAS = 0.0


def _set_sexual_prior(head: Head) -> None:
    linear = head.sexual_net
    assert isinstance(linear, torch.nn.Linear)
    with torch.no_grad():
        linear.weight.zero_()
        linear.bias.fill_(SEXUAL_PRIOR_BIAS)
        linear.weight[0, 0] = SEXUAL_PRIOR_WEIGHTS["nsfw_logit"]
        for label, w in SEXUAL_PRIOR_WEIGHTS.items():
            if label in NUDENET_LABELS:
                linear.weight[0, 1 + NUDENET_LABELS.index(label)] = w


def prior_head(feature_layout: dict[str, Any] | None = None) -> Head:
    """The hand-set head for the bundled backbone, used before any training.

    minor: ``sigmoid(-(age - 18) / 3)`` on the age network's expected age;
    sexual: ``sigmoid(SEXUAL_PRIOR_WEIGHTS . features)``.
    """
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
    minor = head.minor_net
    assert isinstance(minor, torch.nn.Linear)
    with torch.no_grad():
        minor.weight.zero_()
        minor.weight[0, FACE_DIM - 1] = -100.0 / 3.0
        minor.bias.fill_(6.0)
    _set_sexual_prior(head)
    return head
