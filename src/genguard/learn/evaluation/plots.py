"""Plots and the written report of an evaluation (matplotlib, no pyplot state).

Figures are built with :class:`matplotlib.figure.Figure` and saved as PNG, so
nothing here changes the caller's matplotlib backend (a notebook keeps its own).

>>> from genguard.learn.evaluation import compute_metrics
>>> rows = [{"label_minor": 1, "minor": 0.9, "age": 4}, {"label_minor": 0, "minor": 0.2, "age": 30}]
>>> import tempfile; out = tempfile.mkdtemp()
>>> sorted(p.name for p in write_report(rows, compute_metrics(rows), out))[:3]
['metrics.json', 'reliability_minor.png', 'report.md']
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from genguard.learn.evaluation.metrics import ADULT_BANDS, MINOR_BANDS, reliability_curve

__all__ = ["plot_reliability", "plot_roc", "plot_score_histograms", "plot_subgroups", "write_report"]

logger = logging.getLogger(__name__)

_BANDS = {**MINOR_BANDS, **ADULT_BANDS}


def _labelled(rows: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    keep = [r for r in rows if r.get("label_minor") is not None and r.get("minor") is not None]
    return np.array([int(r["label_minor"]) for r in keep]), np.array([float(r["minor"]) for r in keep])


def plot_roc(rows: Sequence[Mapping[str, Any]], threshold: float, path: str | os.PathLike[str]) -> Path | None:
    """ROC curve of the minor score, with the operating point at ``threshold``; None with one class."""
    from sklearn.metrics import roc_auc_score, roc_curve

    y, p = _labelled(rows)
    if len(set(y.tolist())) < 2:
        return None
    fpr, tpr, _ = roc_curve(y, p)
    auc = roc_auc_score(y, p)
    op = ((p[y == 0] >= threshold).mean(), (p[y == 1] >= threshold).mean())
    fig = Figure(figsize=(9, 4.5), layout="constrained")
    for ax, log in zip(fig.subplots(1, 2), (False, True)):
        ax.plot(fpr, tpr, label=f"AUC = {auc:.4f}")
        ax.plot(*op, "o", color="C3", label=f"threshold {threshold:.3g}: FPR {op[0]:.3f}, recall {op[1]:.3f}")
        ax.set(xlabel="adult false-positive rate", ylabel="minor recall", ylim=(0, 1.01))
        if log:
            ax.set_xscale("log")
            ax.set(xlim=(max(1e-4, 0.5 / max(1, int((y == 0).sum()))), 1), title="ROC, minor presence (log FPR)")
        else:
            ax.plot([0, 1], [0, 1], ls=":", color="grey")
            ax.set(xlim=(0, 1), title="ROC, minor presence")
        ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def plot_score_histograms(
    rows: Sequence[Mapping[str, Any]], minor_threshold: float, sexual_threshold: float, path: str | os.PathLike[str]
) -> Path | None:
    """Minor-score histograms per age band (rows without an age grouped by label), and the sexual scores."""
    groups: dict[str, list[float]] = {}
    for r in rows:
        if r.get("minor") is None:
            continue
        age, label = r.get("age"), r.get("label_minor")
        name = next((b for b, (lo, hi) in _BANDS.items() if age is not None and lo <= age <= hi), None)
        if name is None:
            name = {1: "no age, minor", 0: "no age, adult"}.get(label, "no age, unlabelled")  # type: ignore[arg-type]
        groups.setdefault(name, []).append(float(r["minor"]))
    if not groups:
        return None
    order = [b for b in _BANDS if b in groups] + sorted(g for g in groups if g not in _BANDS)
    sexual = [float(r["sexual"]) for r in rows if r.get("sexual") is not None]
    panels = len(order) + bool(sexual)
    ncols = min(4, panels)
    nrows = math.ceil(panels / ncols)
    fig = Figure(figsize=(3.2 * ncols, 2.6 * nrows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    bins = np.linspace(0, 1, 21)
    for ax, name in zip(axes, order):
        values = np.array(groups[name])
        color = "C1" if name in MINOR_BANDS or name == "no age, minor" else "C0"
        ax.hist(values, bins=bins, color=color)
        ax.axvline(minor_threshold, color="C3", ls="--", lw=1)
        ax.set_yscale("log")
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_title(f"age {name} (n={values.size}, {(values >= minor_threshold).mean():.1%} flagged)", fontsize=8)
        ax.set_xlabel("minor score", fontsize=8)
    if sexual:
        ax = axes[len(order)]
        ax.hist(sexual, bins=bins, color="C2")
        ax.axvline(sexual_threshold, color="C3", ls="--", lw=1)
        ax.set_yscale("log")
        ax.set_title(f"sexual score, all (n={len(sexual)})", fontsize=8)
        ax.set_xlabel("sexual score", fontsize=8)
    for ax in axes[panels:]:
        ax.set_visible(False)
    return _save(fig, path)


def plot_reliability(rows: Sequence[Mapping[str, Any]], ece: float | None, path: str | os.PathLike[str], bins: int = 10) -> Path | None:
    """Reliability diagram of the minor score (fraction minor against mean score per bin); None without labels."""
    y, p = _labelled(rows)
    if y.size == 0:
        return None
    conf, frac, count = reliability_curve(y, p, bins)
    fig = Figure(figsize=(5, 6), layout="constrained")
    top, bottom = fig.subplots(2, 1, height_ratios=(3, 1), sharex=True)
    used = count > 0
    top.plot([0, 1], [0, 1], ls=":", color="grey", label="perfect calibration")
    top.plot(conf[used], frac[used], "o-", label="minor score")
    top.set(ylabel="fraction labelled minor", ylim=(0, 1), title=f"Reliability, minor (ECE = {'n/a' if ece is None else f'{ece:.4f}'})")
    top.legend(loc="upper left", fontsize=8)
    edges = np.linspace(0, 1, bins + 1)
    bottom.bar(edges[:-1], count, width=1 / bins, align="edge", color="C0", alpha=0.6)
    bottom.set(yscale="log", xlabel="minor score", ylabel="images", xlim=(0, 1))
    return _save(fig, path)


def plot_subgroups(table: Sequence[Mapping[str, Any]], path: str | os.PathLike[str]) -> Path | None:
    """Heatmaps (gender x race) of adult false-positive rate and minor recall, annotated with counts."""
    if not table:
        return None
    genders = sorted({str(g["gender"]) for g in table})
    races = sorted({str(g["race"]) for g in table})
    fig = Figure(figsize=(2.2 * len(races) + 1, 0.9 * len(genders) + 1.4), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, (value, count, title, cmap) in zip(
        axes, (("adult_fpr", "n_adult", "adult false-positive rate", "Reds"), ("minor_recall", "n_minor", "minor recall", "Greens"))
    ):
        grid = np.full((len(genders), len(races)), np.nan)
        counts = np.zeros(grid.shape, dtype=np.int64)
        for g in table:
            i, j = genders.index(str(g["gender"])), races.index(str(g["race"]))
            grid[i, j] = np.nan if g.get(value) is None else g[value]
            counts[i, j] = g[count]
        vmax = 1.0 if value == "minor_recall" else max(0.05, float(np.nanmax(grid)) if np.isfinite(grid).any() else 0.0)
        ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=0, vmax=vmax, aspect="auto")
        for (i, j), v in np.ndenumerate(grid):
            text = "n/a" if np.isnan(v) else f"{v:.3f}"
            dark = not np.isnan(v) and v / vmax > 0.6
            ax.text(j, i, f"{text}\n(n={counts[i, j]})", ha="center", va="center", fontsize=7, color="white" if dark else "black")
        ax.set_xticks(range(len(races)), races, rotation=30, fontsize=8)
        ax.set_yticks(range(len(genders)), genders, fontsize=8)
        ax.set_title(title, fontsize=9)
    return _save(fig, path)


def _save(fig: Figure, path: str | os.PathLike[str]) -> Path:
    fig.savefig(path, dpi=110)
    return Path(path)


# ------------------------------------------------------------------ report
def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def _write_scores(rows: Sequence[Mapping[str, Any]], path: Path) -> None:
    group_keys = sorted({k for r in rows for k in (r.get("groups") or {})})
    cols = ["path", "label_minor", "label_sexual", "age", *group_keys, "minor", "sexual", "decision", "n_faces"]
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols, restval="", extrasaction="ignore")
        w.writeheader()
        for r in rows:
            flat = {**{k: v for k, v in r.items() if k != "groups"}, **(r.get("groups") or {})}
            w.writerow({k: "" if v is None else v for k, v in flat.items()})


def _markdown(metrics: Mapping[str, Any], plots: Sequence[Path]) -> str:
    ds = metrics.get("dataset", {})
    policy = metrics.get("policy", {})
    lines = [
        "# genguard evaluation",
        "",
        f"- head: `{metrics.get('head', 'n/a')}` (backbone `{metrics.get('backbone', 'n/a')}`), genguard {metrics.get('genguard_version', 'n/a')}",
        f"- data: `{ds.get('path', 'n/a')}` (format {ds.get('format', 'n/a')}, split {ds.get('split', 'n/a')}, limit {ds.get('limit')})",
        f"- images scored: {metrics['n']} ({metrics['n_minor']} labelled minor, {metrics['n_adult']} labelled adult); "
        f"unreadable: {metrics.get('unreadable', 0)}",
        f"- policy: {json.dumps(policy)}",
        "",
        "## Headline",
        "",
        "| metric | value |",
        "|---|---|",
    ]
    t = policy.get("minor_threshold")
    for key, label in (
        ("minor_auc", "minor AUC"), ("adult_fpr", f"adult false-positive rate at {t}"),
        ("minor_recall", f"minor recall at {t}"), ("minor_ece", "minor ECE (10 bins)"),
        ("faces_found", "images with at least one face"), ("sexual_fpr", "sexual false-positive rate (labelled non-sexual)"),
        ("blocked", "blocked images"), ("subgroup_fpr_gap_max", "worst subgroup adult FPR minus overall"),
    ):
        lines.append(f"| {label} | {_fmt(metrics.get(key))} |")
    lines += ["", "## By age band", "", "| band | n | rate |", "|---|---|---|"]
    for out, what in (("minor_recall_by_band", "recall"), ("adult_fpr_by_band", "adult FPR")):
        for band, v in metrics.get(out, {}).items():
            lines.append(f"| {band} ({what}) | {metrics['n_by_band'].get(band, 0)} | {_fmt(v)} |")
    op = metrics.get("at_adult_fpr")
    if op:
        lines += ["", f"## At {op['target']:.0%} adult false positives (threshold {op['threshold']:.4g}, set on this set)", "",
                  "| 0-5 | 6-12 | 13-15 | 16-17 | adults 18-20 flagged | under-18 F2 |", "|---|---|---|---|---|---|",
                  "| " + " | ".join(_fmt(op.get(k)) for k in ("0-5", "6-12", "13-15", "16-17", "18-20", "f2")) + " |"]
    table = metrics.get("subgroups") or []
    if table:
        lines += ["", "## Subgroups (gender x race)", "", "| gender | race | adults | adult FPR | minors | minor recall |", "|---|---|---|---|---|---|"]
        for g in table:
            lines.append(f"| {g['gender']} | {g['race']} | {g['n_adult']} | {_fmt(g['adult_fpr'])} | {g['n_minor']} | {_fmt(g['minor_recall'])} |")
    if plots:
        lines += ["", "## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots]
    if metrics.get("notes"):
        lines += ["", "## Notes", ""] + [f"- `{k}`: {v}" for k, v in metrics["notes"].items()]
    return "\n".join(lines) + "\n"


def write_report(rows: Sequence[Mapping[str, Any]], metrics: Mapping[str, Any], outdir: str | os.PathLike[str]) -> list[Path]:
    """Write ``metrics.json``, ``report.md``, ``scores.csv`` and PNG plots into ``outdir``; returns the written paths.

    ``metrics`` is :func:`genguard.learn.evaluation.compute_metrics` output (plus provenance
    keys). Plots that cannot be drawn (a ROC curve with one class) are skipped and noted.
    """
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    policy = metrics.get("policy") or {}
    t_minor, t_sexual = float(policy.get("minor_threshold", 0.5)), float(policy.get("sexual_threshold", 0.8))
    made = [
        plot_roc(rows, t_minor, out / "roc_minor.png"),
        plot_score_histograms(rows, t_minor, t_sexual, out / "score_histograms.png"),
        plot_reliability(rows, metrics.get("minor_ece"), out / "reliability_minor.png"),
        plot_subgroups(metrics.get("subgroups") or [], out / "subgroups.png"),
    ]
    plots = [p for p in made if p is not None]
    full = {**metrics, "plots": [p.name for p in plots]}
    (out / "metrics.json").write_text(json.dumps(full, indent=2) + "\n")
    (out / "report.md").write_text(_markdown(full, plots))
    _write_scores(rows, out / "scores.csv")
    logger.info("wrote the evaluation report to %s", out)
    return [out / "metrics.json", out / "report.md", out / "scores.csv", *plots]
