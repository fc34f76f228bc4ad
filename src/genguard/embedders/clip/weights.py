"""Finding and downloading OpenCLIP weights: the half of the CLIP backbone that touches files and the network.

``clip:MODEL/PRETRAINED`` names an OpenCLIP architecture (``open_clip.list_models()``)
and either one of its pretrained tags (``open_clip.list_pretrained_tags_by_model``) or
a local ``.safetensors`` file. :func:`resolve_weights` looks, in order, at

1. the ``weights=`` argument,
2. PRETRAINED itself when it is a file path,
3. the ``GENGUARD_CLIP_WEIGHTS`` environment variable (for a tag),
4. the Hugging Face hub cache (``cache_dir=`` or huggingface_hub's default), where
   ``genguard weights`` and open_clip put a tag's safetensors file.

It never touches the network; only :func:`download_weights` does. Only safetensors
files are accepted: ``.pt``/``.bin``/``.pth`` files are pickles, and genguard refuses
them rather than unpickling (even ``torch.load(weights_only=True)`` parses a pickle
stream); convert them once on a machine you trust.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import Final
from urllib.parse import urlparse

from genguard.errors import GenguardError, ModelFileError, UnknownBackboneError

__all__ = ["WEIGHTS_ENV", "check_model", "download_weights", "resolve_weights"]

logger = logging.getLogger(__name__)

WEIGHTS_ENV: Final = "GENGUARD_CLIP_WEIGHTS"
_PICKLE_SUFFIXES: Final = (".pt", ".pth", ".bin", ".ckpt", ".pkl")
_PROBE_TIMEOUT_S: Final = 5.0


def _hf_location(model: str, tag: str) -> tuple[str, str] | None:
    """``(repo_id, safetensors file name)`` of a pretrained tag on the Hugging Face hub, or None."""
    import open_clip
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

    hub = str(open_clip.get_pretrained_cfg(model, tag).get("hf_hub", ""))
    if not hub:
        return None
    repo, filename = os.path.split(hub)  # "org/repo/" means open_clip's default file name
    if not filename or filename == HF_WEIGHTS_NAME:
        return repo, HF_SAFE_WEIGHTS_NAME
    stem, suffix = os.path.splitext(filename)
    return repo, filename if suffix == ".safetensors" else stem + ".safetensors"


def check_model(model: str) -> None:
    """Raise :class:`UnknownBackboneError`, listing the known models, unless ``model`` is an OpenCLIP architecture."""
    import open_clip

    known = open_clip.list_models()
    if model not in known:
        raise UnknownBackboneError(f"unknown OpenCLIP model {model!r}; known models: {', '.join(known)}")


def _check_safetensors(path: Path, model: str) -> Path:
    if not path.is_file():
        raise ModelFileError(
            f"CLIP weights for {model!r}: {path} does not exist; give a .safetensors file "
            f"(weights=PATH or ${WEIGHTS_ENV}), or run `genguard weights clip:{model}/TAG` on a connected machine"
        )
    if path.suffix != ".safetensors":  # exact: "w.SAFETENSORS" is not a safetensors name (and is never unpickled)
        hint = (" It is a pickle, which genguard never loads;" if path.suffix.lower() in _PICKLE_SUFFIXES else "")
        raise ModelFileError(
            f"CLIP weights for {model!r} must be a .safetensors file, got {path}.{hint} convert it on a machine "
            "you trust: `from safetensors.torch import save_file; save_file(state_dict, 'weights.safetensors')`"
        )
    return path


def resolve_weights(
    model: str,
    pretrained: str,
    *,
    weights: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Find the local safetensors file for ``MODEL/PRETRAINED`` without any network access.

    Parameters
    ----------
    model : str
        OpenCLIP architecture name, for example ``"ViT-B-32"``.
    pretrained : str
        A pretrained tag of that model, or a path to a ``.safetensors`` file.
    weights : path or None, default None
        An explicit file; wins over everything else.
    cache_dir : path or None, default None
        Hugging Face hub cache to look in; None uses huggingface_hub's default.

    Returns
    -------
    Path

    Raises
    ------
    ModelFileError
        No file found (the message names where it looked and how to provide one),
        or the file is not ``.safetensors``.
    UnknownBackboneError
        PRETRAINED is neither a tag of ``model`` nor an existing file.

    Examples
    --------
    >>> resolve_weights("ViT-B-32", "laion2b_s34b_b79k", weights="w.safetensors")  # doctest: +SKIP
    PosixPath('w.safetensors')
    """
    if weights is not None:
        return _check_safetensors(Path(weights).expanduser(), model)
    location = _hf_location(model, pretrained)
    if location is None:
        candidate = Path(pretrained).expanduser()
        if candidate.exists() or os.sep in pretrained or candidate.suffix:
            return _check_safetensors(candidate, model)
        import open_clip

        tags = open_clip.list_pretrained_tags_by_model(model)
        raise UnknownBackboneError(
            f"{pretrained!r} is neither a pretrained tag of {model!r} nor a file; "
            f"tags: {', '.join(tags) or '(none)'}; or give a path to a .safetensors file"
        )
    env = os.environ.get(WEIGHTS_ENV)
    if env:
        return _check_safetensors(Path(env).expanduser(), model)
    from huggingface_hub import constants, try_to_load_from_cache

    repo, filename = location
    found = try_to_load_from_cache(repo, filename, cache_dir=None if cache_dir is None else str(cache_dir))
    if isinstance(found, str) and Path(found).is_file():
        return Path(found)
    where = Path(cache_dir) if cache_dir is not None else Path(constants.HF_HUB_CACHE)
    raise ModelFileError(
        f"CLIP weights for clip:{model}/{pretrained} are not on this machine: looked for {filename} of "
        f"hf.co/{repo} in the Hugging Face cache {where}. Provide them with `genguard weights "
        f"clip:{model}/{pretrained}` on a connected machine (then copy its cache), or pass weights=PATH "
        f"or set ${WEIGHTS_ENV}=PATH to a .safetensors file. genguard never falls back to another backbone."
    )


def download_weights(backbone: str = "clip", cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Download a pretrained tag's safetensors weights with open_clip's own machinery.

    Parameters
    ----------
    backbone : str, default "clip"
        ``"clip"`` (the default model) or ``"clip:MODEL/PRETRAINED"`` with a pretrained tag.
    cache_dir : path or None, default None
        Hugging Face hub cache to download into; None uses huggingface_hub's default,
        where :class:`ClipEmbedder` looks by default.

    Returns
    -------
    Path
        Where the file went.

    Raises
    ------
    GenguardError
        Offline (``HF_HUB_OFFLINE`` set, or the hub unreachable within a few seconds),
        or the download failed, or the tag publishes no safetensors file.
    UnknownBackboneError
        Not a CLIP backbone name with a known model and tag.

    Examples
    --------
    >>> download_weights("clip:ViT-B-32/laion2b_s34b_b79k")  # doctest: +SKIP
    PosixPath('/home/me/.cache/huggingface/hub/models--laion--.../open_clip_model.safetensors')
    """
    from genguard.embedders.registry import parse_clip_name, resolve

    if resolve(backbone).family != "clip":
        raise UnknownBackboneError(f"download_weights needs 'clip' or 'clip:MODEL/PRETRAINED', got {backbone!r}")
    model, tag = parse_clip_name(backbone)
    check_model(model)
    location = _hf_location(model, tag)
    if location is None:
        import open_clip

        raise UnknownBackboneError(
            f"{tag!r} is not a pretrained tag of {model!r}; tags: {', '.join(open_clip.list_pretrained_tags_by_model(model))}"
        )
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        raise GenguardError("HF_HUB_OFFLINE is set, so nothing can be downloaded; unset it on a connected machine")
    host = urlparse(constants.ENDPOINT)
    try:  # fail in seconds, not after huggingface_hub's half-minute of retries
        socket.create_connection((host.hostname or "", host.port or (443 if host.scheme == "https" else 80)), _PROBE_TIMEOUT_S).close()
    except OSError as exc:
        raise GenguardError(
            f"cannot reach {constants.ENDPOINT} ({exc}); run `genguard weights` on a connected machine and copy "
            f"the file here, then pass weights=PATH or set ${WEIGHTS_ENV}"
        ) from exc
    from open_clip.pretrained import download_pretrained_from_hf

    repo, filename = location
    try:
        path = download_pretrained_from_hf(repo, filename=filename, cache_dir=None if cache_dir is None else str(cache_dir))
    except Exception as exc:
        raise GenguardError(
            f"downloading {filename} of hf.co/{repo} failed: {exc}. genguard fetches only safetensors files; "
            "if this tag publishes only a pickle, convert it on a trusted machine (see docs/clip.md)"
        ) from exc
    logger.info("downloaded %s", path)
    return Path(path)
