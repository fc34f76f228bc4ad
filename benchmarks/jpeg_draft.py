"""CPU cost of decoding a large JPEG in full and with Pillow's draft mode (DCT scaling while decoding).

Supports the proposed ``draft`` option of ``load_image``: a 4096x4096 JPEG
(the astronaut photo, upscaled; quality 90) decoded to RGB in full, and with
``Image.draft("RGB", (N, N))``, which scales by 1/2, 1/4 or 1/8 while decoding,
never below N pixels on either side.

Run::

    python benchmarks/jpeg_draft.py
"""

from __future__ import annotations

import io
import time

import numpy as np
from PIL import Image


def decode_cpu_ms(data: bytes, draft: int | None, repeats: int = 5) -> tuple[float, tuple[int, ...]]:
    """CPU milliseconds per decode, and the decoded array's shape."""
    t0 = time.process_time()
    for _ in range(repeats):
        with Image.open(io.BytesIO(data)) as img:
            if draft is not None:
                img.draft("RGB", (draft, draft))
            arr = np.asarray(img.convert("RGB"))
    return 1000 * (time.process_time() - t0) / repeats, arr.shape


def main() -> None:
    import skimage.data

    img = Image.fromarray(skimage.data.astronaut()).resize((4096, 4096), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    for draft in (None, 2048, 1024):
        ms, shape = decode_cpu_ms(buf.getvalue(), draft)
        print(f"draft={draft}: {ms:.1f} cpu ms, decoded {shape[1]}x{shape[0]}")


if __name__ == "__main__":
    main()
