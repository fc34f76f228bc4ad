"""One Guard shared by many threads gives exactly the serial results.

What is safe (docs/reliability.md): ``classify``, ``classify_batch`` and
``iter_classify`` on one Guard from any number of threads. The ONNX sessions are
thread-safe, dlib's detector and landmark model run under a lock, the head is a
torch module in inference mode, and a call keeps no state on the Guard.
Changing a Guard's attributes (``policy``, ``on_error``) while other threads
classify is not.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from conftest import UTKFACE_DIR, painted, utkface_sample
from make_corpus import _animation, encode, shapes
from PIL import Image

from genguard import Guard, Verdict

THREADS = 8


def _run_threads(fn: Callable[[int], list[Verdict]]) -> list[list[Verdict]]:
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        return list(pool.map(fn, range(THREADS)))


def _inputs(benign: dict[str, np.ndarray]) -> list[Any]:
    items: list[Any] = [benign[k] for k in ("astronaut", "coffee", "chelsea")]
    if UTKFACE_DIR.is_dir():  # children and adults, read in place
        items += [str(p) for p in utkface_sample(UTKFACE_DIR, 1, 10, 3) + utkface_sample(UTKFACE_DIR, 30, 60, 2)]
    items += [
        _animation("GIF", 6, size=48),
        encode(Image.fromarray(shapes(1, 3000)), "PNG"),
        b"not an image",
        encode(Image.fromarray(shapes()), "JPEG")[:300],
    ]
    return items


@pytest.mark.slow
def test_eight_threads_sharing_one_real_guard_match_serial(guard: Guard, benign_images: dict[str, np.ndarray]) -> None:
    items = _inputs(benign_images)
    serial = [guard.classify(x) for x in items]

    def worker(seed: int) -> list[Verdict]:
        order = list(range(len(items)))
        random.Random(seed).shuffle(order)  # every thread in a different order
        got: dict[int, Verdict] = {i: guard.classify(items[i]) for i in order}
        return [got[i] for i in range(len(items))]

    for result in _run_threads(worker):
        assert result == serial  # exact: same decisions, same float scores, same reasons


@pytest.mark.slow
def test_threads_running_batches_match_serial_batches(guard: Guard, benign_images: dict[str, np.ndarray]) -> None:
    items = _inputs(benign_images)
    serial = guard.classify_batch(items, batch_size=4)
    for result in _run_threads(lambda _: guard.classify_batch(items, batch_size=4)):
        assert result == serial


def test_stub_guard_shared_by_threads(stub_guard: Callable[..., Guard]) -> None:
    guard = stub_guard(batch_size=3)
    items = [painted(i / 40, (40 - i) / 40, age=i % 3) for i in range(40)] + [b"junk"]
    serial = guard.classify_batch(items)
    for result in _run_threads(lambda _: guard.classify_batch(items)):
        assert result == serial
