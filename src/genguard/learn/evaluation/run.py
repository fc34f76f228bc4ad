"""Evaluate a head on labelled images through the Guard's pipeline: metrics, plots and a written report.

:func:`evaluate` is what ``genguard eval`` runs; the metrics live in
:mod:`genguard.learn.evaluation.metrics` and the plots in :mod:`.plots`.
"""


from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal


from genguard.learn.evaluation.metrics import EvalRow, Split, compute_metrics

__all__ = ["EvalReport", "evaluate", "write_report"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EvalReport:
    """What :func:`evaluate` measured and wrote.

    Attributes
    ----------
    metrics : dict
        Everything in ``metrics.json`` (see :func:`~genguard.learn.evaluation.metrics.compute_metrics`),
        plus the head, backbone, policy, dataset and unreadable-file counts.
    report : Path
        The folder holding ``metrics.json``, ``report.md``, ``scores.csv`` and the plots.
    files : tuple of Path
        Every file written there.
    """

    metrics: dict[str, Any]
    report: Path
    files: tuple[Path, ...]


def write_report(rows: Sequence[Mapping[str, Any]], metrics: Mapping[str, Any], outdir: str | os.PathLike[str]) -> list[Path]:
    """Write ``metrics.json``, ``report.md``, ``scores.csv`` and the PNG plots into ``outdir``; returns the paths.

    See :func:`genguard.learn.evaluation.plots.write_report`.
    """
    from genguard.learn.evaluation.plots import write_report as _write

    return _write(rows, metrics, outdir)


# ------------------------------------------------------------------ pipeline
def evaluate(
    data: str | os.PathLike[str],
    *,
    report: str | os.PathLike[str],
    format: Literal["utkface", "csv", "folder"] | None = None,
    assume: Mapping[str, int] | None = None,
    limit: int | None = None,
    split: Split = "all",
    cache_dir: str | os.PathLike[str] | None = None,
    backbone: str = "bundled",
    head: str | os.PathLike[str] | None = None,
    device: str = "cpu",
    batch_size: int = 8,
    threads: int | None = None,
    progress: bool = True,
) -> EvalReport:
    """Score a labelled dataset through a Guard's pipeline and write a report.

    Parameters
    ----------
    data : path
        UTKFace folder, CSV manifest or plain folder (see :func:`genguard.learn.datasets.load_dataset`).
    report : path
        Output folder for ``metrics.json``, ``report.md``, ``scores.csv`` and PNG plots.
    format : {"utkface", "csv", "folder"} or None, default None
        Guessed when None.
    assume : dict or None
        Labels for every image of a plain folder, e.g. ``{"minor": 0, "sexual": 0}``.
    limit : int or None
        An evenly spaced subset of this many images, taken after ``split``.
    split : {"all", "val", "train"}, default "all"
        Keep only this side of :func:`genguard.learn.datasets.split_of` (the trainer's split).
    cache_dir : path or None
        Embedding cache folder; None uses :func:`genguard.learn.cache.default_cache_dir`.
    backbone, head, device, batch_size, threads
        As for :class:`genguard.Guard`.
    progress : bool, default True
        Show a progress bar on stderr.

    Raises
    ------
    ValueError
        Bad ``split`` or ``limit``, or no images in ``data``.
    GenguardError
        The models or the head cannot be loaded.

    Examples
    --------
    >>> evaluate("faces/", report="out/", split="val").metrics["minor_auc"]  # doctest: +SKIP
    0.98
    """
    from tqdm import tqdm

    from genguard import __version__
    from genguard.learn.cache import EmbeddingCache
    from genguard.learn.datasets import guess_format, load_dataset, split_of
    from genguard.guard import Guard
    from genguard.imageio.files import evenly_spaced

    if split not in ("all", "val", "train"):
        raise ValueError(f"split must be 'all', 'val' or 'train', got {split!r}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be a positive number of images, got {limit}")
    if not Path(data).exists():
        raise ValueError(f"no such dataset: {data} (give a UTKFace folder, a CSV manifest or a folder of images)")
    fmt = format or guess_format(data)
    records = load_dataset(data, format=fmt, assume=assume, limit=limit if split == "all" else None)
    if split != "all":
        records = [r for r in records if split_of(r.path) == split]
        records = evenly_spaced(records, limit)
    if not records:
        raise ValueError(f"no images to evaluate in {data} (format {fmt}, split {split})")

    options: dict[str, Any] = {} if threads is None else {"threads": threads}
    guard = Guard(backbone, head=head, device=device, batch_size=batch_size, **options)
    # The Guard's own pipeline, with the embedding cache as its store: the same load, frames,
    # face finding, head and policy as Guard.classify_batch, and the same verdicts.
    pipeline = replace(guard.pipeline, store=EmbeddingCache(guard.embedder, cache_dir))
    logger.info("evaluating %d images of %s with %s", len(records), data, guard.head.identifier)
    with tqdm(total=len(records), unit="img", file=sys.stderr, disable=not progress, delay=1.0, mininterval=0.5) as bar:
        verdicts = list(pipeline.run([r.path for r in records], lambda: guard.policy, batch_size=batch_size, progress=bar.update))
    finds_faces = guard.embedder.face_dim > 0
    rows: list[EvalRow] = []
    unreadable: list[str] = []
    for rec, v in zip(records, verdicts):
        if v.error is not None:  # counted as an error, never as a positive or a negative
            unreadable.append(str(rec.path))
            continue
        faces = sum(r.code in ("face", "minor_face") for r in v.reasons)
        rows.append(
            {"path": str(rec.path), "label_minor": rec.minor, "label_sexual": rec.sexual, "age": rec.age,
             "groups": dict(rec.groups), "minor": v.scores.minor, "sexual": v.scores.sexual,
             "decision": v.decision, "n_faces": faces if finds_faces else None}
        )

    metrics = compute_metrics(rows, guard.policy)
    metrics.update(
        head=guard.head.identifier,
        head_name=guard.head.metadata.name,
        backbone=guard.embedder.name,
        policy=guard.policy.to_dict(),
        dataset={"path": str(data), "format": fmt, "split": split, "limit": limit, "records": len(records)},
        unreadable=len(unreadable),
        unreadable_paths=unreadable[:20],
        genguard_version=__version__,
    )
    if unreadable:
        logger.warning("%d of %d files could not be read and are left out of the metrics", len(unreadable), len(records))
    written = write_report(rows, metrics, report)
    metrics["plots"] = [p.name for p in written if p.suffix == ".png"]
    return EvalReport(metrics, Path(report), tuple(written))
