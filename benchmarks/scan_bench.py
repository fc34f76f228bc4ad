"""Throughput and memory of ``genguard scan``: local and Ray engines beside ``Guard.classify_batch``.

Corpus: ``--images`` benign JPEGs of 512-1024 px (long side), cut at random
from scikit-image's sample photos, resized and saved at quality 80-95, written
once into ``--workdir`` (never committed).

Rows, all on the same files and the bundled default Guard:

- ``classify_batch``: ``Guard().classify_batch(paths)``, the issue's baseline;
- ``classify_batch+pdq``: ``Guard(hash_frames=True).classify_batch(paths)``: the
  same per-image work as a scan, which stores every image's PDQ hash;
- ``scan-local``: ``genguard.scan.scan([folder], out)`` in this process;
- ``scan-ray-N``: the same with ``engine="ray"`` and N actors of one CPU each
  (``--ray-workers``), on a local Ray cluster started for the row (its start-up
  and the actors' model loading are reported apart from the throughput).

Throughput is images per second after start-up: for ``classify_batch``, the
timed call after an untimed warm-up batch; for the scans, the images scored
after the first results arrived, over the time from then to the end (the scan's
``summary["run"]["images_per_second"]``), so model loading, Ray's start and the
actors' start are not in it; they are reported as ``engine_start_s`` (Guard
build, or ``ray.init``) and ``first_results_s`` (from the call to the first
scored images).

``--rss N ...`` runs ``genguard scan`` (the CLI, local engine, shards of 100) in a
fresh process over a CSV manifest of N rows (the corpus repeated) and reports
its peak RSS (``wait4``) and the highest RSS sampled during each quarter of the
rows (every 2 s), so memory growth with the size of the scan is visible.

``--paper RESULTS`` recomputes, from a results file, how many nodes 100 million
images a day need on CPU and on GPU (``on_paper``; the method is in docs/scan.md).

Run::

    python benchmarks/scan_bench.py --images 1000 --rss 1000 20000 --out benchmarks/results/scan_bench.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
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
from _common import machine  # noqa: E402

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "cat", "coins", "hubble_deep_field",
          "immunohistochemistry", "moon", "retina", "colorwheel", "brick", "grass", "gravel", "clock")


def write_corpus(folder: Path, n: int, seed: int = 0) -> list[Path]:
    """``n`` benign JPEGs of 512-1024 px: random crops of scikit-image photos (kept between runs)."""
    import skimage.data

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    photos = [np.asarray(getattr(skimage.data, p)()) for p in PHOTOS]
    photos = [np.stack([a] * 3, -1) if a.ndim == 2 else a[..., :3] for a in photos]
    paths = []
    for i in range(n):
        a = photos[i % len(photos)]
        h, w = a.shape[:2]
        ch, cw = int(h * rng.uniform(0.6, 1)), int(w * rng.uniform(0.6, 1))
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        side = int(rng.integers(512, 1025))
        quality = int(rng.integers(80, 96))
        path = folder / f"img{i:06d}.jpg"
        if not path.exists():
            img = Image.fromarray(np.ascontiguousarray(a[y : y + ch, x : x + cw]))
            s = side / max(ch, cw)
            img.resize((max(1, round(cw * s)), max(1, round(ch * s))), Image.Resampling.BILINEAR).save(path, quality=quality)
        paths.append(path)
    return paths


def time_classify(paths: list[Path], **guard_kw: Any) -> dict[str, Any]:
    from genguard import Guard

    t0 = time.perf_counter()
    guard = Guard(**guard_kw)
    startup = time.perf_counter() - t0
    guard.classify_batch(paths[:8])  # warm-up
    t0, c0 = time.perf_counter(), time.process_time()
    guard.classify_batch(paths)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"images": len(paths), "startup_s": round(startup, 2), "seconds": round(wall, 2),
            "images_per_s": round(len(paths) / wall, 2), "cpu_ms_per_image": round(1000 * cpu / len(paths), 1)}


def time_scan(folder: Path, work: Path, engine: str, shard_size: int, **kw: Any) -> dict[str, Any]:
    from genguard.scan import scan

    out = work / f"out-{engine}-{kw.get('workers', 1)}"
    shutil.rmtree(out, ignore_errors=True)
    t0, c0 = time.perf_counter(), time.process_time()
    summary = scan([str(folder)], out, engine=engine, shard_size=shard_size, plots=False, **kw)  # type: ignore[arg-type]
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    run = summary["run"]
    return {"images": summary["images"], "errors": summary["errors"], "decisions": summary["decisions"],
            "shards": summary["shards"]["finished"], "seconds_total": round(wall, 2),
            "engine_start_s": run["engine_start_seconds"], "first_results_s": run["first_results_seconds"],
            "images_per_s": run["images_per_second"], "images_per_s_end_to_end": run["images_per_second_end_to_end"],
            # this process only: the whole scan for the local engine, the driver alone for Ray
            "cpu_ms_per_image_this_process": round(1000 * cpu / max(1, summary["images"]), 1)}


def _rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def peak_rss(paths: list[Path], rows: int, work: Path) -> dict[str, Any]:
    """Run the CLI over a manifest of ``rows`` images; its peak RSS, and its RSS as the finished rows grow."""
    manifest = work / f"manifest-{rows}.csv"
    with open(manifest, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "id"])
        for i in range(rows):
            w.writerow([str(paths[i % len(paths)]), str(i)])
    out = work / f"out-rss-{rows}"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "genguard.cli", "scan", str(manifest), "--id-column", "id", "--out", str(out),
           "--shard-size", "100", "--quiet"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    samples: list[tuple[int, float]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(2.0):
            done = out / "done.jsonl"
            finished = sum(json.loads(x)["rows"] for x in done.read_text().splitlines()) if done.exists() else 0
            rss = _rss_mib(proc.pid)
            if rss is not None:
                samples.append((finished, rss))

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    _, status, usage = os.wait4(proc.pid, 0)
    stop.set()
    thread.join()
    wall = time.perf_counter() - t0
    summary = json.loads((out / "summary.json").read_text())
    # the highest RSS seen while each quarter of the rows was being scanned
    quarters = {f"{q * 25}%": round(max((r for n, r in samples if (q - 1) * rows / 4 <= n < q * rows / 4 or (q == 4 and n >= rows)),
                                         default=float("nan")), 1) for q in (1, 2, 3, 4)}
    return {"rows": rows, "exit": os.waitstatus_to_exitcode(status), "scanned": summary["images"],
            "peak_rss_mib": round(usage.ru_maxrss / 1024, 1), "rss_mib_by_quarter": quarters, "seconds": round(wall, 1)}


PER_DAY = 100_000_000


def on_paper(results: dict[str, Any], run_py: dict[str, Any] | None, node_cores: int) -> dict[str, Any]:
    """Nodes for 100 million images a day, from CPU time per image measured here (see docs/scan.md).

    A CPU node does all the work on its cores; a GPU node runs the three ONNX models
    on the GPU (its capacity is assumed not to bind: not measured here) and the rest
    (decode, pre/post-processing, PDQ, face finding, rows) on its cores. Worker scaling
    is taken as perfect (one worker per core).
    """
    rows = results["rows"]
    need = PER_DAY / 86_400
    out: dict[str, Any] = {"images_per_second_needed": round(need, 1), "node_cores": node_cores}
    cpu_ms = rows["scan-local"]["cpu_ms_per_image_this_process"]
    pdq_ms = rows["classify_batch+pdq"]["cpu_ms_per_image"] - rows["classify_batch"]["cpu_ms_per_image"]
    out["measured"] = {"scan_cpu_ms_per_image": cpu_ms, "pdq_cpu_ms_per_image": round(pdq_ms, 1)}
    # Worker scaling is taken as perfect: on 2 shared cores a second worker adds no core, so it cannot be measured here.
    cases: dict[str, float] = {"cpu_everyday": cpu_ms}
    if run_py is not None:
        model_ms = run_py["profile_1024_jpeg_batch8"]["model_ms_per_image"]
        full = next(r["cpu_ms_per_image"] for r in run_py["rows"] if r["pipeline"] == "bundled-full-scores" and r["input"] == "1024-jpeg")
        plain = next(r["cpu_ms_per_image"] for r in run_py["rows"] if r["pipeline"] == "bundled" and r["input"] == "1024-jpeg" and r["batch"] == 8)
        face_ms = full - plain  # the face stage, for an image whose sexual score reaches review
        # CPU time per image grows on a loaded machine: run.py's classify_batch figure (same path, on the machine
        # state it recorded) over this run's is the factor between the two states.
        scale = plain / rows["classify_batch"]["cpu_ms_per_image"]
        out["from_benchmarks_run_py"] = {"model_ms_per_image": round(model_ms, 1), "face_stage_cpu_ms_per_image": round(face_ms, 1),
                                         "classify_batch_cpu_ms_per_image": plain, "cpu_time_factor_to_this_run": round(scale, 3)}
        for suffix, base, factor in (("", cpu_ms, 1 / scale), ("_at_run_py_machine_state", cpu_ms * scale, 1.0)):
            cases[f"cpu_everyday{suffix}"] = base
            cases[f"gpu_everyday{suffix}"] = max(base - model_ms * factor, 1.0)
            cases[f"cpu_every_image_through_face_stage{suffix}"] = base + face_ms * factor
            cases[f"gpu_every_image_through_face_stage{suffix}"] = max(base - model_ms * factor, 1.0) + face_ms * factor
    for name, ms in cases.items():
        per_core = 1000.0 / ms
        entry = {"cpu_ms_per_image": round(ms, 1), "images_per_s_per_core": round(per_core, 2),
                 "nodes_perfect_scaling": round(need / (node_cores * per_core), 2)}
        out[name] = entry
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=1000, help="corpus size (default: 1000)")
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "genguard-scan-bench"))
    ap.add_argument("--shard-size", type=int, default=250, help="images per shard (default: 250)")
    ap.add_argument("--ray-workers", type=int, nargs="*", default=[2], help="Ray actor counts to run, one CPU each (default: 2)")
    ap.add_argument("--rss", type=int, nargs="*", default=[], help="manifest sizes for the peak-RSS runs")
    ap.add_argument("--skip", nargs="*", default=[], choices=("classify", "local", "ray"), help="rows to skip")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    ap.add_argument("--paper", nargs="+", default=None, metavar="RESULTS",
                    help="only recompute the 100-million-a-day estimate from results files of this script "
                    "(the scan-ray-* rows of a later file replace the first file's)")
    ap.add_argument("--node-cores", type=int, default=32, help="cores per node for the estimate (default: 32)")
    args = ap.parse_args()
    run_py_path = Path(__file__).resolve().parent / "results.json"
    run_py = json.loads(run_py_path.read_text()) if run_py_path.exists() else None
    if args.paper:
        results = json.loads(Path(args.paper[0]).read_text())
        for extra in args.paper[1:]:
            ray_rows = {k: v for k, v in json.loads(Path(extra).read_text())["rows"].items() if k.startswith("scan-ray-")}
            results["rows"] = {k: v for k, v in results["rows"].items() if not k.startswith("scan-ray-")} | ray_rows
        print(json.dumps(on_paper(results, run_py, args.node_cores), indent=2))
        return

    work = Path(args.workdir)
    paths = write_corpus(work / "corpus", args.images)
    folder = work / f"corpus-{args.images}"
    if not folder.exists():  # exactly --images files, linked from the corpus
        folder.mkdir(parents=True)
        for p in paths:
            os.symlink(p, folder / p.name)
    results: dict[str, Any] = {"machine_before": machine(), "images": args.images, "shard_size": args.shard_size}
    rows: dict[str, Any] = {}
    if "classify" not in args.skip:
        rows["classify_batch"] = time_classify(paths)
        rows["classify_batch+pdq"] = time_classify(paths, hash_frames=True)
    if "local" not in args.skip:
        rows["scan-local"] = time_scan(folder, work, "local", args.shard_size)
    if "ray" not in args.skip:
        for n in args.ray_workers:
            rows[f"scan-ray-{n}"] = time_scan(folder, work, "ray", args.shard_size, workers=n)
    results["rows"] = rows
    ratios: dict[str, Any] = {}
    if "scan-local" in rows and "classify_batch" in rows:
        ratios["local_vs_classify_batch"] = round(rows["scan-local"]["images_per_s"] / rows["classify_batch"]["images_per_s"], 3)
        ratios["local_vs_classify_batch+pdq"] = round(rows["scan-local"]["images_per_s"] / rows["classify_batch+pdq"]["images_per_s"], 3)
    for name in [r for r in rows if r.startswith("scan-ray-")]:
        if "scan-local" in rows:
            ratios[f"{name[5:]}_vs_local"] = round(rows[name]["images_per_s"] / rows["scan-local"]["images_per_s"], 3)
    results["ratios"] = ratios
    if {"scan-local", "classify_batch", "classify_batch+pdq"} <= set(rows):
        results["on_paper"] = on_paper(results, run_py, args.node_cores)
    if args.rss:
        results["peak_rss"] = [peak_rss(paths, n, work) for n in args.rss]
    results["machine_after"] = machine()
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
