"""PDQ blocklist: parsing, matching of altered copies of benign photos, the fast index, the Guard hook.

Benign images only (scikit-image photos); no image here is sexual.
"""

from __future__ import annotations

import doctest
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import genguard.defences.blocklist.bank as blocklist_module
from genguard.defences.blocklist import Blocklist, FrameHash, hash_image, pdq_hash
from genguard.errors import BlocklistError

LISTED = ("astronaut", "coffee", "camera")
UNLISTED = ("chelsea", "rocket")


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    from skimage import data

    out = {n: getattr(data, n)() for n in ("astronaut", "coffee", "chelsea", "rocket")}
    out["camera"] = np.repeat(data.camera()[:, :, None], 3, axis=2)
    return out


@pytest.fixture(scope="module")
def blocklist(photos: dict[str, np.ndarray]) -> Blocklist:
    return Blocklist(hash_image(photos[n]) for n in LISTED)


def _jpeg(a: np.ndarray, quality: int = 50) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _resized(a: np.ndarray, scale: float) -> np.ndarray:
    im = Image.fromarray(a)
    return np.asarray(im.resize((round(im.width * scale), round(im.height * scale)), Image.Resampling.BILINEAR))


def _cropped(a: np.ndarray, fraction: float = 0.01) -> np.ndarray:
    h, w = a.shape[:2]
    dy, dx = max(1, round(h * fraction)), max(1, round(w * fraction))
    return a[dy : h - dy, dx : w - dx]


def _distance(a: str, b: str) -> int:
    return int(np.bitwise_count(np.frombuffer(bytes.fromhex(a), np.uint8) ^ np.frombuffer(bytes.fromhex(b), np.uint8)).sum())


def test_docstring_examples_run() -> None:
    assert doctest.testmod(blocklist_module, raise_on_error=False).failed == 0


@pytest.mark.parametrize("name", LISTED)
@pytest.mark.parametrize(
    "alter",
    [
        pytest.param(lambda a: a, id="identical"),
        pytest.param(lambda a: _resized(a, 0.5), id="half-size"),
        pytest.param(lambda a: _resized(a, 1.7), id="upscaled"),
        pytest.param(lambda a: _jpeg(a, 40), id="jpeg-q40"),
        pytest.param(lambda a: _cropped(a, 0.01), id="crop-1pct-per-side"),
        pytest.param(lambda a: _jpeg(_cropped(_resized(a, 0.75), 0.01), 70), id="resize+crop+jpeg"),
    ],
)
def test_altered_copies_of_listed_images_match(photos: dict[str, np.ndarray], blocklist: Blocklist, name: str, alter) -> None:
    from genguard.imageio.loader import load_image

    frames = load_image(alter(photos[name])).frames
    match = blocklist.match_frames(blocklist.hash_frames(frames))
    assert match is not None
    assert match["hash"] == hash_image(photos[name])
    assert 0 <= match["distance"] <= 31 and match["frame"] == 0


@pytest.mark.parametrize("name", UNLISTED)
def test_unrelated_images_do_not_match(photos: dict[str, np.ndarray], blocklist: Blocklist, name: str) -> None:
    assert blocklist.match_frames(blocklist.hash_frames([photos[name], _resized(photos[name], 0.5)])) is None


def test_best_frame_is_reported(photos: dict[str, np.ndarray], blocklist: Blocklist) -> None:
    hashes = blocklist.hash_frames([photos["rocket"], _resized(photos["coffee"], 0.5), photos["coffee"]])
    match = blocklist.match_frames(hashes)
    assert match is not None and match["frame"] == 2 and match["variant"] == "original"
    assert (match["distance"], match["hash"]) == (0, hash_image(photos["coffee"]))


def test_hash_formats_agree(photos: dict[str, np.ndarray], tmp_path: Path) -> None:
    import pdqhash

    png = tmp_path / "coffee.png"
    Image.fromarray(photos["coffee"]).save(png)
    bits, quality = pdqhash.compute(photos["coffee"])
    hex_hash = hash_image(png)
    assert hex_hash == pdq_hash(photos["coffee"]).hash == hash_image(png.read_bytes())
    # bit i of the vector is bit i of the hex string, most significant first (ThreatExchange's order)
    assert hex_hash == "".join(f"{int(''.join(map(str, bits[i:i + 4])), 2):x}" for i in range(0, 256, 4))
    listed = Blocklist([bits, bytes.fromhex(hex_hash), hex_hash.upper()])
    assert len(listed) == 1 and hex_hash in listed and bits in listed
    assert "0" * 64 not in listed and "not a hash" not in listed


def test_low_quality_frames_are_skipped() -> None:
    flat = np.full((64, 64, 3), 128, np.uint8)
    h = pdq_hash(flat)
    assert h.quality < 50
    assert Blocklist([h.hash]).match_frames([h]) is None
    match = Blocklist([h.hash], min_quality=0).match_frames([h])
    assert match is not None and (match["distance"], match["hash"], match["frame"]) == (0, h.hash, 0)
    assert Blocklist([h.hash]).match_frames([h.hash]) is not None  # a bare string carries no quality


def test_from_file_accepts_comments_blank_lines_and_trailing_notes(tmp_path: Path) -> None:
    a, b = "0f" * 32, "A0" * 32
    p = tmp_path / "list.txt"
    p.write_text(f"# shared list\n\n{a}\n  {b}\t# an image\n{a}  # duplicate\n")
    bl = Blocklist.from_file(p, max_distance=8)
    assert len(bl) == 2 and a in bl and b.lower() in bl and bl.max_distance == 8


@pytest.mark.parametrize(
    "line", ["abc123", "g" * 64, "0f" * 32 + "0", "0f" * 32 + " trailing words", "0f" * 32 + "# no space", "0f" * 16 + " " + "0f" * 16]
)
def test_from_file_names_the_bad_line(tmp_path: Path, line: str) -> None:
    p = tmp_path / "bad.txt"
    p.write_text("# header\n" + "ab" * 32 + "\n" + line + "\n")
    with pytest.raises(BlocklistError, match=r"bad\.txt:3: expected a 64-digit hex PDQ hash") as info:
        Blocklist.from_file(p)
    assert isinstance(info.value, ValueError)


def test_missing_file_is_a_blocklist_error(tmp_path: Path) -> None:
    with pytest.raises(BlocklistError, match="cannot read blocklist"):
        Blocklist.from_file(tmp_path / "absent.txt")


@pytest.mark.parametrize("bad", [-1, 256, 3.5, True])
def test_max_distance_is_validated(bad: object) -> None:
    with pytest.raises(ValueError, match="max_distance"):
        Blocklist([], max_distance=bad)  # type: ignore[arg-type]


def test_empty_blocklist_matches_nothing() -> None:
    empty = Blocklist([], allow_empty=True)
    assert len(empty) == 0 and empty.match_frames(["0" * 64]) is None


def _flip(words: np.ndarray, rng: np.random.Generator, n_bits: int) -> str:
    bits = np.unpackbits(words.astype(">u8").view(np.uint8))
    bits[rng.choice(256, n_bits, replace=False)] ^= 1
    return np.packbits(bits).tobytes().hex()


@pytest.mark.parametrize("max_distance", [0, 10, 31, 47, 70])
def test_indexed_matching_equals_brute_force(max_distance: int) -> None:
    rng = np.random.default_rng(max_distance)
    listed = rng.integers(0, 2**64, size=(6000, 4), dtype=np.uint64)
    bl = Blocklist((r.astype(">u8").tobytes() for r in listed), max_distance=max_distance)
    assert bl._index.indexed == (max_distance <= 47)  # the multi-index path is the one under test
    queries = [_flip(listed[rng.integers(len(listed))], rng, int(d)) for d in rng.integers(0, 80, size=60)]
    queries += [rng.integers(0, 256, 32, dtype=np.uint8).tobytes().hex() for _ in range(5)]
    for q in queries:
        qa = np.frombuffer(bytes.fromhex(q), dtype=">u8").astype(np.uint64)
        dist = np.bitwise_count(listed ^ qa).sum(axis=1)
        expected = int(dist.min()) if dist.min() <= max_distance else None
        found = bl.match(q)
        assert (found[0] if found else None) == expected
        if found:
            assert _distance(found[1], q) == found[0]


def test_guard_blocks_a_listed_image_whatever_its_scores(photos: dict[str, np.ndarray], stub_guard) -> None:
    listed = photos["astronaut"]
    copy = _cropped(_resized(listed, 0.5), 0.01).copy()
    copy[0, 0] = (1, 1, 0)  # the stub backbone reads minor=0.01, sexual=0.01 from this pixel
    guard = stub_guard(blocklist=Blocklist([hash_image(listed)]))
    verdict = guard.classify(copy)
    assert verdict.blocked and verdict.scores.minor < 0.1 and verdict.scores.sexual < 0.1
    (reason,) = [r for r in verdict.reasons if r.code == "hash_match"]
    assert 0 < reason.detail["distance"] <= 31 and reason.detail["hash"] == hash_image(listed)
    other = photos["rocket"].copy()
    other[0, 0] = (1, 1, 0)
    assert guard.classify(other).decision == "allow"


def test_frame_hash_is_a_named_tuple() -> None:
    h = FrameHash("ab" * 32, 90)
    assert h.hash == "ab" * 32 and h.quality == 90 and tuple(h) == ("ab" * 32, 90, (), (), 0)


def test_guard_applies_the_bank_action_and_names_bank_label_and_variant(photos: dict[str, np.ndarray], stub_guard) -> None:
    from genguard.defences.blocklist import Banks

    mirrored = np.ascontiguousarray(photos["astronaut"][:, ::-1])
    mirrored[0, 0] = (1, 1, 0)  # the stub backbone reads minor=0.01, sexual=0.01 from this pixel
    review = Blocklist([hash_image(photos["astronaut"])], name="internal", action="review", labels=["ticket-3"])
    verdict = stub_guard(blocklist=review).classify(mirrored)
    assert verdict.decision == "review"  # a review bank sends a listed image to review, whatever the scores
    (reason,) = [r for r in verdict.reasons if r.code == "hash_match"]
    assert (reason.detail["bank"], reason.detail["label"], reason.detail["variant"]) == ("internal", "ticket-3", "flip_horizontal")
    both = Banks([review, Blocklist([hash_image(photos["astronaut"])], name="shared")])
    assert stub_guard(blocklist=both).classify(mirrored).decision == "block"  # block outranks review
    assert list(stub_guard(blocklist=review).classify(mirrored).pdq) == [hash_image(mirrored)]  # the audit's hash
