"""Scoring heads: the small torch model behind the two scores, and the heads genguard ships.

A head is ``NAME.safetensors`` (weights) plus ``NAME.json`` (backbone, feature
layout, thresholds, calibration, provenance). The shipped heads sit beside this
file and their sha256 digests are recorded in :mod:`.shipped`.
"""

from genguard.heads.head import FORMAT_VERSION, Head, HeadMetadata, ImageScores, load_head

__all__ = ["FORMAT_VERSION", "Head", "HeadMetadata", "ImageScores", "load_head"]
