"""Would int8 make the bundled models faster, and how far would it move the scores? (issue 12)

For each of BlazeFace, NudeNet 320n and open_nsfw, two int8 copies are written to a
temporary folder with onnxruntime's own quantizer:

- ``dynamic``: weights int8, activations quantized at run time (``quantize_dynamic``);
- ``static``: weights (per channel) and activations int8 in QDQ format (``quantize_static``),
  calibrated on the inputs that model received while a fp32 ``Guard`` screened 16 other
  scenes (seed 1; the measured ones are seed 0).

Each copy is swapped alone into a ``Guard`` (the other two models stay fp32), which
screens the measured corpus: 16 ``genguard scenes`` with faces and 16 faceless photos at
1024 px (``benchmarks/_common.py``, all benign). Reported per variant: ms/image at batch 8
(after a warm-up batch), and how far the minor and sexual scores and the face counts moved
against the fp32 Guard. The issue's bar: a variant is usable only if every score moves by
less than 0.01. Nothing is shipped by this script.

Run::

    python benchmarks/quantize.py --out benchmarks/results/quantize.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, write_face_scenes, write_faceless

MODELS = {"blazeface": (), "nudenet": (), "open_nsfw": ("Reshape:0",)}
"""Bundled model key -> the intermediate outputs the embedder reads (kept as outputs when quantizing)."""


class _Recorder:
    """A session proxy that records every input feed (calibration data for the static quantizer)."""

    def __init__(self, session: Any) -> None:
        self.session, self.feeds = session, []  # type: list[dict[str, np.ndarray]]

    def run(self, outputs: Any, feeds: dict[str, np.ndarray]) -> Any:
        self.feeds.append({k: np.array(v) for k, v in feeds.items()})
        return self.session.run(outputs, feeds)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.session, name)


def _slots(guard: Any) -> dict[str, tuple[Any, str]]:
    """Bundled model key -> (object holding its session, attribute name)."""
    emb = guard.embedder
    return {"blazeface": (emb.face_stage.finder, "session"), "nudenet": (emb, "_nudenet"), "open_nsfw": (emb, "_nsfw")}


def _screen(guard: Any, paths: list[Path]) -> tuple[float, list[Any]]:
    guard.classify_batch(paths[:8])  # warm-up
    t0 = time.perf_counter()
    verdicts = guard.classify_batch(paths)
    return (time.perf_counter() - t0) * 1000 / len(paths), verdicts


def _quantize(key: str, feeds: list[dict[str, np.ndarray]], folder: Path) -> dict[str, Path]:
    import onnx
    import onnx.version_converter
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from genguard.embedders.bundled.assets import asset_path

    model = onnx.load(str(asset_path(key)))
    if model.opset_import[0].version < 13:  # per-channel DequantizeLinear needs opset 13 (BlazeFace has 11, open_nsfw 9)
        model = onnx.version_converter.convert_version(model, 13)
    for name in MODELS[key]:
        model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    fp32, pre = folder / f"{key}.onnx", folder / f"{key}.pre.onnx"
    onnx.save(model, str(fp32))
    quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self.it = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.it, None)

    out = {"dynamic": folder / f"{key}.dynamic.onnx", "static": folder / f"{key}.static.onnx"}
    quantize_dynamic(str(pre), str(out["dynamic"]), weight_type=QuantType.QInt8)
    quantize_static(str(pre), str(out["static"]), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return out


def _session(path: Path, threads: int | None) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _moved(base: list[Any], other: list[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for axis in ("minor", "sexual"):
        a = np.array([getattr(v.scores, axis) for v in base], dtype=float)
        b = np.array([getattr(v.scores, axis) for v in other], dtype=float)
        d = np.abs(a - b)
        out[f"{axis}_max_abs_change"], out[f"{axis}_mean_abs_change"] = float(np.nanmax(d)), float(np.nanmean(d))
    faces = [(sum(r.code in ("face", "minor_face") for r in v.reasons), sum(r.code in ("face", "minor_face") for r in w.reasons))
             for v, w in zip(base, other)]
    out["images_whose_face_count_changed"] = sum(x != y for x, y in faces)
    out["decisions_changed"] = sum(v.decision != w.decision for v, w in zip(base, other))
    out["usable"] = out["minor_max_abs_change"] < 0.01 and out["sexual_max_abs_change"] < 0.01
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime threads per model (default: one per core)")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()
    from genguard import Guard

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        measured = (write_face_scenes(root / "faces", n=16, seed=0) or []) + write_faceless(root / "nofaces", n=16)
        calibration = write_face_scenes(root / "calib_faces", n=16, seed=1) or []
        guard = Guard(batch_size=8, **({"threads": args.threads} if args.threads else {}))
        slots = _slots(guard)
        recorders = {k: _Recorder(getattr(obj, attr)) for k, (obj, attr) in slots.items()}
        for k, (obj, attr) in slots.items():
            setattr(obj, attr, recorders[k])
        guard.classify_batch(calibration)
        for k, (obj, attr) in slots.items():
            setattr(obj, attr, recorders[k].session)
        base_ms, base = _screen(guard, measured)
        rows: list[dict[str, Any]] = [{"variant": "fp32", "ms_per_image": base_ms}]
        print(f"fp32: {base_ms:.1f} ms/image over {len(measured)} images")
        for key in MODELS:
            files = _quantize(key, recorders[key].feeds, root)
            obj, attr = slots[key]
            original = getattr(obj, attr)
            for kind, path in files.items():
                try:
                    setattr(obj, attr, _session(path, args.threads))
                    ms, verdicts = _screen(guard, measured)
                    row = {"variant": f"{key} {kind} int8", "ms_per_image": ms, **_moved(base, verdicts)}
                except Exception as exc:  # a quantized graph onnxruntime cannot run is a result too
                    row = {"variant": f"{key} {kind} int8", "error": f"{type(exc).__name__}: {exc}"[:300]}
                finally:
                    setattr(obj, attr, original)
                rows.append(row)
                print(json.dumps(row))
    result = {"machine": machine(), "images": len(measured), "rows": rows}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
