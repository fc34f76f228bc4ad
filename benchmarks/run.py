"""genguard's speed beside what users would otherwise run, measured in one run on one machine.

Pipelines, each timed end to end from encoded files (decoding included):

- ``bundled``: ``Guard().classify_batch(paths, batch_size=B)``, both scores for every
  image (the default), at batch 1, 8 and 32 on the mixed 1024 JPEG corpus and at batch 8
  on every other input;
- ``bundled-skip-minor``: ``Guard(skip_minor_below_review=True)``, the throughput
  option (face stage only where the sexual score reaches review), at batch 8;
- ``naive``: the same three model files through their own packages' public
  APIs, one image at a time (``benchmarks/naive.py``);
- ``clip-vit-b-32``, ``clip-vit-l-14``: OpenCLIP image towers with random
  weights (``open_clip.create_model(name, pretrained=None)``), open_clip's own
  preprocessing, at batch 1 and 16 (ViT-L-14 is the image tower behind Stable
  Diffusion's safety checker and LAION's NSFW detector);
- ``guard-clip``: ``Guard(backbone="clip:ViT-B-32/FILE")`` with those random
  weights saved to a file, when genguard's CLIP backbone can be built.

Inputs, all benign and built at run time (``benchmarks/_common.py``): 1024x1024
JPEG and PNG and 512x512 JPEG (half of them with faces); ``1024-faces``, 16
``genguard scenes`` (1-4 UTKFace faces of 48-256 px in each; needs the UTKFace
folder); ``1024-nofaces``, 16 scikit-image photos without people. The run also
profiles both modes stage by stage on ``1024-faces`` (``benchmarks/profile_bundled.py``:
decode, NudeNet, open_nsfw, face finding, landmarks and chips, age network, head),
checks the issue's targets, prints a table and writes everything as JSON.

Run (about 5 minutes on a quiet 2-core machine)::

    python benchmarks/run.py --out benchmarks/results.json
    python benchmarks/run.py --quick                      # smoke run, about a minute
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, time_batches, write_corpus, write_face_scenes, write_faceless

INPUTS = (("1024-jpeg", 1024, "JPEG"), ("1024-png", 1024, "PNG"), ("512-jpeg", 512, "JPEG"))
TARGET_MS = 60.0  # both scores, 1024 px scenes with 1-4 faces, batch 8
TARGET_FACELESS_MS = 30.0  # both scores, benign photos without people, batch 8
TARGET_VS_L14 = 20.0
TARGET_VS_NAIVE = 1.5
TARGET_OVERHEAD = 0.25


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def bench_bundled(corpora: dict[str, list[Path]], batches: Sequence[int], images: int, threads: int | None) -> list[dict[str, Any]]:
    """Both modes: the default (both scores for every image) and ``skip_minor_below_review=True``."""
    from genguard import Guard

    options = {"threads": threads} if threads else {}
    rows = []
    for label, guard in (("bundled", Guard(**options)), ("bundled-skip-minor", Guard(skip_minor_below_review=True, **options))):
        for name, paths in corpora.items():
            for b in batches if (label, name) == ("bundled", "1024-jpeg") else (8,):
                guard.batch_size = b  # frames per model call (classify_batch's batch_size sets how many images are read ahead)
                r = time_batches(lambda chunk, b=b, g=guard: g.classify_batch(chunk, batch_size=b), paths, b, images, warmup=min(b, 8))
                rows.append({"pipeline": label, "input": name, "batch": b, **r})
                print(f"  {label} {name} batch {b}: {r['ms_per_image']:.1f} ms/image", flush=True)
    return rows


def bench_naive(corpora: dict[str, list[Path]], images: int) -> list[dict[str, Any]]:
    from naive import NaivePipeline

    pipeline = NaivePipeline()
    rows = []
    for name, paths in corpora.items():
        r = time_batches(lambda chunk: [pipeline(p) for p in chunk], paths, 1, images)
        rows.append({"pipeline": "naive", "input": name, "batch": 1, **r})
        print(f"  naive {name}: {r['ms_per_image']:.1f} ms/image", flush=True)
    return rows


def _tower(model_name: str) -> tuple[Any, Any]:
    import open_clip

    model = open_clip.create_model(model_name, pretrained=None)
    model.eval()
    cfg = model.visual.preprocess_cfg
    preprocess = open_clip.image_transform(
        model.visual.image_size,
        is_train=False,
        mean=cfg.get("mean"),
        std=cfg.get("std"),
        interpolation=cfg.get("interpolation"),
        resize_mode=cfg.get("resize_mode"),
    )
    return model, preprocess


def _tower_runner(model: Any, preprocess: Any) -> Any:
    """Decode, preprocess and encode a batch of image files with one tower."""
    import torch
    from PIL import Image

    def run(chunk: Sequence[Path]) -> Any:
        tensors = []
        for p in chunk:
            with Image.open(p) as img:
                tensors.append(preprocess(img.convert("RGB")))
        with torch.inference_mode():
            return model.encode_image(torch.stack(tensors))

    return run


def bench_towers(paths: list[Path], input_name: str, models: Sequence[str], batches: Sequence[int], images: int) -> list[dict[str, Any]]:
    rows = []
    for model_name in models:
        run = _tower_runner(*_tower(model_name))
        for b in batches:
            r = time_batches(run, paths, b, images if b == 1 else b, warmup=2)
            rows.append({"pipeline": f"clip-{model_name.lower()}", "input": input_name, "batch": b, **r})
            print(f"  {model_name} tower {input_name} batch {b}: {r['ms_per_image']:.1f} ms/image", flush=True)
        del run  # free the model before the next one is built
    return rows


def bench_guard_clip(paths: list[Path], input_name: str, batches: Sequence[int], images: int, tmp: Path) -> list[dict[str, Any]]:
    """genguard's own CLIP backbone on random ViT-B-32 weights; skipped (with the reason) if it cannot be built."""
    try:
        import open_clip
        from safetensors.torch import save_file

        from genguard import Guard

        weights = tmp / "vit-b-32-random.safetensors"
        model = open_clip.create_model("ViT-B-32", pretrained=None)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
        del model
        guard = Guard(backbone=f"clip:ViT-B-32/{weights}")
    except Exception as exc:  # noqa: BLE001 -- report why the row is missing; the rest of the run stands
        logging.getLogger(__name__).warning("guard-clip row skipped: %r", exc)
        return [{"pipeline": "guard-clip-vit-b-32", "input": input_name, "skipped": f"{type(exc).__name__}: {exc}"}]
    rows = []
    for b in batches:
        guard.batch_size = b
        r = time_batches(lambda chunk, b=b: guard.classify_batch(chunk, batch_size=b), paths, b, max(b, images))
        rows.append({"pipeline": "guard-clip-vit-b-32", "input": input_name, "batch": b, **r})
        print(f"  Guard(clip:ViT-B-32) {input_name} batch {b}: {r['ms_per_image']:.1f} ms/image", flush=True)
    return rows


def _ms(rows: list[dict[str, Any]], pipeline: str, input_name: str, batch: int | None = None) -> float | None:
    found = [r["ms_per_image"] for r in rows if r["pipeline"] == pipeline and r["input"] == input_name
             and "ms_per_image" in r and (batch is None or r["batch"] == batch)]
    return min(found) if found else None


def targets(rows: list[dict[str, Any]], overhead: float) -> list[dict[str, Any]]:
    """The issue's targets, from this run's rows (the default Guard, both scores, batch 8)."""
    ours = _ms(rows, "bundled", "1024-faces", 8)
    faceless = _ms(rows, "bundled", "1024-nofaces", 8)
    mixed = _ms(rows, "bundled", "1024-jpeg", 8)
    naive = _ms(rows, "naive", "1024-jpeg")
    l14 = _ms(rows, "clip-vit-l-14", "1024-jpeg")
    out = [
        {"target": f"both scores, 1024 px scenes with 1-4 faces, batch 8 <= {TARGET_MS:.0f} ms/image", "value": ours,
         "met": ours is not None and ours <= TARGET_MS},
        {"target": f"both scores, benign photos without faces, batch 8 <= {TARGET_FACELESS_MS:.0f} ms/image", "value": faceless,
         "met": faceless is not None and faceless <= TARGET_FACELESS_MS},
    ]
    if l14 is not None and ours:
        out.append({"target": f"scenes with faces >= {TARGET_VS_L14:.0f}x faster than the ViT-L-14 tower (its best batch)",
                    "value": l14 / ours, "met": l14 / ours >= TARGET_VS_L14})
    if naive is not None and mixed:
        out.append({"target": f">= {TARGET_VS_NAIVE}x faster than the naive three packages (mixed 1024 JPEG)",
                    "value": naive / mixed, "met": naive / mixed >= TARGET_VS_NAIVE})
    out.append({"target": f"overhead outside model inference <= {TARGET_OVERHEAD:.0%}", "value": overhead,
                "met": overhead <= TARGET_OVERHEAD})
    return out


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"\n{'pipeline':22s} {'input':10s} {'batch':>5s} {'ms/image':>9s} {'images/s':>9s} {'cpu ms/img':>10s} {'x bundled b8':>12s}")
    for r in rows:
        if "ms_per_image" not in r:
            print(f"{r['pipeline']:22s} {r['input']:10s}   skipped: {r['skipped']}")
            continue
        ref = _ms(rows, "bundled", r["input"], 8)
        ratio = f"{r['ms_per_image'] / ref:12.2f}" if ref else f"{'':>12s}"
        print(f"{r['pipeline']:22s} {r['input']:10s} {r['batch']:5d} {r['ms_per_image']:9.1f} {r['images_per_s']:9.2f} "
              f"{r['cpu_ms_per_image']:10.1f} {ratio}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    parser.add_argument("--quick", action="store_true", help="smoke run: fewer images, one input, ViT-B-32 only")
    parser.add_argument("--images", type=int, default=None, help="images timed per bundled/naive row (default 16; 8 with --quick; a batch-32 row times one batch)")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads for the bundled Guard")
    parser.add_argument("--no-clip", action="store_true", help="skip the OpenCLIP towers and the Guard CLIP row")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    images = args.images or (8 if args.quick else 16)
    inputs = INPUTS[:1] if args.quick else INPUTS
    batches = (1, 8) if args.quick else (1, 8, 32)
    towers = ("ViT-B-32",) if args.quick else ("ViT-B-32", "ViT-L-14")
    tower_batches = (1, 16)
    record: dict[str, Any] = {"machine": machine(), "quick": args.quick, "images_per_row": images}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="genguard-bench-") as tmp_name:
        tmp = Path(tmp_name)
        corpora = {name: write_corpus(tmp / name, size, fmt) for name, size, fmt in inputs}
        scenes = write_face_scenes(tmp / "1024-faces")
        if scenes is not None:
            corpora["1024-faces"] = scenes
        corpora["1024-nofaces"] = write_faceless(tmp / "1024-nofaces")
        print("bundled, both modes:", flush=True)
        rows = bench_bundled(corpora, batches, images, args.threads)
        record["peak_rss_mib_after_bundled"] = _peak_rss_mib()

        from profile_bundled import print_profile, profile

        jpeg = corpora["1024-jpeg"]
        faces = corpora.get("1024-faces", jpeg)
        record["profile_input"] = "1024-faces" if "1024-faces" in corpora else "1024-jpeg"
        prof = profile([faces[i % len(faces)] for i in range(images)], 8, args.threads)
        record["profile_batch8"] = prof
        record["profile_batch8_skip_minor"] = profile([faces[i % len(faces)] for i in range(images)], 8, args.threads, skip_minor=True)
        print("naive packages:", flush=True)
        rows += bench_naive(corpora, max(8, images // 2))
        if not args.no_clip:
            print("CLIP image towers (random weights):", flush=True)
            rows += bench_towers(jpeg, "1024-jpeg", towers, tower_batches, 4 if args.quick else 8)
            if not args.quick:
                rows += bench_towers(corpora["1024-png"], "1024-png", ("ViT-B-32",), tower_batches, 8)
            rows += bench_guard_clip(jpeg, "1024-jpeg", tower_batches, 4 if args.quick else 8, tmp)
    record["rows"] = rows
    record["targets"] = targets(rows, prof["overhead_share"])
    record["peak_rss_mib"] = _peak_rss_mib()
    record["seconds"] = time.perf_counter() - started
    record["machine"]["loadavg_after"] = list(os.getloadavg())

    print_table(rows)
    print(f"\nbundled, {record['profile_input']}, batch 8, stage by stage (both scores, the default):")
    print_profile(prof)
    print("\nthe same with skip_minor_below_review=True:")
    print_profile(record["profile_batch8_skip_minor"])
    print("\ntargets:")
    for t in record["targets"]:
        value = f"{t['value']:.1%}" if "overhead" in t["target"] else f"{t['value']:.2f}" if t["value"] is not None else "n/a"
        print(f"  [{'met' if t['met'] else 'MISSED'}] {t['target']}: {value}")
    m = record["machine"]
    print(f"\n{m['cpu']}, {m['cores']} cores; load average {m['loadavg'][0]:.2f} before, {m['loadavg_after'][0]:.2f} after; "
          f"{record['seconds']:.0f} s")
    if args.out:
        args.out.write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
