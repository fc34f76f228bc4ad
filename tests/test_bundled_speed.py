"""The bundled embedder's speed work changes no result: sessions, letterbox, the stages, skips, CUDA.

Speed itself is measured in benchmarks/, never here.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest

from genguard import Guard
from genguard.embedders.bundled import assets as _assets
from genguard.embedders.bundled import embedder as bundled
from genguard.embedders.bundled import inputs


def _reference_letterbox(frame: np.ndarray, size: int) -> np.ndarray:
    """The letterbox as first written: pad to a square canvas, resize, scale to [0, 1], CHW."""
    h, w = frame.shape[:2]
    side = max(h, w)
    square = np.zeros((side, side, 3), dtype=np.uint8)
    square[:h, :w] = frame
    resized = square if side == size else inputs.resize(square, size, size)
    return np.ascontiguousarray(resized.transpose(2, 0, 1), dtype=np.float32) / np.float32(255.0)


class _CountingSession:
    def __init__(self, session: Any) -> None:
        self.session, self.calls = session, 0

    def run(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.session.run(*args, **kwargs)


def test_sessions_respect_threads_and_do_not_spin() -> None:
    session = _assets.onnx_session("age", threads=1)
    options = session.get_session_options()
    assert options.intra_op_num_threads == 1
    assert options.inter_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


@pytest.mark.parametrize("shape", [(1024, 1024), (320, 320), (700, 1000), (1000, 700), (999, 1000)])
def test_letterbox_matches_the_padded_reference_bit_for_bit(shape: tuple[int, int]) -> None:
    frame = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    frame.flags.writeable = False  # frames from load_image are read-only
    out = inputs.letterbox(frame, 320)
    assert out.shape == (3, 320, 320) and out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, _reference_letterbox(frame, 320))


def test_staged_embedding_equals_embed(guard: Guard, benign_images: dict[str, Any]) -> None:
    frames = [benign_images["astronaut"], benign_images["coffee"]]
    emb: Any = guard.embedder
    images = emb.embed_images(frames)
    assert [e.faces_searched for e in images] == [False, False] and all(e.faces == () for e in images)
    staged = emb.embed_faces(frames, images)
    for a, b in zip(emb.embed(frames), staged, strict=True):
        np.testing.assert_array_equal(a.vector, b.vector)
        assert b.faces_searched and [f.box for f in a.faces] == [f.box for f in b.faces]
        for fa, fb in zip(a.faces, b.faces):
            np.testing.assert_array_equal(fa.vector, fb.vector)
    with pytest.raises(ValueError, match="2 frames but 1"):
        emb.embed_faces(frames, images[:1])


def test_face_models_are_skipped_only_when_no_face_is_found(guard: Guard, benign_images: dict[str, Any]) -> None:
    emb = bundled.BundledEmbedder()
    emb._age = age = _CountingSession(emb._age)  # type: ignore[assignment]
    emb._nsfw = nsfw = _CountingSession(emb._nsfw)  # type: ignore[assignment]
    no_faces = emb.embed([benign_images["coffee"]])
    assert no_faces[0].faces == () and age.calls == 0 and nsfw.calls == 1
    with_face = emb.embed([benign_images["astronaut"]])
    assert with_face[0].faces and age.calls == 1 and nsfw.calls == 2  # open_nsfw sees whole frames only


@pytest.mark.parametrize("n", [1, 3])
def test_face_finding_errors_reach_the_caller(benign_images: dict[str, Any], n: int) -> None:
    """One frame: the face stage fails on the caller's thread; three frames: in the other lane's thread."""
    emb = bundled.BundledEmbedder(lanes=2)
    caller, search = threading.current_thread(), emb.face_stage.finder.search

    def broken(frames: Any) -> Any:
        if n == 1 or threading.current_thread() is not caller:
            raise RuntimeError("face finder failed")
        return search(frames)

    emb.face_stage.finder.search = broken  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="face finder failed"):
        emb.embed([benign_images["astronaut"]] * n)


def _frames_for_lanes(benign_images: dict[str, Any]) -> list[np.ndarray]:
    a = benign_images["astronaut"]
    return [a, benign_images["coffee"], np.ascontiguousarray(a[:, ::-1]), benign_images["chelsea"], a[64:448, 32:480]]


def _assert_same(a: list[Any], b: list[Any]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.vector, y.vector)
        assert x.faces_searched == y.faces_searched and [f.box for f in x.faces] == [f.box for f in y.faces]
        for fx, fy in zip(x.faces, y.faces, strict=True):
            np.testing.assert_array_equal(fx.vector, fy.vector)


def test_lanes_change_no_result(guard: Guard, benign_images: dict[str, Any]) -> None:
    """Splitting a batch into lanes (or a single frame by stage) gives bit-identical embeddings."""
    frames = _frames_for_lanes(benign_images)
    one = bundled.BundledEmbedder(lanes=1)
    reference = one.embed(frames)
    assert sum(len(e.faces) for e in reference) >= 3  # the astronaut's face, three times
    for lanes in (2, 3):
        emb = bundled.BundledEmbedder(lanes=lanes)
        _assert_same(emb.embed(frames), reference)
        _assert_same(emb.embed(frames[:1]), reference[:1])  # one frame: split by stage
        images = emb.embed_images(frames)
        _assert_same(images, one.embed_images(frames))
        _assert_same(emb.embed_faces(frames, images), reference)
    assert bundled.BundledEmbedder(lanes=2).embed([]) == []


def test_lanes_must_be_positive() -> None:
    with pytest.raises(ValueError, match="lanes must be at least 1"):
        bundled.BundledEmbedder(lanes=0)


def _has_cuda() -> bool:
    import onnxruntime as ort
    import torch

    return "CUDAExecutionProvider" in ort.get_available_providers() and torch.cuda.is_available()


@pytest.mark.skipif(not _has_cuda(), reason="needs a GPU with onnxruntime-gpu and CUDA torch")
def test_cuda_runs_onnx_and_the_head_on_the_gpu(benign_images: dict[str, Any]) -> None:
    gpu = Guard(device="cuda")
    emb: Any = gpu.embedder
    for session in (emb._age, emb._nsfw, emb._nudenet, emb.face_stage.finder.session):
        assert session.get_providers()[0] == "CUDAExecutionProvider"
    assert gpu.head.minor_mean.device.type == "cuda"
    cpu = Guard()
    a, b = gpu.classify(benign_images["astronaut"]), cpu.classify(benign_images["astronaut"])
    assert a.decision == b.decision
    assert abs(a.scores.minor - b.scores.minor) < 1e-3 and abs(a.scores.sexual - b.scores.sexual) < 1e-3


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_a_forked_child_embeds_in_lanes(benign_images: dict[str, Any]) -> None:
    """A child forked after the lanes' threads started gets its own pool instead of hanging on dead threads."""
    import multiprocessing

    emb = bundled.BundledEmbedder(lanes=2, threads=1)  # one onnxruntime thread per lane: no onnxruntime pool to fork
    frames = [benign_images["astronaut"], benign_images["coffee"]]
    expected = [len(e.faces) for e in emb.embed(frames)]  # starts the lane thread in this process
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=lambda: queue.put([len(e.faces) for e in emb.embed(frames)]))
    child.start()
    child.join(timeout=60)
    alive = child.is_alive()
    if alive:
        child.kill()
    assert not alive and child.exitcode == 0
    assert queue.get(timeout=5) == expected
