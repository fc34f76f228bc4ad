"""Benchmark the PDQ blocklist: load and lookup time up to 1,000,000 listed hashes, and PDQ robustness.

Usage::

    python benchmarks/blocklist_bench.py                      # sizes 1e3, 1e5, 1e6
    python benchmarks/blocklist_bench.py --sizes 1000000 --queries 500 --out /tmp/bl.json

Listed hashes are uniformly random 256-bit values. Queries are half near copies
of a listed hash (0-31 bits flipped: a hit) and half fresh random hashes (a miss).
"multi-index" is what :class:`genguard.Blocklist` uses at ``max_distance <= 47``;
"brute force" is its vectorised popcount over every listed hash, shown for
comparison. Both return the same exact answer. The robustness table hashes
benign scikit-image photos and altered copies and reports the Hamming distances.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from genguard.defences.blocklist import Blocklist, hash_image, pdq_hash


def _flip(row: np.ndarray, rng: np.random.Generator, n_bits: int) -> str:
    bits = np.unpackbits(row.astype(">u8").view(np.uint8))
    bits[rng.choice(256, n_bits, replace=False)] ^= 1
    return np.packbits(bits).tobytes().hex()


def _ms(samples: list[float]) -> dict[str, float]:
    a = np.array(samples) * 1000
    return {"median_ms": float(np.median(a)), "p95_ms": float(np.percentile(a, 95)), "mean_ms": float(a.mean())}


def bench_size(n: int, queries: int, max_distance: int, rng: np.random.Generator) -> dict[str, object]:
    words = rng.integers(0, 2**64, size=(n, 4), dtype=np.uint64)
    lines = [r.astype(">u8").tobytes().hex() for r in words]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "list.txt"
        path.write_text("# random benchmark hashes\n" + "\n".join(lines) + "\n")
        t0 = time.perf_counter()
        bl = Blocklist.from_file(path, max_distance=max_distance)
        load_s = time.perf_counter() - t0
    hits = [_flip(words[rng.integers(n)], rng, int(rng.integers(0, max_distance + 1))) for _ in range(queries // 2)]
    misses = [rng.integers(0, 256, 32, dtype=np.uint8).tobytes().hex() for _ in range(queries - len(hits))]
    index = bl._index
    memory = bl._words.nbytes + sum(o.nbytes + i.nbytes for o, i in index or ())
    out: dict[str, object] = {"listed": len(bl), "load_from_file_s": load_s, "indexed": index is not None, "memory_mb": memory / 1e6}
    bl.match(misses[0])  # warm up
    bl._index = None
    bl.match(misses[0])  # warm up the scan (its column copy is made on first use)
    for label, use_index in (("multi_index", True), ("brute_force", False)):
        if use_index and index is None:
            continue
        bl._index = index if use_index else None
        for kind, qs in (("hit", hits), ("miss", misses)):
            times, found = [], 0
            for q in qs:
                t0 = time.perf_counter()
                m = bl.match(q)
                times.append(time.perf_counter() - t0)
                found += m is not None
            out[f"{label}_{kind}"] = {**_ms(times), "matched": found, "queries": len(qs)}
    bl._index = index
    return out


def robustness() -> list[dict[str, object]]:
    from PIL import Image
    from skimage import data

    def jpeg(a: np.ndarray, q: int) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, "JPEG", quality=q)
        return buf.getvalue()

    def resize(a: np.ndarray, s: float) -> np.ndarray:
        im = Image.fromarray(a)
        return np.asarray(im.resize((round(im.width * s), round(im.height * s)), Image.Resampling.BILINEAR))

    def crop(a: np.ndarray, f: float) -> np.ndarray:
        h, w = a.shape[:2]
        dy, dx = max(1, round(h * f)), max(1, round(w * f))
        return a[dy : h - dy, dx : w - dx]

    alterations = {
        "jpeg q40": lambda a: jpeg(a, 40),
        "resize 0.5x": lambda a: resize(a, 0.5),
        "resize 1.7x": lambda a: resize(a, 1.7),
        "crop 1%/side": lambda a: crop(a, 0.01),
        "crop 2%/side": lambda a: crop(a, 0.02),
        "crop 5%/side": lambda a: crop(a, 0.05),
        "mirror": lambda a: np.ascontiguousarray(a[:, ::-1]),
    }
    photos = {n: getattr(data, n)() for n in ("astronaut", "coffee", "chelsea", "rocket")}
    photos["camera"] = np.repeat(data.camera()[:, :, None], 3, axis=2)
    rows = []
    for name, img in photos.items():
        base = bytes.fromhex(hash_image(img))
        row: dict[str, object] = {"image": name}
        for label, alter in alterations.items():
            other = bytes.fromhex(hash_image(alter(img)))
            row[label] = int(np.unpackbits(np.bitwise_xor(np.frombuffer(base, np.uint8), np.frombuffer(other, np.uint8))).sum())
        others = [n for n in photos if n != name]
        row["nearest unrelated"] = min(
            int(np.unpackbits(np.frombuffer(base, np.uint8) ^ np.frombuffer(bytes.fromhex(hash_image(photos[o])), np.uint8)).sum())
            for o in others
        )
        rows.append(row)
    t0 = time.perf_counter()
    for img in photos.values():
        pdq_hash(img)
    rows.append({"image": "pdq_hash time per photo (ms)", "value": (time.perf_counter() - t0) / len(photos) * 1000})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,100000,1000000", help="comma-separated list sizes")
    parser.add_argument("--queries", type=int, default=400, help="lookups per size (half hits, half misses)")
    parser.add_argument("--max-distance", type=int, default=31, help="match threshold (default 31)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="/tmp/genguard_blocklist_bench.json", help="JSON results path")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    results = {"machine": platform.platform(), "python": platform.python_version(), "numpy": np.__version__,
               "max_distance": args.max_distance, "sizes": {}}
    print(f"{'listed':>9} {'load s':>7} {'MB':>6} {'method':>12} {'hit med ms':>10} {'hit p95':>8} {'miss med ms':>11} {'miss p95':>8}")
    for n in (int(s) for s in args.sizes.split(",")):
        r = bench_size(n, args.queries, args.max_distance, rng)
        results["sizes"][str(n)] = r
        for label in ("multi_index", "brute_force"):
            if f"{label}_hit" not in r:
                continue
            hit, miss = r[f"{label}_hit"], r[f"{label}_miss"]
            assert hit["matched"] == hit["queries"] and miss["matched"] == 0, "wrong answers"
            print(f"{n:>9} {r['load_from_file_s']:>7.2f} {r['memory_mb']:>6.1f} {label:>12} {hit['median_ms']:>10.3f} {hit['p95_ms']:>8.3f} "
                  f"{miss['median_ms']:>11.3f} {miss['p95_ms']:>8.3f}")
    rows = robustness()
    results["robustness"] = rows
    print("\nHamming distance of altered copies of benign photos to the original (match at <= 31):")
    cols = [k for k in rows[0] if k != "image"]
    print(f"{'image':>10} " + " ".join(f"{c:>17}" for c in cols))
    for row in rows[:-1]:
        print(f"{row['image']:>10} " + " ".join(f"{row[c]:>17}" for c in cols))
    print(f"{rows[-1]['image']}: {rows[-1]['value']:.2f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
