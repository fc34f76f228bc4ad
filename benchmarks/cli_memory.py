"""Peak memory of ``genguard classify --json --quiet`` over thousands of files.

Writes ``--counts`` benign files (96x64 to 160x128 PNG and JPEG of gradients,
shapes and noise, every 97th one unreadable) into a temporary folder, runs the
CLI on the folder once per count in a fresh process, and reports the child's
peak RSS (``wait4``'s ``ru_maxrss``) and its RSS sampled at each quarter of the
run, so growth over the run is visible. ``--utkface N`` runs on the first N
UTKFace dev faces instead (read in place, listed in a file of paths).

Run::

    python benchmarks/cli_memory.py --counts 2000 10000 --out benchmarks/results/cli_memory.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import UTKFACE, machine  # noqa: E402


def write_files(folder: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    for i in range(n):
        path = folder / f"{i:06d}.{'jpg' if i % 2 else 'png'}"
        if path.exists():
            continue
        if i % 97 == 96:
            path.write_bytes(b"not an image " * (i % 7))
            continue
        w, h = 96 + (i % 5) * 16, 64 + (i % 5) * 16
        y, x = np.mgrid[0:h, 0:w]
        img = np.stack([(x * 255 // w + i) % 256, (y * 255 // h) % 256, np.full_like(x, i % 256)], axis=2)
        img = np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(path)


def _rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def run_cli(paths: list[str], total: int) -> dict[str, Any]:
    out = tempfile.NamedTemporaryFile("w+", suffix=".jsonl", delete=False)
    cmd = [sys.executable, "-m", "genguard.cli", "classify", "--json", "--quiet", *paths]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.DEVNULL)
    samples: list[tuple[float, int, int]] = []  # (seconds, lines done, RSS KiB)
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            rss = _rss_kib(proc.pid)
            if rss is not None:
                lines = sum(1 for _ in open(out.name, "rb"))
                samples.append((time.perf_counter() - t0, lines, rss))
            done.wait(1.0)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)
    done.set()
    sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - t0
    lines = sum(1 for _ in open(out.name, "rb"))
    os.unlink(out.name)
    quarters = {}
    for q in (0.25, 0.5, 0.75):
        past = [s for s in samples if s[1] >= q * total]
        quarters[f"rss_mib_at_{int(q * 100)}pct"] = round(past[0][2] / 1024, 1) if past else None
    return {
        "files": total, "verdicts": lines, "exit": proc.returncode, "seconds": round(seconds, 1),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1), **quarters,
        "rss_mib_last_sample": round(samples[-1][2] / 1024, 1) if samples else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[2000, 10000], help="files per run")
    parser.add_argument("--utkface", type=int, default=None, help="use the first N UTKFace dev faces instead")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "genguard_cli_memory")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()

    results: dict[str, Any] = {"machine": machine(), "runs": []}
    print(f"{'files':>6s} {'verdicts':>8s} {'peak MiB':>9s} {'25%':>7s} {'50%':>7s} {'75%':>7s} {'seconds':>8s}")
    for count in ([args.utkface] if args.utkface else args.counts):
        if args.utkface:
            paths = [str(p) for p in sorted(UTKFACE.iterdir())[:count]]
        else:
            folder = args.workdir / str(count)
            folder.mkdir(parents=True, exist_ok=True)
            write_files(folder, count)
            paths = [str(folder)]
        row = run_cli(paths, count)
        results["runs"].append(row)
        print(f"{row['files']:6d} {row['verdicts']:8d} {row['peak_rss_mib']:9.1f} {row['rss_mib_at_25pct'] or 0:7.1f} "
              f"{row['rss_mib_at_50pct'] or 0:7.1f} {row['rss_mib_at_75pct'] or 0:7.1f} {row['seconds']:8.1f}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
