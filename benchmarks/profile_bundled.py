"""Where the bundled default spends its time: a per-stage breakdown and the overhead share.

Everything runs on one thread, one stage after another (the embedder's
face-finding worker is replaced by an inline stand-in), so the stages add up
to the total; in the real pipeline decoding and face finding overlap
inference. onnxruntime keeps its own intra-op threads. Stages:

- ``decode``: :func:`genguard.load_image` on the encoded files;
- ``pre_post``: the NudeNet letterbox and box decoding, the open_nsfw
  whole-frame resize, and every other array step inside ``embed`` not timed below;
- ``nudenet``, ``open_nsfw``, ``age``: the onnxruntime calls alone;
- ``face_finding``: dlib's HOG detector (with its downscale) and box merging;
- ``landmarks_chips``: dlib's 5-point landmarks and the aligned face chips;
- ``head``: the torch head; ``policy_verdict``: the rest of ``Guard`` (policy, reasons, verdict).

Model inference is the three ONNX models plus dlib's detector and landmark
model; the overhead share is everything else over the total.

Run::

    python benchmarks/profile_bundled.py --format JPEG --size 1024 --batch 8 --images 32
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Self

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, write_corpus

MODEL_STAGES = ("nudenet", "open_nsfw", "age", "face_finding", "landmarks_chips")
ORDER = ("decode", "pre_post", *MODEL_STAGES, "head", "policy_verdict")


class _TimedSession:
    """Forwards to an onnxruntime session, adding each ``run`` call's time to ``clock[key]``."""

    def __init__(self, session: Any, key: str, clock: dict[str, float]) -> None:
        self._session, self._key, self._clock = session, key, clock

    def run(self, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return self._session.run(*args, **kwargs)
        finally:
            self._clock[self._key] += time.perf_counter() - t0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


class _InlineExecutor:
    """Stands in for the embedder's face-finding thread pool: runs each task at once, on this thread."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 -- handed back through the future, as a pool would
            future.set_exception(exc)
        return future


def _timed(fn: Callable[..., Any], key: str, clock: dict[str, float]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            clock[key] += time.perf_counter() - t0

    return wrapper


def _run_stages(guard: Any, paths: list[Path], batch: int, load_image: Callable[..., Any]) -> tuple[dict[str, float], float]:
    emb: Any = guard.embedder
    clock: dict[str, float] = defaultdict(float)
    emb._nudenet = _TimedSession(emb._nudenet, "nudenet", clock)
    emb._nsfw = _TimedSession(emb._nsfw, "open_nsfw", clock)
    emb._age = _TimedSession(emb._age, "age", clock)
    emb._find_faces = _timed(emb._find_faces, "face_finding", clock)
    emb._align = _timed(emb._align, "landmarks_chips", clock)
    guard.head.score = _timed(guard.head.score, "head", clock)  # type: ignore[method-assign]
    embed = _timed(emb.embed, "_embed", clock)
    emb.embed = embed

    guard.classify_batch(paths[:batch], workers=1)  # warm-up
    clock.clear()
    t_all = time.perf_counter()
    for start in range(0, len(paths), batch):
        chunk = paths[start : start + batch]
        t0 = time.perf_counter()
        frames = [load_image(p).frames[0] for p in chunk]
        clock["decode"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        guard.classify_batch(frames, workers=1)
        clock["_classify"] += time.perf_counter() - t0
    return clock, time.perf_counter() - t_all


def profile(paths: list[Path], batch: int, threads: int | None = None, **options: Any) -> dict[str, Any]:
    """Per-stage seconds for screening ``paths`` in batches of ``batch`` (after one warm-up batch).

    ``options`` go to the bundled embedder (for example ``small_faces=False``).
    """
    from genguard import Guard, load_image
    from genguard.embedders.bundled import embedder as bundled

    original = bundled.ThreadPoolExecutor
    bundled.ThreadPoolExecutor = _InlineExecutor
    try:
        guard = Guard(batch_size=batch, **({"threads": threads} if threads else {}), **options)
        clock, total = _run_stages(guard, paths, batch, load_image)
    finally:
        bundled.ThreadPoolExecutor = original
    inner = sum(clock[k] for k in MODEL_STAGES)
    clock["pre_post"] = clock["_embed"] - inner
    clock["policy_verdict"] = clock["_classify"] - clock["_embed"] - clock["head"]
    n = len(paths)
    stages = {k: 1000.0 * clock[k] / n for k in ORDER}
    model_ms = sum(stages[k] for k in MODEL_STAGES)
    total_ms = 1000.0 * total / n
    return {
        "images": n,
        "batch": batch,
        "ms_per_image": stages,
        "total_ms_per_image": total_ms,
        "model_ms_per_image": model_ms,
        "overhead_share": 1.0 - model_ms / total_ms,
    }


def print_profile(result: dict[str, Any]) -> None:
    total = result["total_ms_per_image"]
    print(f"{'stage':18s} {'ms/image':>9s} {'share':>7s}")
    for key, ms in result["ms_per_image"].items():
        tag = " (model)" if key in MODEL_STAGES else ""
        print(f"{key:18s} {ms:9.1f} {ms / total:7.1%}{tag}")
    print(f"{'total':18s} {total:9.1f}")
    print(f"overhead outside model inference: {result['overhead_share']:.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--format", choices=("JPEG", "PNG"), default="JPEG")
    parser.add_argument("--size", type=int, default=1024, help="square image side in pixels")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--images", type=int, default=32, help="images timed (the 16-image corpus is cycled)")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads (default: onnxruntime's)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="a bundled embedder option, VALUE as JSON (for example small_faces=false); repeatable")
    parser.add_argument("--out", type=Path, default=None, help="write the result as JSON here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="genguard-bench-") as tmp:
        corpus = write_corpus(Path(tmp), args.size, args.format)
        paths = [corpus[i % len(corpus)] for i in range(args.images)]
        options = {k: json.loads(v) for k, _, v in (o.partition("=") for o in args.option)}
        result = {"machine": machine(), "format": args.format, "size": args.size, "options": options,
                  **profile(paths, args.batch, args.threads, **options)}
    result["machine"]["loadavg_after"] = list(__import__("os").getloadavg())
    print_profile(result)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
