"""The CLIP backbone, through its public path, on a tiny OpenCLIP model with random weights.

No pretrained CLIP weights exist on the test machines, so a tiny architecture is
registered with open_clip, its random weights are saved to a temporary
.safetensors file, and every test builds from that file exactly as a user's
``clip:MODEL/PATH`` would. Images are benign (scikit-image photos and synthetic
colour fields); nothing here touches the network.
"""

from __future__ import annotations

import io
import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

open_clip = pytest.importorskip("open_clip")

from genguard import Guard  # noqa: E402
from genguard.embedders import create_embedder  # noqa: E402
from genguard.embedders.clip.embedder import WEIGHTS_ENV, ClipEmbedder, download_weights, resolve_weights  # noqa: E402
from genguard.errors import GenguardError, ModelFileError, UnknownBackboneError  # noqa: E402
from genguard.heads.head import load_head  # noqa: E402
from genguard.embedders.clip.zeroshot import PROMPT_FILES, build_zero_shot_head, cache_path, default_prompt_dir, read_prompts, zero_shot_head  # noqa: E402

TINY = "GenguardTinyCLIP"
_TEXT = {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}


def _register(folder: Path, name: str, embed_dim: int) -> None:
    cfg = {"embed_dim": embed_dim, "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16}, "text_cfg": _TEXT}
    (folder / f"{name}.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(folder / f"{name}.json")


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random weights of a registered 32-d CLIP (one layer per tower), as .safetensors."""
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("tinyclip")
    _register(folder, TINY, 32)
    _register(folder, TINY + "Wide", 48)
    torch.manual_seed(0)
    model = open_clip.create_model(TINY)
    path = folder / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENGUARD_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)


@pytest.fixture
def backbone(tiny_weights: Path) -> str:
    return f"clip:{TINY}/{tiny_weights}"


def _frames(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (40 + 7 * i, 50 + 5 * i, 3), dtype=np.uint8) for i in range(n)]


# ------------------------------------------------------------------ embedder
def test_embedder_from_local_file(backbone: str, tiny_weights: Path, benign_images: dict[str, np.ndarray]) -> None:
    emb = create_embedder(backbone)
    assert isinstance(emb, ClipEmbedder)
    assert emb.name.startswith(f"clip:{TINY}/tiny.safetensors@sha256:")
    assert (emb.face_dim, emb.image_dim) == (0, 32)
    assert emb.feature_layout["image"] == {"clip": [0, 32]}
    out = emb.embed([benign_images["astronaut"], benign_images["coffee"]])
    assert [e.vector.shape for e in out] == [(32,), (32,)]
    assert all(e.vector.dtype == np.float32 and e.faces == () for e in out)
    np.testing.assert_allclose([np.linalg.norm(e.vector) for e in out], 1.0, atol=1e-5)
    assert not np.allclose(out[0].vector, out[1].vector)
    assert emb.embed([]) == []


def test_batch_equals_one_by_one(tiny_weights: Path) -> None:
    emb = ClipEmbedder(TINY, str(tiny_weights), batch_size=3)
    frames = _frames(7)
    batched = emb.embed(frames)
    for frame, b in zip(frames, batched):
        np.testing.assert_allclose(emb.embed([frame])[0].vector, b.vector, atol=1e-5)


def test_name_follows_the_file_content_not_its_path(tiny_weights: Path, tmp_path: Path) -> None:
    copy = tmp_path / "tiny.safetensors"
    shutil.copy(tiny_weights, copy)
    assert ClipEmbedder(TINY, str(copy)).name == ClipEmbedder(TINY, str(tiny_weights)).name


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without a GPU")
def test_cuda_without_gpu_raises(tiny_weights: Path) -> None:
    with pytest.raises(GenguardError, match="CUDA"):
        ClipEmbedder(TINY, str(tiny_weights), device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu(tiny_weights: Path) -> None:
    frames = _frames(3)
    cpu = ClipEmbedder(TINY, str(tiny_weights)).embed(frames)
    gpu = ClipEmbedder(TINY, str(tiny_weights), device="cuda").embed(frames)  # fp16 by default on CUDA
    for a, b in zip(cpu, gpu):
        assert b.vector.dtype == np.float32
        np.testing.assert_allclose(a.vector, b.vector, atol=2e-2)


# ------------------------------------------------------------ weights lookup
def test_missing_local_file_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "w.safetensors"
    with pytest.raises(ModelFileError, match="w.safetensors") as info:
        Guard(f"clip:{TINY}/{missing}")
    assert str(missing) in str(info.value) and WEIGHTS_ENV in str(info.value)


def test_missing_tag_weights_name_model_file_and_remedies(tmp_path: Path) -> None:
    hub = tmp_path / "hub"
    with pytest.raises(ModelFileError) as info:
        Guard("clip:ViT-B-32/laion2b_s34b_b79k", cache_dir=hub)
    msg = str(info.value)
    for part in ("ViT-B-32/laion2b_s34b_b79k", "open_clip_model.safetensors", str(hub), "genguard weights", "weights=PATH", WEIGHTS_ENV):
        assert part in msg


def test_tag_weights_found_in_the_hub_cache(tmp_path: Path) -> None:
    repo = tmp_path / "models--laion--CLIP-ViT-B-32-laion2B-s34B-b79K"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    snapshot = repo / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (snapshot / "open_clip_model.safetensors").write_bytes(b"")  # located, not loaded
    found = resolve_weights("ViT-B-32", "laion2b_s34b_b79k", cache_dir=tmp_path)
    assert found == snapshot / "open_clip_model.safetensors"


def test_pickles_are_refused(tmp_path: Path) -> None:
    pickle_file = tmp_path / "model.pt"
    pickle_file.write_bytes(b"never read")
    with pytest.raises(ModelFileError, match="pickle"):
        ClipEmbedder(TINY, str(pickle_file))


def test_explicit_weights_and_environment(tiny_weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = tmp_path / "other.safetensors"
    other.write_bytes(b"")
    assert resolve_weights("ViT-B-32", "laion2b_s34b_b79k", weights=other) == other
    monkeypatch.setenv(WEIGHTS_ENV, str(tiny_weights))
    assert resolve_weights("ViT-B-32", "laion2b_s34b_b79k", cache_dir=tmp_path) == tiny_weights
    assert resolve_weights("ViT-B-32", "laion2b_s34b_b79k", weights=other) == other  # the argument wins
    assert resolve_weights(TINY, str(other)) == other  # a file in the name wins over the environment


def test_weights_that_do_not_fit_the_model(tiny_weights: Path) -> None:
    with pytest.raises(ModelFileError, match="does not hold weights"):
        ClipEmbedder(TINY + "Wide", str(tiny_weights))


def test_unknown_model_and_tag_list_the_choices() -> None:
    with pytest.raises(UnknownBackboneError, match="ViT-B-32"):
        create_embedder("clip:NoSuchModel/x")
    with pytest.raises(UnknownBackboneError, match="laion2b_s34b_b79k"):
        create_embedder("clip:ViT-B-32/no_such_tag")


def test_download_fails_fast_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens: refused at once
    started = time.monotonic()
    with pytest.raises(GenguardError, match="cannot reach"):
        download_weights("clip", cache_dir=None)
    assert time.monotonic() - started < 10
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(GenguardError, match="HF_HUB_OFFLINE"):
        download_weights("clip:ViT-B-32/laion2b_s34b_b79k", cache_dir=None)
    with pytest.raises(UnknownBackboneError):
        download_weights("bundled", cache_dir=None)


# ----------------------------------------------------------------- guard
def test_guard_classify_and_batch(backbone: str, benign_images: dict[str, np.ndarray]) -> None:
    guard = Guard(backbone, batch_size=2)
    name = guard.embedder.name
    assert guard.head.identifier == f"zeroshot@{name}"
    buf = io.BytesIO()
    from PIL import Image

    Image.fromarray(benign_images["chelsea"]).save(buf, format="PNG")
    images: list[Any] = [benign_images["astronaut"], buf.getvalue(), benign_images["rocket"]]
    batch = guard.classify_batch(images)
    for image, verdict in zip(images, batch):
        one = guard.classify(image)
        assert verdict.backbone == name and verdict.error is None
        assert 0.0 <= verdict.scores.minor <= 1.0 and 0.0 <= verdict.scores.sexual <= 1.0
        assert one.scores.minor == pytest.approx(verdict.scores.minor, abs=1e-5)
        assert one.scores.sexual == pytest.approx(verdict.scores.sexual, abs=1e-5)
        assert one.decision == guard.policy.decide(one.scores.minor, one.scores.sexual)


# -------------------------------------------------------------- zero-shot
def test_prompt_files_are_shipped_and_readable() -> None:
    for pair in PROMPT_FILES.values():
        for name in pair:
            prompts = read_prompts(default_prompt_dir() / name)
            assert len(prompts) >= 8 and not any(p.startswith("#") for p in prompts)


def test_zero_shot_head_is_clips_two_way_softmax(tiny_weights: Path) -> None:
    emb = ClipEmbedder(TINY, str(tiny_weights))
    head = build_zero_shot_head(emb)
    meta = head.metadata
    assert (meta.minor_source, meta.minor_dim, meta.sexual_dim, meta.hidden) == ("image", 32, 32, 0)
    assert meta.calibrated == {"minor": False, "sexual": False}
    assert meta.provenance["status"] == "uncalibrated" and len(meta.provenance["prompts_sha256"]) == 64
    vectors = [e.vector for e in emb.embed(_frames(4))]
    scores = head.score(emb.embed(_frames(4)))
    for axis, (pos, neg) in PROMPT_FILES.items():
        t = [emb.encode_text(read_prompts(default_prompt_dir() / f)).mean(axis=0) for f in (pos, neg)]
        t = [v / np.linalg.norm(v) for v in t]
        for v, s in zip(vectors, scores):
            expected = 1.0 / (1.0 + np.exp(-emb.logit_scale * (v @ t[0] - v @ t[1])))
            assert getattr(s, axis) == pytest.approx(expected, abs=1e-4)


def test_zero_shot_head_is_cached(backbone: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    first = Guard(backbone)
    digest = first.head.metadata.provenance["prompts_sha256"]
    cached = cache_path(first.embedder.name, digest, tmp_path / "cache" / "zeroshot")
    assert cached.with_suffix(".json").is_file() and cached.with_suffix(".safetensors").is_file()
    assert load_head(cached).metadata.calibrated == {"minor": False, "sexual": False}

    def no_text_tower(self: ClipEmbedder, texts: Any) -> Any:
        raise AssertionError("the cached head should have been read")

    monkeypatch.setattr(ClipEmbedder, "encode_text", no_text_tower)
    second = Guard(backbone)
    for a, b in zip(first.head.state_dict().values(), second.head.state_dict().values()):
        assert torch.equal(a, b)


def test_changed_prompt_file_changes_the_key(tiny_weights: Path, tmp_path: Path) -> None:
    emb = ClipEmbedder(TINY, str(tiny_weights))
    prompts = tmp_path / "prompts"
    shutil.copytree(default_prompt_dir(), prompts)
    base = zero_shot_head(emb, cache_dir=tmp_path / "zs")
    with open(prompts / "adult.txt", "a", encoding="utf-8") as fh:
        fh.write("a photo of an adult at work\n")
    changed = zero_shot_head(emb, cache_dir=tmp_path / "zs", prompt_dir=prompts)
    assert changed.metadata.provenance["prompts_sha256"] != base.metadata.provenance["prompts_sha256"]
    assert len(list((tmp_path / "zs").glob("*.json"))) == 2
    assert not torch.equal(changed.minor_net.weight, base.minor_net.weight)
    assert torch.equal(changed.sexual_net.weight, base.sexual_net.weight)


def test_empty_prompt_file_is_an_error(tiny_weights: Path, tmp_path: Path) -> None:
    prompts = tmp_path / "prompts"
    shutil.copytree(default_prompt_dir(), prompts)
    (prompts / "sexual.txt").write_text("# only a comment\n")
    with pytest.raises(GenguardError, match="sexual.txt"):
        zero_shot_head(ClipEmbedder(TINY, str(tiny_weights)), prompt_dir=prompts)


# -------------------------------------------------------------- training
def _colour_fields(folder: Path, n: int, seed: int) -> list[dict[str, Any]]:
    """Benign synthetic images whose two arbitrary 0/1 labels are carried by the red and blue levels."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        minor, sexual = i % 2, (i // 2) % 2
        base = np.array([200 if minor else 40, 120, 200 if sexual else 40], np.float32)
        image = np.clip(base + rng.normal(0, 25, (48, 48, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(image).save(folder / f"s{seed}-{i:03d}.png")
        rows.append({"path": f"s{seed}-{i:03d}.png", "minor": minor, "sexual": sexual})
    return rows


def test_train_a_head_on_clip_embeddings(backbone: str, tmp_path: Path) -> None:
    import csv

    from genguard.learn.cache import EmbeddingCache
    from genguard.learn.training import train

    rows = _colour_fields(tmp_path / "data", 48, seed=1)
    with open(tmp_path / "data" / "labels.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, ["path", "minor", "sexual"])
        writer.writeheader()
        writer.writerows(rows)
    train([tmp_path / "data" / "labels.csv"], out=tmp_path / "head", backbone=backbone, hidden=8, epochs=40, lr=1e-2, cache_dir=tmp_path / "emb")

    guard = Guard(backbone, head=tmp_path / "head")
    meta = guard.head.metadata
    assert meta.backbone == guard.embedder.name and meta.minor_source == "image" and meta.hidden == 8
    assert meta.calibrated == {"minor": True, "sexual": True}
    assert len(list(EmbeddingCache(guard.embedder, tmp_path / "emb").dir.rglob("*.npz"))) == 48

    held_out = _colour_fields(tmp_path / "held_out", 16, seed=2)
    verdicts = guard.classify_batch([tmp_path / "held_out" / r["path"] for r in held_out])
    for axis in ("minor", "sexual"):
        predicted = [getattr(v.scores, axis) >= 0.5 for v in verdicts]
        accuracy = np.mean([p == bool(r[axis]) for p, r in zip(predicted, held_out)])
        assert accuracy >= 0.9, (axis, accuracy)


def test_docstring_examples() -> None:
    import doctest

    from genguard.embedders.clip import zeroshot
    from genguard.embedders.clip import embedder as clip
    from genguard.embedders.clip import weights as _clip_weights

    for module in (zeroshot, clip, _clip_weights):
        assert doctest.testmod(module, raise_on_error=False).failed == 0
