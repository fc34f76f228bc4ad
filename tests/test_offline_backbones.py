"""Every backbone's Guard is built and used with the network cut off; weights are never unpickled.

- Each family in the backbone registry has a case here (a new family without one fails
  ``test_every_backbone_family_is_covered``): the bundled backbone with its shipped
  models, the CLIP backbone with a tiny random OpenCLIP model saved to safetensors
  (tests/test_clip.py), built into a Guard (zero-shot head, so the text tower and its
  tokenizer run) and used on benign images while every socket connection raises.
- A CLIP model whose tokenizer lives on the Hugging Face hub (as ``ViT-B-16-SigLIP``'s
  does) fails with an error naming the missing file, and reaches no socket.
- A pickle is refused before any unpickling, whatever its suffix is spelled.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

open_clip = pytest.importorskip("open_clip")
torch = pytest.importorskip("torch")

from test_no_network import no_network  # noqa: E402,F401 - the fixture is used by name

from genguard import Guard  # noqa: E402
from genguard.embedders.clip.embedder import ClipEmbedder  # noqa: E402
from genguard.embedders.clip.offline import build_tokenizer, read_state_dict  # noqa: E402
from genguard.embedders.registry import BACKBONES  # noqa: E402
from genguard.errors import ModelFileError  # noqa: E402

TINY = "GenguardOfflineTiny"
TINY_HUB_TOKENIZER = "GenguardOfflineTinyHubTok"
_CFG = {"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
COVERED = {"bundled", "clip"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("offline")
    hub = json.loads(json.dumps(_CFG))
    hub["text_cfg"]["hf_tokenizer_name"] = "timm/ViT-B-16-SigLIP"  # as ViT-B-16-SigLIP's config says
    for name, cfg in ((TINY, _CFG), (TINY_HUB_TOKENIZER, hub)):
        (folder / f"{name}.json").write_text(json.dumps(cfg))
        open_clip.add_model_config(folder / f"{name}.json")
    torch.manual_seed(0)
    model = open_clip.create_model(TINY)
    path = folder / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENGUARD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))


def _benign() -> list[Any]:
    from skimage import data

    rgba = np.dstack([data.coffee(), np.full(data.coffee().shape[:2], 128, np.uint8)])
    return [data.astronaut(), rgba, b"not an image"]


def test_every_backbone_family_is_covered() -> None:
    assert {spec.family for spec in BACKBONES} == COVERED


@pytest.mark.slow
def test_bundled_guard_builds_and_classifies_offline(no_network: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from genguard.embedders.bundled import assets

    monkeypatch.setattr(assets, "_verified", {})  # check and open every bundled file again
    guard = Guard("bundled")
    verdicts = guard.classify_batch(_benign())
    assert [v.error is None for v in verdicts] == [True, True, False]
    assert no_network == []


def test_clip_guard_builds_and_classifies_offline(tiny: Path, no_network: list[str]) -> None:
    guard = Guard(f"clip:{TINY}/{tiny}")  # zero-shot head: the text tower and the tokenizer run here
    verdicts = guard.classify_batch(_benign())
    assert [v.error is None for v in verdicts] == [True, True, False]
    assert no_network == []


def test_hub_tokenizer_missing_names_the_file_and_reaches_no_socket(tiny: Path, no_network: list[str], tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match=r"tokenizer_config\.json of hf\.co/timm/ViT-B-16-SigLIP"):
        Guard(f"clip:{TINY_HUB_TOKENIZER}/{tiny}")
    with pytest.raises(ModelFileError, match="tokenizer_config.json"):
        build_tokenizer("ViT-B-16-SigLIP", cache_dir=str(tmp_path / "empty"))
    assert no_network == []


class _Trap:
    """Unpickling this object creates ``marker``: proof that a pickle was loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("name", ["w.SAFETENSORS", "w.Safetensors", "w.safetensors", "w.pt", "w.bin", "w.safetensors.pt", "w"])
def test_a_pickle_is_refused_before_any_unpickling(tiny: Path, tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "unpickled"
    path = tmp_path / name
    path.write_bytes(pickle.dumps({"visual.proj": _Trap(marker)}))
    loads: list[Any] = []
    monkeypatch.setattr(torch, "load", lambda *a, **k: loads.append(a) or {})
    monkeypatch.setattr(pickle, "load", lambda *a, **k: loads.append(a) or {})
    with pytest.raises(ModelFileError):
        ClipEmbedder(TINY, str(path))
    with pytest.raises(ModelFileError, match="not a safetensors file"):
        read_state_dict(path)
    assert not marker.exists() and loads == []


def test_a_torch_zip_checkpoint_is_refused_too(tiny: Path, tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    torch.save({"x": torch.zeros(2)}, path)  # a zip archive of pickles
    with pytest.raises(ModelFileError, match="pickle"):
        read_state_dict(path)


def test_weights_loaded_here_equal_open_clips_own_loading(tiny: Path) -> None:
    ours = ClipEmbedder(TINY, str(tiny))
    ref = open_clip.create_model(TINY, pretrained=str(tiny))
    ref.eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.inference_mode():
        assert torch.allclose(ours._model.encode_image(x), ref.encode_image(x), atol=1e-6)
    assert os.path.getsize(tiny) > 0
