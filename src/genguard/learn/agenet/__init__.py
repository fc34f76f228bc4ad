"""Fine-tuning the bundled age network for minor detection (issue 13, in progress).

- :mod:`.model`: age-v1 in torch, built from its ONNX initialisers (equal within 1e-4),
  with an under-12/15/18 branch, and the export back to ONNX;
- :mod:`.augment`: the augmentations and soft targets the trainer uses.

The trainer, the chip cache cut by the pipeline's face stage, and the shipping of a tuned
network are not on main yet: the face stage changed under them (see the closing note).
"""
