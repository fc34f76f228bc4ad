"""The age network in torch: the port equals age-v1's ONNX outputs, the export round-trips."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch
from PIL import Image

from conftest import utkface_sample
from genguard.embedders.bundled.assets import asset_path
from genguard.learn.agenet.model import export_onnx, load_onnx, normalise


@pytest.fixture(scope="module")
def face_chips(utkface_dir: Path) -> np.ndarray:
    """UTKFace faces (aligned crops) at 64 px, one mirrored, and random pixels."""
    faces = [np.asarray(Image.open(p).convert("RGB").resize((64, 64), Image.Resampling.BILINEAR))
             for p in utkface_sample(utkface_dir, 1, 60, 2)]
    rng = np.random.default_rng(0)
    return np.stack([*faces, faces[0][:, ::-1], *rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)])


def _session(path: Path | str) -> Any:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_port_equals_the_onnx_network(face_chips: np.ndarray) -> None:
    import onnx

    model = onnx.load(str(asset_path("age")))
    model.graph.output.append(onnx.helper.make_empty_tensor_value_info("layer_1_flatten"))
    probs, feats = _session_from_model(model).run(["probabilities", "layer_1_flatten"], {"images": normalise(face_chips).numpy()})
    with torch.no_grad():
        f, age_logits, minor = load_onnx(asset_path("age"))(normalise(face_chips))
    np.testing.assert_allclose(f.numpy(), feats, atol=1e-4, rtol=0)
    np.testing.assert_allclose(torch.softmax(age_logits, 1).numpy(), probs, atol=1e-4, rtol=0)
    assert not minor.any()  # age-v1 has no minor branch: it starts at zero


def _session_from_model(model: Any) -> Any:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def test_export_round_trips(tmp_path: Path, face_chips: np.ndarray) -> None:
    net = load_onnx(asset_path("age"))
    torch.manual_seed(0)
    with torch.no_grad():
        net.minor.weight.normal_(0, 0.05)
        net.blocks[0].a.conv.weight.mul_(1.1)  # a tuned body differs from age-v1
    export_onnx(net, asset_path("age"), tmp_path / "tuned.onnx")
    x = normalise(face_chips)
    probs, feats, minor = _session(tmp_path / "tuned.onnx").run(["probabilities", "layer_1_flatten", "minor_logits"], {"images": x.numpy()})
    with torch.no_grad():
        f, a, m = net(x)
    np.testing.assert_allclose(feats, f.numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(probs, torch.softmax(a, 1).numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(minor, m.numpy(), atol=1e-4, rtol=0)
    again = load_onnx(tmp_path / "tuned.onnx")
    for (name, p), q in zip(net.state_dict().items(), again.state_dict().values()):
        assert torch.equal(p, q), name


def test_load_onnx_refuses_another_graph(tmp_path: Path) -> None:
    import onnx
    from onnx import helper

    graph = helper.make_graph([helper.make_node("Relu", ["images"], ["y"])], "g",
                              [helper.make_tensor_value_info("images", onnx.TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph), str(tmp_path / "other.onnx"))
    with pytest.raises(ValueError, match="not the age-v1 graph"):
        load_onnx(tmp_path / "other.onnx")
