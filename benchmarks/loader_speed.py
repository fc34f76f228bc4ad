"""CPU time of the loader on ordinary opaque images: ``load_image`` on 1024 x 1024 JPEG and PNG and 512 x 512 JPEG.

The decode stage is the only part of the scoring path that the loader's rules (alpha views,
frame walk, memory plan, regular-file checks) touch for an opaque still image; the models are
unchanged. Timing it alone, in CPU seconds of this process, is far steadier than end-to-end
wall time on a busy machine. Run it against two checkouts to compare them, alternating::

    PYTHONPATH=OLD/src python benchmarks/loader_speed.py --out old.json
    PYTHONPATH=NEW/src python benchmarks/loader_speed.py --out new.json

Images: scikit-image's astronaut and coffee photos, resized, written to a temporary folder and
loaded from their paths (as the CLI does).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=7, help="timed passes over the images (default 7)")
    ap.add_argument("--repeat", type=int, default=20, help="loads of each image per pass (default 20)")
    ap.add_argument("--out", default=None, help="write the figures as JSON here")
    args = ap.parse_args(argv)
    import genguard
    from genguard.imageio import load_image
    from skimage import data

    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for name, side, fmt in (("1024-jpeg", 1024, "JPEG"), ("1024-png", 1024, "PNG"), ("512-jpeg", 512, "JPEG")):
            paths = []
            for k, photo in enumerate((data.astronaut(), data.coffee())):
                p = Path(tmp) / f"{name}-{k}.{fmt.lower()}"
                Image.fromarray(np.asarray(photo)).resize((side, side)).save(p, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
                paths.append(p)
            files[name] = paths
        for name, paths in files.items():
            for p in paths:
                load_image(p)  # warm-up
            per_round = []
            for _ in range(args.rounds):
                c = time.process_time()
                for _ in range(args.repeat):
                    for p in paths:
                        load_image(p)
                per_round.append((time.process_time() - c) / (args.repeat * len(paths)) * 1000)
            rows[name] = {"cpu_ms_median": statistics.median(per_round), "cpu_ms_min": min(per_round), "rounds": per_round}
            print(f"{name:10} load_image cpu ms/image: median {rows[name]['cpu_ms_median']:6.2f}  min {rows[name]['cpu_ms_min']:6.2f}", flush=True)
    result = {"genguard": genguard.__file__, "load_avg": os.getloadavg(), "rows": rows}
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
