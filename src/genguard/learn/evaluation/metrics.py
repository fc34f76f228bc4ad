"""Metrics of a head on labelled rows: AUC, recall by age band, FPR, ECE, subgroups.

Pure metrics over evaluated rows. :func:`~genguard.learn.evaluation.evaluate`
(what ``genguard eval`` runs) uses them, and so does training. They are pure
and work on plain arrays or on *rows*, one dict per image (see :class:`EvalRow`),
so training code can reuse them on validation scores.

Labels may be missing (``None``); each metric uses only the rows that carry
the labels it needs. A metric that cannot be computed (an AUC with one class,
a recall with no minors) is ``None``, with the reason in ``metrics["notes"]``.

>>> rows = [{"label_minor": 1, "minor": 0.9, "age": 4}, {"label_minor": 0, "minor": 0.2, "age": 30}]
>>> m = compute_metrics(rows, Policy(minor_threshold=0.5))
>>> m["minor_auc"], m["minor_recall"], m["adult_fpr"]
(1.0, 1.0, 0.0)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal, TypedDict

import numpy as np
import numpy.typing as npt

from genguard.policy import Policy

__all__ = [
    "ADULT_BANDS",
    "MINOR_BANDS",
    "SUBGROUP_MIN_ADULTS",
    "Split",
    "EvalRow",
    "compute_metrics",
    "expected_calibration_error",
    "reliability_curve",
    "rows_from_arrays",
    "subgroup_table",
]

MINOR_BANDS: Final[dict[str, tuple[int, int]]] = {"0-5": (0, 5), "6-12": (6, 12), "13-15": (13, 15), "16-17": (16, 17)}
"""Age bands (inclusive) for minor recall."""
ADULT_BANDS: Final[dict[str, tuple[int, int]]] = {"18-20": (18, 20), "21-25": (21, 25), "26+": (26, 10_000)}
"""Age bands (inclusive) for the adult false-positive rate."""
FIXED_ADULT_FPR: Final = 0.01
"""Adult false-positive rate of the threshold-free operating point (``at_adult_fpr``), set on the evaluated set."""
SUBGROUP_MIN_ADULTS: Final = 50
"""Subgroups with fewer adults than this are left out of ``subgroup_fpr_gap_max`` (too noisy)."""

Split = Literal["all", "val", "train"]


class EvalRow(TypedDict, total=False):
    """One evaluated image. Only ``minor`` and ``label_minor`` are needed for the minor metrics.

    ``label_minor``/``label_sexual`` are 1, 0 or None (unknown); ``minor``/``sexual``
    are the head's calibrated scores; ``n_faces`` is None for backbones that find no faces.
    """

    path: str
    label_minor: int | None
    label_sexual: int | None
    age: int | None
    groups: dict[str, str]
    minor: float | None
    sexual: float | None
    decision: str
    n_faces: int | None


# ---------------------------------------------------------------- pure metrics
def reliability_curve(
    y: npt.ArrayLike, p: npt.ArrayLike, bins: int = 10
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """Per equal-width bin of ``p`` on [0, 1]: mean score, fraction positive, count (NaN where empty).

    >>> conf, frac, count = reliability_curve([0, 1, 1], [0.05, 0.95, 0.95], bins=2)
    >>> frac.tolist(), count.tolist()
    ([0.0, 1.0], [1, 2])
    """
    y_arr, p_arr = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    if y_arr.shape != p_arr.shape:
        raise ValueError(f"labels and scores differ in shape: {y_arr.shape} vs {p_arr.shape}")
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    idx = np.clip((p_arr * bins).astype(np.int64), 0, bins - 1)
    count = np.bincount(idx, minlength=bins).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.bincount(idx, weights=p_arr, minlength=bins) / count
        frac = np.bincount(idx, weights=y_arr, minlength=bins) / count
    return conf, frac, count


def expected_calibration_error(y: npt.ArrayLike, p: npt.ArrayLike, bins: int = 10) -> float | None:
    """Expected calibration error: the count-weighted mean ``|fraction positive - mean score|`` over bins.

    Parameters
    ----------
    y : array of 0/1
        Labels.
    p : array of float in [0, 1]
        Predicted probabilities of label 1.
    bins : int, default 10
        Equal-width bins on [0, 1].

    Returns
    -------
    float or None
        None when there are no samples.

    >>> expected_calibration_error([0, 0, 1, 1], [0.0, 0.0, 1.0, 1.0])
    0.0
    >>> round(expected_calibration_error([0, 0, 1, 1], [0.9, 0.9, 0.9, 0.9]), 2)
    0.4
    """
    conf, frac, count = reliability_curve(y, p, bins)
    n = int(count.sum())
    if n == 0:
        return None
    used = count > 0
    return float(np.sum(count[used] * np.abs(frac[used] - conf[used])) / n)


def _rate(hits: npt.NDArray[np.bool_]) -> float | None:
    return float(hits.mean()) if hits.size else None


def operating_point(y: npt.NDArray[np.int64], p: npt.NDArray[np.float64], age: npt.NDArray[np.float64], fpr: float) -> dict[str, Any] | None:
    """Minor recall by band, adults 18-20 flagged and under-18 F2 at the lowest threshold flagging at most ``fpr`` of adults.

    The threshold is set on the rows themselves (so it is not a deployable figure: the shipped
    threshold comes from the calib split), which makes heads and datasets comparable.
    """
    from genguard.learn.calibration import fpr_threshold

    n_adults = int((y == 0).sum())
    if not n_adults or not (y == 1).any():
        return None
    t = fpr_threshold(p, y, fpr)
    tp, fn, fp = int((p[y == 1] >= t).sum()), int((p[y == 1] < t).sum()), int((p[y == 0] >= t).sum())
    out: dict[str, Any] = {"target": fpr, "threshold": t, "adult_fpr": fp / n_adults, "f2": 5 * tp / (5 * tp + 4 * fn + fp)}
    for band, (lo, hi) in {**MINOR_BANDS, "18-20": ADULT_BANDS["18-20"]}.items():
        label = 0 if band == "18-20" else 1
        out[band] = _rate(p[(y == label) & (age >= lo) & (age <= hi)] >= t)
    return out


def subgroup_table(
    rows: Sequence[Mapping[str, Any]], threshold: float, keys: tuple[str, ...] = ("gender", "race")
) -> list[dict[str, Any]]:
    """Adult false-positive rate and minor recall at ``threshold`` for each combination of group ``keys``.

    Rows whose ``groups`` lack any of ``keys`` are left out. Each entry holds the
    group values, ``n_adult``, ``adult_fpr``, ``n_minor`` and ``minor_recall``
    (None where the count is zero), sorted by group.

    >>> rows = [{"label_minor": 0, "minor": 0.7, "groups": {"gender": "male", "race": "White"}},
    ...         {"label_minor": 0, "minor": 0.1, "groups": {"gender": "male", "race": "White"}}]
    >>> subgroup_table(rows, 0.5)[0]["adult_fpr"]
    0.5
    """
    cells: dict[tuple[str, ...], list[tuple[int, float]]] = {}
    for r in rows:
        groups, label, score = r.get("groups") or {}, r.get("label_minor"), r.get("minor")
        if label is None or score is None or not all(k in groups for k in keys):
            continue
        cells.setdefault(tuple(str(groups[k]) for k in keys), []).append((int(label), float(score)))
    table = []
    for key in sorted(cells):
        arr = np.array(cells[key], dtype=np.float64)
        adult, minor = arr[arr[:, 0] == 0, 1], arr[arr[:, 0] == 1, 1]
        table.append(
            {**dict(zip(keys, key)), "n_adult": int(adult.size), "adult_fpr": _rate(adult >= threshold),
             "n_minor": int(minor.size), "minor_recall": _rate(minor >= threshold)}
        )
    return table


def _column(rows: Sequence[Mapping[str, Any]], label: str, score: str) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Labels, scores and ages (NaN when unknown) of the rows that have both ``label`` and ``score``."""
    keep = [r for r in rows if r.get(label) is not None and r.get(score) is not None]
    y = np.array([int(r[label]) for r in keep], dtype=np.int64)
    p = np.array([float(r[score]) for r in keep], dtype=np.float64)
    age = np.array([np.nan if r.get("age") is None else float(r["age"]) for r in keep], dtype=np.float64)
    return y, p, age


def compute_metrics(rows: Sequence[Mapping[str, Any]], policy: Policy | Mapping[str, float] | None = None) -> dict[str, Any]:
    """Metrics of one evaluation from its rows (see :class:`EvalRow`); JSON-ready.

    Parameters
    ----------
    rows : sequence of mappings
        One per image, with ``minor`` and ``label_minor`` and optionally ``sexual``,
        ``label_sexual``, ``age``, ``groups``, ``decision`` and ``n_faces``.
    policy : Policy, dict or None, default None
        Thresholds; None uses ``Policy()``. Rates count ``score >= threshold`` as positive.

    Returns
    -------
    dict
        ``n``, ``minor_auc``, ``minor_ece``, ``adult_fpr``, ``minor_recall``, ``minor_recall_by_band``,
        ``adult_fpr_by_band``, ``n_by_band``, ``faces_found``, ``sexual_fpr``, ``blocked``, ``subgroups``,
        ``subgroup_fpr_gap_max``, the label counts, and ``notes`` (why a metric is None).
    """
    from sklearn.metrics import roc_auc_score

    pol = policy if isinstance(policy, Policy) else Policy.from_dict(dict(policy)) if policy is not None else Policy()
    t_minor, t_sexual = pol.minor_threshold, pol.sexual_threshold
    notes: dict[str, str] = {}
    y, p, age = _column(rows, "label_minor", "minor")
    adults, minors = p[y == 0], p[y == 1]
    m: dict[str, Any] = {"n": len(rows), "n_minor": int(minors.size), "n_adult": int(adults.size)}

    if adults.size and minors.size:
        m["minor_auc"] = float(roc_auc_score(y, p))
    else:
        m["minor_auc"] = None
        notes["minor_auc"] = f"needs both classes; have {minors.size} minors and {adults.size} adults"
    m["minor_ece"] = expected_calibration_error(y, p)
    if m["minor_ece"] is None:
        notes["minor_ece"] = "no rows with a minor label"
    m["adult_fpr"] = _rate(adults >= t_minor)
    m["minor_recall"] = _rate(minors >= t_minor)
    for key, size, what in (("adult_fpr", adults.size, "adults"), ("minor_recall", minors.size, "minors")):
        if not size:
            notes[key] = f"no {what} labelled"

    m["minor_recall_by_band"], m["adult_fpr_by_band"], m["n_by_band"] = {}, {}, {}
    for out, bands, label in (("minor_recall_by_band", MINOR_BANDS, 1), ("adult_fpr_by_band", ADULT_BANDS, 0)):
        for band, (lo, hi) in bands.items():
            in_band = (y == label) & (age >= lo) & (age <= hi)
            m[out][band] = _rate(p[in_band] >= t_minor)
            m["n_by_band"][band] = int(in_band.sum())
            if not in_band.any():
                notes[f"{out}.{band}"] = "no labelled rows with an age in this band"

    m["at_adult_fpr"] = operating_point(y, p, age, FIXED_ADULT_FPR)
    n_faces = [int(r["n_faces"]) for r in rows if r.get("n_faces") is not None]
    m["faces_found"] = float(np.mean([n >= 1 for n in n_faces])) if n_faces else None
    if not n_faces:
        notes["faces_found"] = "no face counts (empty set, or a backbone that finds no faces)"

    ys, ps, _ = _column(rows, "label_sexual", "sexual")
    m["n_sexual_negative"] = int((ys == 0).sum())
    m["sexual_fpr"] = _rate(ps[ys == 0] >= t_sexual)
    if m["sexual_fpr"] is None:
        notes["sexual_fpr"] = "no rows labelled sexual=0"
    m["blocked"] = sum(1 for r in rows if r.get("decision") == "block")

    table = subgroup_table(rows, t_minor)
    m["subgroups"] = table
    gaps = [g["adult_fpr"] - m["adult_fpr"] for g in table if g["n_adult"] >= SUBGROUP_MIN_ADULTS and m["adult_fpr"] is not None]
    m["subgroup_fpr_gap_max"] = float(max(gaps)) if gaps else None
    if not gaps:
        notes["subgroup_fpr_gap_max"] = f"no gender x race subgroup with at least {SUBGROUP_MIN_ADULTS} adults"
    m["notes"] = notes
    return m


def rows_from_arrays(
    label_minor: npt.ArrayLike,
    minor: npt.ArrayLike,
    *,
    age: npt.ArrayLike | None = None,
    groups: Sequence[Mapping[str, str]] | None = None,
) -> list[EvalRow]:
    """Rows for :func:`compute_metrics` from arrays of minor labels and scores (and optional ages, groups).

    >>> rows_from_arrays([1, 0], [0.8, 0.1], age=[10, 40])[0]
    {'label_minor': 1, 'minor': 0.8, 'age': 10}
    """
    y, p = np.asarray(label_minor).ravel(), np.asarray(minor, dtype=np.float64).ravel()
    a = None if age is None else np.asarray(age).ravel()
    if y.shape != p.shape or (a is not None and a.shape != y.shape) or (groups is not None and len(groups) != len(y)):
        raise ValueError(f"arrays differ in length: labels {y.shape}, scores {p.shape}")
    rows: list[EvalRow] = []
    for i in range(len(y)):
        row: EvalRow = {"label_minor": int(y[i]), "minor": float(p[i])}
        if a is not None:
            row["age"] = None if np.isnan(float(a[i])) else int(a[i])
        if groups is not None:
            row["groups"] = dict(groups[i])
        rows.append(row)
    return rows


