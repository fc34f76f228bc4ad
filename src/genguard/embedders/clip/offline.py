"""Building OpenCLIP parts with no network: weights from a safetensors file read here, tokenizers and
text-tower configs only from local files.

open_clip would otherwise fetch what it lacks: a Hugging Face tokenizer (``clip:ViT-B-16-SigLIP``),
a sentencepiece vocabulary from a URL, a text tower's config; and given a weights path it picks
``torch.load`` or safetensors by the file's suffix. Here open_clip builds the architecture with no
pretrained weights, the state dict is read with ``safetensors`` (a pickle, whatever its name, is never
unpickled: its bytes are not a safetensors header), and anything missing raises
:class:`~genguard.errors.ModelFileError` naming the file.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from genguard.errors import ModelFileError

__all__ = ["build_model", "build_tokenizer", "read_state_dict"]

_HEADER_MAX: Final = 100 * 1024 * 1024
_OFFLINE_LOCK: Final = threading.Lock()


def read_state_dict(path: Path) -> dict[str, Any]:
    """The tensors of a safetensors file, on the CPU; :class:`ModelFileError` for anything else (pickles included).

    The 8-byte header length and the JSON header are checked before safetensors reads the file, so the
    error names what the file is instead of a parser message.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(9)
    except OSError as exc:
        raise ModelFileError(f"cannot read CLIP weights {path}: {exc.strerror or exc}") from exc
    size = struct.unpack("<Q", head[:8])[0] if len(head) == 9 else 0
    if len(head) < 9 or head[8:9] != b"{" or not 2 <= size <= _HEADER_MAX:
        hint = " It looks like a pickle (PyTorch .pt/.bin), which genguard never loads." if head[:1] == b"\x80" or head[:2] == b"PK" else ""
        raise ModelFileError(
            f"{path} is not a safetensors file (no safetensors header).{hint} Convert it on a machine you trust: "
            "`from safetensors.torch import save_file; save_file(state_dict, 'weights.safetensors')`"
        )
    from safetensors.torch import load_file

    try:
        return dict(load_file(str(path), device="cpu"))
    except Exception as exc:  # SafetensorError, OSError, ValueError: a damaged file
        raise ModelFileError(f"{path} is not a readable safetensors file: {type(exc).__name__}: {exc}") from exc


def build_model(model: str, weights: Path, *, precision: str, device: str, tag_cfg: dict[str, Any]) -> tuple[Any, Any]:
    """``(model, preprocess)``: open_clip's architecture and transform, weights from ``weights``, no network."""
    import open_clip

    state = read_state_dict(weights)
    with _hf_offline(model), _no_random_init_warning():
        net, _, preprocess = open_clip.create_model_and_transforms(
            model,
            pretrained=None,
            precision=precision,
            device=device,
            image_mean=tag_cfg.get("mean"),
            image_std=tag_cfg.get("std"),
            image_interpolation=tag_cfg.get("interpolation"),
            image_resize_mode=tag_cfg.get("resize_mode"),
            **({"pretrained_hf": False} if _text_cfg(model).get("hf_model_name") else {}),
        )
    try:
        net.load_state_dict(_fit_state(net, state), strict=True)
    except (RuntimeError, KeyError, ValueError, StopIteration) as exc:
        raise ModelFileError(f"{weights} does not hold weights for OpenCLIP {model!r}: {exc}") from exc
    return net, preprocess


def _fit_state(net: Any, state: dict[str, Any]) -> dict[str, Any]:
    """open_clip's own fixes of a loaded state dict (``open_clip.factory.load_checkpoint``), given tensors, not a path."""
    import torch
    from open_clip.convert import convert_state_dict
    from open_clip.model import convert_to_custom_text_state_dict, resize_pos_embed, resize_text_pos_embed

    if next(iter(state)).startswith("module"):
        state = {k[7:]: v for k, v in state.items()}
    state = convert_state_dict(net, state)
    if "positional_embedding" in state and not hasattr(net, "positional_embedding"):
        state = convert_to_custom_text_state_dict(state)
    for key in ("logit_scale", "logit_bias"):
        param = getattr(net, key, None)
        if key in state and param is not None and param.ndim != state[key].ndim:
            state[key] = state[key].reshape(param.shape)
    if "logit_bias" not in state and getattr(net, "logit_bias", None) is not None:
        state["logit_bias"] = torch.zeros_like(state["logit_scale"])
    state.pop("text.transformer.embeddings.position_ids", None)
    resize_pos_embed(state, net)
    resize_text_pos_embed(state, net)
    return state


@contextmanager
def _no_random_init_warning() -> Iterator[None]:
    """open_clip warns on the root logger that a model without pretrained weights is random; here the
    weights are loaded next, so that line would only mislead."""
    root = logging.getLogger()
    quiet = _DropRandomInit()
    root.addFilter(quiet)
    try:
        yield
    finally:
        root.removeFilter(quiet)


class _DropRandomInit(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "initialized randomly" not in record.getMessage()


def _text_cfg(model: str) -> dict[str, Any]:
    import open_clip

    cfg = open_clip.get_model_config(model) or {}
    return dict(cfg.get("text_cfg", {}))


def _require_cached(repo: str, filenames: tuple[str, ...], what: str, cache_dir: str | None = None) -> None:
    from huggingface_hub import constants, try_to_load_from_cache

    for name in filenames:
        found = try_to_load_from_cache(repo, name, cache_dir=cache_dir)
        if isinstance(found, str) and os.path.isfile(found):
            return
    where = cache_dir or constants.HF_HUB_CACHE
    raise ModelFileError(
        f"the {what} needs {filenames[0]} of hf.co/{repo}, which is not in the Hugging Face cache {where}; "
        f"genguard never downloads at run time: fetch it on a connected machine "
        f"(`huggingface-cli download {repo} {filenames[0]}`) and copy the cache here"
    )


@contextmanager
def _hf_offline(model: str) -> Iterator[None]:
    """Run open_clip with the Hugging Face hub switched offline, after checking the text tower's config is cached."""
    hf_model = _text_cfg(model).get("hf_model_name")
    if hf_model:
        _require_cached(str(hf_model), ("config.json",), f"text tower of {model!r}")
    from huggingface_hub import constants

    with _OFFLINE_LOCK:
        before = constants.HF_HUB_OFFLINE
        constants.HF_HUB_OFFLINE = True
        try:
            yield
        finally:
            constants.HF_HUB_OFFLINE = before


def build_tokenizer(model: str, cache_dir: str | None = None) -> Any:
    """open_clip's tokenizer for ``model`` from local files only; :class:`ModelFileError` names a missing file."""
    import open_clip

    cfg = _text_cfg(model)
    hf_name = cfg.get("hf_tokenizer_name")
    if hf_name:
        _require_cached(str(hf_name), ("tokenizer_config.json", "tokenizer.json"), f"tokenizer of {model!r}", cache_dir)
        try:
            with _hf_offline(model):
                return open_clip.get_tokenizer(model, cache_dir=cache_dir, local_files_only=True)
        except OSError as exc:
            raise ModelFileError(f"the tokenizer of {model!r} is incomplete in the Hugging Face cache: {exc}") from exc
    if "siglip" in model.lower():
        raise ModelFileError(
            f"the tokenizer of {model!r} is a sentencepiece model that open_clip downloads from a URL "
            "(sentencepiece.model); genguard never downloads at run time"
        )
    return open_clip.get_tokenizer(model)
