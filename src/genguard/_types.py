"""Type aliases shared across genguard."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, TypeAlias

if TYPE_CHECKING:
    import os
    from typing import IO

    import numpy as np
    import numpy.typing as npt
    from PIL import Image

ImageInput: TypeAlias = "str | os.PathLike[str] | bytes | bytearray | memoryview | IO[bytes] | Image.Image | npt.NDArray[np.uint8]"
"""What every entry point accepts: a path, encoded bytes, a binary file object,
a PIL image, or an ``HxWx3`` (or ``HxW``/``HxWx4``) uint8 array."""

RGBArray: TypeAlias = "npt.NDArray[np.uint8]"
"""A C-contiguous ``HxWx3`` uint8 RGB array."""

FloatArray: TypeAlias = "npt.NDArray[np.float32]"

Decision: TypeAlias = Literal["allow", "review", "block"]
OnError: TypeAlias = Literal["block", "allow", "raise"]
Box: TypeAlias = tuple[int, int, int, int]
"""``(left, top, right, bottom)`` in pixels of the decoded frame, exclusive of right/bottom."""

__all__ = ["Box", "Decision", "FloatArray", "ImageInput", "OnError", "RGBArray"]
