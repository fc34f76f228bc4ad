"""Where the bundled default spends its time: a per-stage breakdown and the overhead share.

Decoding runs first, on this thread, then the decoded frames are screened, so
the stages add up to the total; in the real pipeline decoding overlaps
inference (it runs ahead on two threads). The embedder runs in one lane
(``lanes=1``, onnxruntime's intra-op threads on every core) unless ``lanes`` is given
as an option, so the stages follow one another and add up; ``Guard()`` itself splits
a batch into two lanes side by side (``benchmarks/run.py`` times that). Stages:

- ``decode``: :func:`genguard.load_image` on the encoded files;
- ``pre_post``: the NudeNet letterbox, the open_nsfw whole-frame resize, and every
  other array step inside the embedder not timed below;
- ``nudenet``, ``open_nsfw``, ``age``: the onnxruntime calls alone;
- ``face_finding``: the BlazeFace face finder (its views, model calls, box decoding
  and zoomed checks);
- ``landmarks_chips``: dlib's 5-point landmarks and the aligned 64 px face chips;
- ``head``: the torch head; ``policy_verdict``: the rest of ``Guard`` (policy, reasons, verdict).

Model inference is the three ONNX models, the face finder and dlib's landmark
model; the overhead share is everything else over the total. ``--skip-minor``
profiles the throughput option ``Guard(skip_minor_below_review=True)``.

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
from pathlib import Path
from typing import Any

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


def _timed(fn: Callable[..., Any], key: str, clock: dict[str, float]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            clock[key] += time.perf_counter() - t0

    return wrapper


def _outermost(fn: Callable[..., Any], key: str, clock: dict[str, float]) -> Callable[..., Any]:
    """Like :func:`_timed`, but a call made from inside another call with the same key is not counted again."""
    depth = f"_depth_{key}"

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if clock[depth]:
            return fn(*args, **kwargs)
        clock[depth] += 1
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            clock[key] += time.perf_counter() - t0
            clock[depth] -= 1

    return wrapper


def _run_stages(guard: Any, paths: list[Path], batch: int, load_image: Callable[..., Any], clock: dict[str, float]) -> float:
    emb: Any = guard.embedder
    emb._nudenet = _TimedSession(emb._nudenet, "nudenet", clock)
    emb._nsfw = _TimedSession(emb._nsfw, "open_nsfw", clock)
    emb._age = _TimedSession(emb._age, "age", clock)
    finder = emb.face_stage.finder
    finder.search = _timed(finder.search, "face_finding", clock)
    finder.confirm = _timed(finder.confirm, "face_finding", clock)
    guard.head.score = _outermost(guard.head.score, "head", clock)  # type: ignore[method-assign]
    guard.head.sexual_scores = _outermost(guard.head.sexual_scores, "head", clock)  # type: ignore[method-assign]
    for name in ("embed", "embed_images", "embed_faces"):  # nested calls are counted once, at the outermost
        setattr(emb, name, _outermost(getattr(emb, name), "_embed", clock))

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
    return time.perf_counter() - t_all


def profile(paths: list[Path], batch: int, threads: int | None = None, *, skip_minor: bool = False, **options: Any) -> dict[str, Any]:
    """Per-stage seconds for screening ``paths`` in batches of ``batch`` (after one warm-up batch).

    ``skip_minor`` profiles ``Guard(skip_minor_below_review=True)``; ``options`` go to the bundled embedder.
    """
    from genguard import Guard, load_image
    from genguard.embedders.bundled import face_stage as bundled

    clock: dict[str, float] = defaultdict(float)
    original = bundled.face_chip
    bundled.face_chip = _timed(original, "landmarks_chips", clock)  # type: ignore[assignment]
    try:
        options = {"lanes": 1, **options}  # one lane: stage times add up to the total
        guard = Guard(batch_size=batch, skip_minor_below_review=skip_minor, **({"threads": threads} if threads else {}), **options)
        total = _run_stages(guard, paths, batch, load_image, clock)
    finally:
        bundled.face_chip = original  # type: ignore[assignment]
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
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads (default: every core, in the one lane)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="a bundled embedder option, VALUE as JSON (for example detect_max_side=768); repeatable")
    parser.add_argument("--skip-minor", action="store_true", help="profile Guard(skip_minor_below_review=True)")
    parser.add_argument("--out", type=Path, default=None, help="write the result as JSON here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="genguard-bench-") as tmp:
        corpus = write_corpus(Path(tmp), args.size, args.format)
        paths = [corpus[i % len(corpus)] for i in range(args.images)]
        options = {k: json.loads(v) for k, _, v in (o.partition("=") for o in args.option)}
        result = {"machine": machine(), "format": args.format, "size": args.size, "options": options,
                  **profile(paths, args.batch, args.threads, skip_minor=args.skip_minor, **options)}
    result["machine"]["loadavg_after"] = list(__import__("os").getloadavg())
    print_profile(result)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
