"""OpenCLIP backbones: the image tower, local weights only (never downloaded at run time), a zero-shot head.

- :mod:`.embedder`: :class:`ClipEmbedder`;
- :mod:`.weights`: where weights come from (safetensors only) and the explicit download command;
- :mod:`.zeroshot`: the zero-shot head built from the prompt files in ``prompts/``.

Importing this package does not import open_clip or torch.
"""
