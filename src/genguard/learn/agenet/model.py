"""The bundled age network (age-v1, a small ResNet) in torch, built from its ONNX initialisers.

The ONNX file is read with ``onnx.load`` (protobuf; nothing is unpickled). The layers follow its
59-node graph: a 7x7 stem and a max pool, then five residual blocks (64, 64->128 down, 128,
128->256 down, 256). Each convolution is followed by a per-channel affine (batch norm folded
into a scale and an offset), and the 256-d global average (``layer_1_flatten``) feeds the
81-bin age softmax (0.25, 1, ..., 80 years).

:class:`AgeNet` adds a minor branch: under-12, under-15 and under-18 logits on the same
features. :func:`export_onnx` writes tuned weights back into the original graph and adds
the minor branch, so the runtime opens the result like any bundled model.

>>> net = AgeNet()
>>> [t.shape[1] for t in net(torch.zeros(2, 3, 64, 64))]
[256, 81, 3]
"""

from __future__ import annotations

import os
from typing import Final

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import nn

from genguard.embedders.bundled.face_stage import AGE_BINS, AGE_MEANS

__all__ = ["AGE_BINS", "AGE_MEANS", "CHIP", "MINOR_AGES", "AgeNet", "export_onnx", "load_onnx", "normalise"]

MINOR_AGES: Final = (12, 15, 18)
"""The minor branch's logits: under 12, under 15, under 18."""
CHIP: Final = 64

# (convolution, affine) initialiser prefixes in graph order: the stem, then two per block.
_STEM: Final = ("layer_52", "layer_51")
_BLOCKS: Final = (
    (("layer_47", "layer_46"), ("layer_44", "layer_43")),
    (("layer_39", "layer_38"), ("layer_36", "layer_35")),
    (("layer_28", "layer_27"), ("layer_25", "layer_24")),
    (("layer_20", "layer_19"), ("layer_17", "layer_16")),
    (("layer_9", "layer_8"), ("layer_6", "layer_5")),
)
_WIDTHS: Final = ((64, 64, False), (64, 128, True), (128, 128, False), (128, 256, True), (256, 256, False))


class _ConvAffine(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, stride: int, pad: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride=stride, padding=pad)
        self.scale = nn.Parameter(torch.ones(1, cout, 1, 1))
        self.offset = nn.Parameter(torch.zeros(1, cout, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.conv(x) * self.scale + self.offset
        return out


class _Block(nn.Module):
    """A residual block; a down block halves the size (stride-2 conv; 2x2 average pool and zero channels on the shortcut)."""

    def __init__(self, cin: int, cout: int, down: bool) -> None:
        super().__init__()
        self.down = down
        self.a = _ConvAffine(cin, cout, 3, 2 if down else 1, 0 if down else 1)
        self.b = _ConvAffine(cout, cout, 3, 1, 1)
        self.extra = cout - cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.b(F.relu(self.a(x)))
        if not self.down:
            return F.relu(y + x)
        short = F.pad(F.avg_pool2d(x, 2, 2), (0, 0, 0, 0, 0, self.extra))
        # the graph pads the main path at the bottom and right when it is smaller than the shortcut (6 vs 7 px)
        dh, dw = short.shape[2] - y.shape[2], short.shape[3] - y.shape[3]
        if dh or dw:
            y = F.pad(y, (0, dw, 0, dh))
        return F.relu(short + y)


class AgeNet(nn.Module):
    """age-v1 with a minor branch; ``forward`` returns ``(features, age_logits, minor_logits)``."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = _ConvAffine(3, 64, 7, 2, 0)
        self.blocks = nn.ModuleList([_Block(cin, cout, down) for cin, cout, down in _WIDTHS])
        self.age = nn.Linear(256, len(AGE_BINS))
        self.minor = nn.Linear(256, len(MINOR_AGES))
        nn.init.zeros_(self.minor.weight)
        nn.init.zeros_(self.minor.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The 256-d penultimate features of normalised ``[N, 3, 64, 64]`` input."""
        x = F.max_pool2d(F.relu(self.stem(x)), 3, 2)
        for block in self.blocks:
            x = block(x)
        return x.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        f = self.features(x)
        return f, self.age(f), self.minor(f)

    def _layers(self) -> list[tuple[_ConvAffine, tuple[str, str]]]:
        pairs: list[tuple[_ConvAffine, tuple[str, str]]] = [(self.stem, _STEM)]
        for block, (a, b) in zip(self.blocks, _BLOCKS):
            assert isinstance(block, _Block)
            pairs += [(block.a, a), (block.b, b)]
        return pairs


def normalise(chips: npt.NDArray[np.uint8] | npt.NDArray[np.float32] | torch.Tensor) -> torch.Tensor:
    """RGB chips ``[N, 64, 64, 3]`` (0-255) to network input: minus :data:`AGE_MEANS`, / 256, NCHW."""
    t = torch.as_tensor(np.asarray(chips), dtype=torch.float32)
    return ((t - torch.from_numpy(AGE_MEANS)) / 256.0).permute(0, 3, 1, 2).contiguous()


def load_onnx(path: str | os.PathLike[str]) -> AgeNet:
    """Build :class:`AgeNet` from the initialisers of ``path``: age-v1 (the minor branch starts at zero) or an export.

    Raises
    ------
    ValueError
        The graph lacks an expected initialiser or its shape differs (not age-v1).
    """
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(os.fspath(path)).graph
    init = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    model = AgeNet()
    values = _named_values(model)
    with torch.no_grad():
        for name, (param, transpose) in values.items():
            if name not in init:
                if name.startswith("minor_"):
                    continue
                raise ValueError(f"{path} has no initialiser {name!r}; it is not the age-v1 graph")
            array = init[name].T if transpose else init[name]
            if tuple(array.shape) != tuple(param.shape):
                raise ValueError(f"{path}: {name} has shape {array.shape}, expected {tuple(param.shape)}")
            param.copy_(torch.from_numpy(np.array(array, dtype=np.float32)))  # a writable copy
    return model.eval()


def _named_values(model: AgeNet) -> dict[str, tuple[torch.Tensor, bool]]:
    """ONNX initialiser name -> (parameter, stored transposed)."""
    out: dict[str, tuple[torch.Tensor, bool]] = {}
    for layer, (conv, aff) in model._layers():
        out[f"{conv}_weights"] = (layer.conv.weight, False)
        assert layer.conv.bias is not None
        out[f"{conv}_bias"] = (layer.conv.bias, False)
        out[f"{aff}_scale"] = (layer.scale, False)
        out[f"{aff}_offset"] = (layer.offset, False)
    out["layer_1_weights"] = (model.age.weight, True)
    out["layer_1_bias"] = (model.age.bias, False)
    out["minor_weights"] = (model.minor.weight, True)
    out["minor_bias"] = (model.minor.bias, False)
    return out


def export_onnx(model: AgeNet, base: str | os.PathLike[str], out: str | os.PathLike[str]) -> None:
    """Write ``model`` as ONNX: the graph of ``base`` (age-v1) with the tuned initialisers, a
    ``minor_logits`` output (a Gemm on ``layer_1_flatten``) and ``layer_1_flatten`` as an output."""
    import onnx
    from onnx import helper, numpy_helper

    m = onnx.load(os.fspath(base))
    arrays = {
        name: np.ascontiguousarray((p.detach().cpu().numpy().T if t else p.detach().cpu().numpy()), dtype=np.float32)
        for name, (p, t) in _named_values(model).items()
    }
    for i, tensor in enumerate(m.graph.initializer):
        if tensor.name in arrays:
            m.graph.initializer[i].CopyFrom(numpy_helper.from_array(arrays.pop(tensor.name), tensor.name))
    minor = {k: arrays.pop(k) for k in ("minor_weights", "minor_bias")}
    if arrays:
        raise ValueError(f"{base} lacks initialisers {sorted(arrays)}; it is not the age-v1 graph")
    m.graph.initializer.extend([numpy_helper.from_array(v, k) for k, v in minor.items()])
    m.graph.node.append(helper.make_node("Gemm", ["layer_1_flatten", "minor_weights", "minor_bias"], ["minor_logits"], name="minor_gemm"))
    n = m.graph.output[0].type.tensor_type.shape.dim[0].dim_param or "N"
    m.graph.output.extend(
        [
            helper.make_tensor_value_info("layer_1_flatten", onnx.TensorProto.FLOAT, [n, 256]),
            helper.make_tensor_value_info("minor_logits", onnx.TensorProto.FLOAT, [n, len(MINOR_AGES)]),
        ]
    )
    m.doc_string = "age-v1 (CC0-1.0, dlib-models) fine-tuned on UTKFace (non-commercial research) for minor detection by genguard"
    onnx.checker.check_model(m)
    onnx.save(m, os.fspath(out))
