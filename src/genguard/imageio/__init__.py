"""The one loader: every image enters genguard here (formats, pixels, limits).

>>> from genguard.imageio import load_image   # doctest: +SKIP
"""

from genguard.imageio.loader import MAX_BYTES, MAX_FRAMES, MAX_PIXELS, MAX_WORK_BYTES, LoadedImage, load_image

__all__ = ["MAX_BYTES", "MAX_FRAMES", "MAX_PIXELS", "MAX_WORK_BYTES", "LoadedImage", "load_image"]
