"""Benchmark the PDQ blocklist: load and lookup at scale, robustness to altered copies, false matches.

Usage::

    python benchmarks/blocklist_bench.py                         # sizes 1e3, 1e5, 1e6; robustness; 10,000 benign images
    python benchmarks/blocklist_bench.py --sizes 10000000 --skip-robustness --benign 0   # the 10M figures
    python benchmarks/blocklist_bench.py --faces ../shared/data/utkface/dev             # benign set: UTKFace, read in place

Scale: listed hashes are uniformly random 256-bit values written to a plain
list file; "load" is ``Blocklist.from_file`` (parse, de-duplicate, build the
multi-index). A lookup is what the Guard does per frame: all 8 dihedral
variants of the frame's hash in one ``match_frames`` call; half the lookups
hold a near copy (0-31 bits flipped) of a listed hash in one variant (a hit),
half are fresh random hashes (a miss). Wall and CPU time (``process_time``)
are both reported: on a shared, busy machine CPU time is the steadier figure.
Memory is what the Blocklist holds (hashes, index) and the process's peak RSS
(which includes the benchmark's own copy of the hashes and the file text).

Robustness: Hamming distance and matching variant of altered copies of benign
scikit-image photos against the listed originals (match at <= 31).

False matches: benign images that derive from none of the listed photos
(tests/benign_variety.py: crops, resizes, flips, tone changes and noise of
scikit-image's other samples; or UTKFace faces with --faces), each hashed
with variants and the contrast fallback, matched against the listed photos.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from genguard.defences.blocklist import Blocklist, frame_hash, hash_image

LISTED = ("astronaut", "coffee", "chelsea", "rocket", "camera")


def _ms(samples: list[float], prefix: str = "") -> dict[str, float]:
    a = np.array(samples) * 1000
    return {f"{prefix}median_ms": float(np.median(a)), f"{prefix}p95_ms": float(np.percentile(a, 95)), f"{prefix}max_ms": float(a.max())}


def _flip(row: np.ndarray, rng: np.random.Generator, n_bits: int) -> str:
    bits = np.unpackbits(row.astype(">u8").view(np.uint8))
    bits[rng.choice(256, n_bits, replace=False)] ^= 1
    return np.packbits(bits).tobytes().hex()


def bench_size(n: int, lookups: int, rng: np.random.Generator) -> dict[str, object]:
    words = rng.integers(0, 2**64, size=(n, 4), dtype=np.uint64)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "list.txt"
        with open(path, "w") as f:
            f.write("# random benchmark hashes\n")
            for start in range(0, n, 1_000_000):
                text = words[start : start + 1_000_000].astype(">u8").tobytes().hex()
                f.write("\n".join(text[i : i + 64] for i in range(0, len(text), 64)) + "\n")
        size_mb = path.stat().st_size / 1e6
        t0, c0 = time.perf_counter(), time.process_time()
        bl = Blocklist.from_file(path)
        load_s, load_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    out: dict[str, object] = {"listed": len(bl), "file_mb": size_mb, "load_s": load_s, "load_cpu_s": load_cpu_s, "indexed": bl._index.indexed,
                              "blocklist_mb": bl.nbytes / 1e6, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3}
    def lookup(hit: bool) -> list[str]:
        qs = [rng.integers(0, 256, 32, dtype=np.uint8).tobytes().hex() for _ in range(8)]
        if hit:
            qs[int(rng.integers(8))] = _flip(words[rng.integers(n)], rng, int(rng.integers(0, 32)))
        return qs
    bl.match_frames(lookup(False))  # warm up
    for kind in ("hit", "miss"):
        times, cpu, found = [], [], 0
        for _ in range(lookups // 2):
            qs = lookup(kind == "hit")
            t0, c0 = time.perf_counter(), time.process_time()
            m = bl.match_frames(qs)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
            found += m is not None
        out[f"lookup8_{kind}"] = {**_ms(times), **_ms(cpu, "cpu_"), "matched": found, "lookups": len(times)}
    return out


def _photos() -> dict[str, np.ndarray]:
    from skimage import data

    photos = {n: getattr(data, n)() for n in LISTED}
    photos["camera"] = np.repeat(photos["camera"][:, :, None], 3, axis=2)
    return photos


def robustness() -> list[dict[str, object]]:
    from PIL import Image, ImageEnhance

    from genguard.imageio import load_image

    def jpeg(a: np.ndarray, q: int) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, "JPEG", quality=q)
        return buf.getvalue()

    def half(a: np.ndarray) -> np.ndarray:
        im = Image.fromarray(a)
        return np.asarray(im.resize((im.width // 2, im.height // 2), Image.Resampling.BILINEAR))

    def contrast(a: np.ndarray, f: float) -> np.ndarray:
        return np.asarray(ImageEnhance.Contrast(Image.fromarray(a)).enhance(f))

    def crop(a: np.ndarray, f: float) -> np.ndarray:
        h, w = a.shape[:2]
        dy, dx = max(1, round(h * f)), max(1, round(w * f))
        return a[dy : h - dy, dx : w - dx]

    alterations = {
        "mirror": lambda a: a[:, ::-1], "rot90": np.rot90, "rot180": lambda a: np.rot90(a, 2), "jpeg q30": lambda a: jpeg(a, 30),
        "half size": half, "contrast 20%": lambda a: contrast(a, 0.2), "contrast 10%": lambda a: contrast(a, 0.1),
        "mirror+half+q50": lambda a: jpeg(half(a[:, ::-1]), 50), "crop 2%/side": lambda a: crop(a, 0.02), "crop 5%/side": lambda a: crop(a, 0.05),
    }
    photos = _photos()
    bl = Blocklist([hash_image(p) for p in photos.values()], labels=list(photos))
    rows = []
    for name, img in photos.items():
        row: dict[str, object] = {"image": name}
        for label, alter in alterations.items():
            altered = alter(img)
            frames = load_image(altered if isinstance(altered, bytes) else np.ascontiguousarray(altered)).frames
            m = bl.match_frames(bl.hash_frames(frames))
            row[label] = None if m is None or m["label"] != name else {
                "distance": m["distance"], "variant": m["variant"], "contrast_normalised": m["contrast_normalised"]}
        rows.append(row)
    return rows


def false_matches(n: int, faces: str | None) -> dict[str, object]:
    bl = Blocklist([hash_image(p) for p in _photos().values()], name="listed", labels=list(LISTED))
    if faces:
        from PIL import Image

        files = sorted(Path(faces).glob("*.jpg"))[:n]
        images = (np.asarray(Image.open(f).convert("RGB")) for f in files)
        source = f"UTKFace {faces} (first {len(files)} files, read in place)"
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from benign_variety import benign_images

        images = benign_images(n, seed=16)
        source = "tests/benign_variety.py (seed 16)"
    found, low, rescued, count, nearest = [], 0, 0, 0, 256
    t0 = time.perf_counter()
    for i, img in enumerate(images):
        h = frame_hash(img)
        count += 1
        low += h.quality < 50
        rescued += h.normalised_quality >= 50
        m = bl.match_frames([h])
        if m is not None:
            found.append({"image": i, **m})
    return {"source": source, "images": count, "listed": len(bl), "max_distance": bl.max_distance, "false_matches": len(found),
            "matches": found[:20], "low_quality": low, "compared_through_contrast_fallback": rescued,
            "seconds": time.perf_counter() - t0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,100000,1000000", help="comma-separated list sizes")
    parser.add_argument("--lookups", type=int, default=400, help="lookups per size (half hits, half misses), 8 variants each")
    parser.add_argument("--benign", type=int, default=10_000, help="benign images for the false-match count (0: skip)")
    parser.add_argument("--faces", default=None, help="UTKFace folder to use as the benign set instead (read in place)")
    parser.add_argument("--skip-robustness", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="/tmp/genguard_blocklist_bench.json", help="JSON results path")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    results: dict[str, object] = {"machine": platform.platform(), "python": platform.python_version(), "numpy": np.__version__,
                                  "cpus": os.cpu_count(), "load_average_at_start": os.getloadavg(), "sizes": {}}
    print(f"{'listed':>10} {'load s':>7} {'cpu s':>6} {'MB':>7} {'rss MB':>7}  {'hit med/p95 ms':>15}  {'miss med/p95 ms':>15}  {'cpu hit med/p95':>15}  {'cpu miss med/p95':>16}")
    for n in (int(s) for s in args.sizes.split(",") if s):
        r = bench_size(n, args.lookups, rng)
        results["sizes"][str(n)] = r  # type: ignore[index]
        hit, miss = r["lookup8_hit"], r["lookup8_miss"]
        assert hit["matched"] == hit["lookups"] and miss["matched"] == 0, "wrong answers"  # type: ignore[index]
        print(f"{n:>10} {r['load_s']:>7.2f} {r['load_cpu_s']:>6.2f} {r['blocklist_mb']:>7.1f} {r['peak_rss_mb']:>7.0f}  "  # type: ignore[index]
              f"{hit['median_ms']:>7.2f}/{hit['p95_ms']:<7.2f}  {miss['median_ms']:>7.2f}/{miss['p95_ms']:<7.2f}  "  # type: ignore[index]
              f"{hit['cpu_median_ms']:>7.2f}/{hit['cpu_p95_ms']:<7.2f}  {miss['cpu_median_ms']:>7.2f}/{miss['cpu_p95_ms']:<8.2f}")  # type: ignore[index]
    if not args.skip_robustness:
        rows = robustness()
        results["robustness"] = rows
        print("\naltered copies of listed photos: distance/variant (- = no match; N = through the contrast fallback)")
        for row in rows:
            cells = [f"{k}: " + ("-" if v is None else f"{v['distance']}/{v['variant']}{'/N' if v['contrast_normalised'] else ''}")
                     for k, v in row.items() if k != "image"]
            print(f"{row['image']:>10}  " + " | ".join(cells))
    if args.benign:
        fm = false_matches(args.benign, args.faces)
        results["false_matches"] = fm
        print(f"\nfalse matches: {fm['false_matches']} of {fm['images']} benign images ({fm['source']}) at distance <= "
              f"{fm['max_distance']}, 8 variants each; {fm['low_quality']} were low quality, {fm['compared_through_contrast_fallback']} "
              f"of them compared through the contrast fallback; {fm['seconds']:.0f} s")
    results["load_average_at_end"] = os.getloadavg()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(f"\nload average {results['load_average_at_start']} -> {results['load_average_at_end']}; wrote {args.out}")


if __name__ == "__main__":
    main()
