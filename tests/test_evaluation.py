"""Tests of genguard.learn.evaluation and genguard.learn.evaluation.plots: pure metrics on synthetic rows, then ``genguard eval`` end to end."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from genguard import Policy
from genguard.cli import main
from genguard.learn.datasets import split_of
from genguard.learn.evaluation import (
    SUBGROUP_MIN_ADULTS,
    compute_metrics,
    expected_calibration_error,
    reliability_curve,
    rows_from_arrays,
    subgroup_table,
    write_report,
)

UTKFACE = Path(__file__).resolve().parents[2] / "shared" / "data" / "utkface" / "dev"
REQUIRED_KEYS = {
    "n", "minor_auc", "adult_fpr", "minor_recall", "minor_recall_by_band", "adult_fpr_by_band", "faces_found",
    "sexual_fpr", "blocked", "minor_ece", "head", "head_name", "policy", "dataset", "unreadable", "genguard_version",
    "subgroups", "notes",
}
POLICY = Policy(minor_threshold=0.5, sexual_threshold=0.8, review_minor=0.25, review_sexual=0.4)


def _row(label: int | None, score: float, age: int | None = None, **extra: object) -> dict[str, object]:
    return {"label_minor": label, "minor": score, "age": age, **extra}


# ------------------------------------------------------------------ metrics
def test_auc_and_rates_at_threshold() -> None:
    # Positive 0.4 beats negative 0.1 only, positive 0.9 beats both: 3 of 4 pairs ranked right.
    rows = [_row(0, 0.1), _row(0, 0.6), _row(1, 0.4), _row(1, 0.9)]
    m = compute_metrics(rows, POLICY)
    assert m["minor_auc"] == pytest.approx(0.75)
    assert m["adult_fpr"] == pytest.approx(0.5)
    assert m["minor_recall"] == pytest.approx(0.5)
    assert (m["n"], m["n_minor"], m["n_adult"]) == (4, 2, 2)


def test_score_equal_to_threshold_counts_as_flagged_like_the_policy() -> None:
    m = compute_metrics([_row(1, 0.5), _row(0, 0.5)], POLICY)
    assert m["minor_recall"] == 1.0 and m["adult_fpr"] == 1.0
    assert POLICY.decide(0.5, 0.8) == "block"


def test_recall_and_fpr_by_age_band() -> None:
    rows = [_row(1, 0.9, 3), _row(1, 0.2, 5), _row(1, 0.6, 14), _row(0, 0.7, 19), _row(0, 0.1, 19), _row(0, 0.1, 40)]
    m = compute_metrics(rows, POLICY)
    assert m["minor_recall_by_band"] == {"0-5": 0.5, "6-12": None, "13-15": 1.0, "16-17": None}
    assert m["adult_fpr_by_band"] == {"18-20": 0.5, "21-25": None, "26+": 0.0}
    assert m["n_by_band"]["0-5"] == 2 and m["n_by_band"]["26+"] == 1
    assert "minor_recall_by_band.6-12" in m["notes"]


def test_missing_labels_are_excluded_and_one_class_gives_null_with_note() -> None:
    rows = [_row(0, 0.1), _row(0, 0.3), _row(None, 0.99), {"minor": 0.5}]
    m = compute_metrics(rows, POLICY)
    assert m["n"] == 4 and m["n_adult"] == 2
    assert m["minor_auc"] is None and "both classes" in m["notes"]["minor_auc"]
    assert m["minor_recall"] is None and m["adult_fpr"] == 0.0
    empty = compute_metrics([], POLICY)
    assert empty["n"] == 0 and empty["minor_auc"] is None and empty["minor_ece"] is None and empty["blocked"] == 0
    json.dumps(empty)  # JSON-ready even when nothing could be computed


def test_sexual_fpr_blocked_and_faces_found() -> None:
    rows = [
        _row(0, 0.1, label_sexual=0, sexual=0.9, decision="allow", n_faces=1),
        _row(0, 0.1, label_sexual=0, sexual=0.1, decision="allow", n_faces=0),
        _row(1, 0.9, label_sexual=1, sexual=0.95, decision="block", n_faces=2),
        _row(1, 0.9, label_sexual=None, sexual=0.99, decision="block", n_faces=None),
    ]
    m = compute_metrics(rows, POLICY)
    assert m["sexual_fpr"] == pytest.approx(0.5)
    assert m["n_sexual_negative"] == 2
    assert m["blocked"] == 2
    assert m["faces_found"] == pytest.approx(2 / 3)
    no_faces = compute_metrics([_row(0, 0.1, n_faces=None)], POLICY)
    assert no_faces["faces_found"] is None and "faces_found" in no_faces["notes"]


def test_policy_may_be_a_dict_and_thresholds_follow_it() -> None:
    rows = [_row(1, 0.3), _row(0, 0.1)]
    assert compute_metrics(rows, {"minor_threshold": 0.25, "review_minor": 0.2})["minor_recall"] == 1.0
    assert compute_metrics(rows, POLICY)["minor_recall"] == 0.0


def test_ece_of_calibrated_and_miscalibrated_predictors() -> None:
    y = [1, 0, 0, 0, 1, 1, 1, 0]
    calibrated = [0.25] * 4 + [0.75] * 4  # each bin's mean score equals its fraction positive
    assert expected_calibration_error(y, calibrated) == pytest.approx(0.0)
    assert expected_calibration_error(y, [0.95] * 8) == pytest.approx(0.45)
    rng = np.random.default_rng(0)
    p = rng.uniform(size=20_000)
    labels = (rng.uniform(size=p.size) < p).astype(int)
    assert expected_calibration_error(labels, p) < 0.02
    assert expected_calibration_error(labels, p**3) > 0.15
    assert expected_calibration_error([], []) is None


def test_reliability_curve_bins_and_shape_errors() -> None:
    conf, frac, count = reliability_curve([0, 1, 1, 0], [0.0, 1.0, 0.95, 0.5], bins=2)
    assert count.tolist() == [1, 3]
    assert frac.tolist() == pytest.approx([0.0, 2 / 3])
    assert conf.tolist() == pytest.approx([0.0, 2.45 / 3])
    with pytest.raises(ValueError, match="shape"):
        expected_calibration_error([0, 1], [0.5])


def test_subgroup_table_counts_rates_and_gap() -> None:
    def g(gender: str, race: str) -> dict[str, str]:
        return {"gender": gender, "race": race}

    n = SUBGROUP_MIN_ADULTS
    rows = (
        [_row(0, 0.9 if i < 5 else 0.1, 30, groups=g("female", "Black")) for i in range(n)]  # FPR 5/n
        + [_row(0, 0.1, 30, groups=g("male", "White")) for _ in range(n)]  # FPR 0
        + [_row(1, 0.9, 8, groups=g("male", "White")), _row(1, 0.1, 8, groups=g("male", "White"))]
        + [_row(0, 0.9, 30, groups={"gender": "male"})]  # no race: not in the table
    )
    table = subgroup_table(rows, 0.5)
    assert [(c["gender"], c["race"]) for c in table] == [("female", "Black"), ("male", "White")]
    fb, mw = table
    assert (fb["n_adult"], fb["adult_fpr"], fb["n_minor"], fb["minor_recall"]) == (n, 5 / n, 0, None)
    assert (mw["n_adult"], mw["adult_fpr"], mw["n_minor"], mw["minor_recall"]) == (n, 0.0, 2, 0.5)
    m = compute_metrics(rows, POLICY)
    assert m["subgroups"] == table
    assert m["subgroup_fpr_gap_max"] == pytest.approx(5 / n - 6 / (2 * n + 1))


def test_rows_from_arrays_feed_compute_metrics() -> None:
    rows = rows_from_arrays(np.array([1, 0, 1]), np.array([0.9, 0.2, 0.7]), age=[4, 30, 14])
    m = compute_metrics(rows, POLICY)
    assert m["minor_auc"] == 1.0 and m["minor_recall_by_band"]["13-15"] == 1.0
    with pytest.raises(ValueError, match="length"):
        rows_from_arrays([1, 0], [0.5])


def test_write_report_files_and_skipped_roc(tmp_path: Path) -> None:
    rows = [
        {**_row(0, s, 30, groups={"gender": "male", "race": "White"}), "path": f"{i}.png", "label_sexual": 0,
         "sexual": 0.01, "decision": "allow", "n_faces": 1}
        for i, s in enumerate([0.1, 0.2, 0.3])
    ]
    metrics = {**compute_metrics(rows, POLICY), "policy": POLICY.to_dict()}
    written = write_report(rows, metrics, tmp_path / "out")
    names = {p.name for p in written}
    assert {"metrics.json", "report.md", "scores.csv", "score_histograms.png", "reliability_minor.png", "subgroups.png"} <= names
    assert "roc_minor.png" not in names  # one class: no ROC curve, and the report says why
    assert all(p.stat().st_size > 0 for p in written)
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved["minor_auc"] is None and "minor_auc" in saved["notes"]
    assert "minor_auc" in (tmp_path / "out" / "report.md").read_text()
    with (tmp_path / "out" / "scores.csv").open() as fh:
        table = list(csv.DictReader(fh))
    assert [r["path"] for r in table] == ["0.png", "1.png", "2.png"] and table[0]["race"] == "White"


# --------------------------------------------------------------- end to end
def _benign_folder(root: Path) -> Path:
    from PIL import Image
    from skimage import data

    root.mkdir()
    for name in ("astronaut", "coffee", "chelsea", "rocket", "camera"):
        Image.fromarray(getattr(data, name)()).save(root / f"{name}.png")
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return root


def test_cli_eval_benign_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _benign_folder(tmp_path / "benign")
    out = tmp_path / "report"
    rc = main(["eval", "--data", str(folder), "--assume", "minor=0,sexual=0", "--report", str(out), "--cache", str(tmp_path / "cache")])
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads((out / "metrics.json").read_text())
    assert REQUIRED_KEYS <= set(saved)
    assert printed["n"] == saved["n"] == 5 and saved["unreadable"] == 1
    assert saved["dataset"] == {"path": str(folder), "format": "folder", "split": "all", "limit": None, "records": 6}
    assert saved["minor_auc"] is None and saved["minor_recall"] is None
    assert saved["sexual_fpr"] == 0.0 and saved["blocked"] == 0  # benign photos never block
    assert saved["head"].endswith("@bundled") and saved["head"].startswith(saved["head_name"])
    assert (out / "report.md").is_file() and (out / "scores.csv").is_file()
    assert all((out / p).is_file() for p in saved["plots"]) and "score_histograms.png" in saved["plots"]


@pytest.mark.slow
@pytest.mark.utkface
@pytest.mark.skipif(not UTKFACE.is_dir(), reason=f"UTKFace dev faces not found at {UTKFACE}")
def test_cli_eval_utkface_slice(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cache = str(tmp_path / "cache")
    out = tmp_path / "all"
    assert main(["eval", "--data", str(UTKFACE), "--limit", "60", "--report", str(out), "--cache", cache]) == 0
    saved = json.loads((out / "metrics.json").read_text())
    assert REQUIRED_KEYS <= set(saved) and saved["n"] == 60 and saved["dataset"]["format"] == "utkface"
    assert 0.5 < saved["minor_auc"] <= 1.0 and 0.0 <= saved["minor_ece"] <= 1.0
    assert set(saved["minor_recall_by_band"]) == {"0-5", "6-12", "13-15", "16-17"}
    assert set(saved["adult_fpr_by_band"]) == {"18-20", "21-25", "26+"}
    assert saved["faces_found"] > 0.8 and saved["sexual_fpr"] is not None and saved["subgroups"]
    assert {"roc_minor.png", "score_histograms.png", "reliability_minor.png", "subgroups.png"} <= set(saved["plots"])
    assert all((out / p).stat().st_size > 0 for p in saved["plots"])
    capsys.readouterr()

    val = tmp_path / "val"
    assert main(["eval", "--data", str(UTKFACE), "--limit", "20", "--split", "val", "--report", str(val), "--cache", cache]) == 0
    with (val / "scores.csv").open() as fh:
        paths = [r["path"] for r in csv.DictReader(fh)]
    assert len(paths) == 20 and all(split_of(p) == "val" for p in paths)
    assert json.loads((val / "metrics.json").read_text())["dataset"]["split"] == "val"


@pytest.mark.slow
@pytest.mark.utkface
def test_eval_scores_equal_guard_classify_batch(tmp_path: Path, utkface_dir: Path, guard: Any, benign_images: dict[str, Any]) -> None:
    """What `genguard eval` reports is what Guard.classify_batch gives on the same files: one pipeline."""
    from PIL import Image

    from conftest import utkface_sample

    own = tmp_path / "own"
    own.mkdir()
    Image.fromarray(benign_images["astronaut"]).save(own / "astronaut.png")
    frames = [Image.fromarray(benign_images["coffee"]).resize((64, 48)), Image.fromarray(benign_images["astronaut"]).resize((64, 48))]
    frames[0].save(own / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    # UTKFace faces are read in place through a manifest (never copied).
    files = utkface_sample(utkface_dir, 1, 12, 3) + utkface_sample(utkface_dir, 30, 60, 3) + sorted(own.iterdir())
    manifest = tmp_path / "manifest.csv"
    with open(manifest, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "minor"])
        w.writerows([[str(f), ""] for f in files])
    assert main(["eval", "--data", str(manifest), "--report", str(tmp_path / "report"), "--cache", str(tmp_path / "cache")]) == 0
    with open(tmp_path / "report" / "scores.csv", newline="") as fh:
        reported = {r["path"]: (float(r["minor"]), float(r["sexual"]), r["decision"]) for r in csv.DictReader(fh)}
    verdicts = guard.classify_batch(files)
    direct = {str(f): (v.scores.minor, v.scores.sexual, v.decision) for f, v in zip(files, verdicts)}
    assert set(reported) == set(direct) and len(direct) == 8
    for name, (minor, sexual, decision) in direct.items():
        assert reported[name][0] == pytest.approx(minor, abs=1e-4), name
        assert reported[name][1] == pytest.approx(sexual, abs=1e-4), name
        assert reported[name][2] == decision, name


def test_operating_point_at_a_fixed_adult_fpr() -> None:
    from genguard.learn.evaluation.metrics import operating_point

    # 200 adults scored 0.00-0.995, the top two (1%) highest; minors of known ages at known scores
    adults = np.linspace(0.0, 0.995, 200)
    minors = np.array([0.999, 0.998, 0.5, 0.2])  # ages 3, 10, 14, 17
    y = np.array([0] * 200 + [1] * 4)
    p = np.concatenate([adults, minors])
    age = np.concatenate([np.full(200, 30.0), [3.0, 10.0, 14.0, 17.0]])
    op = operating_point(y, p, age, 0.01)
    assert op is not None and op["adult_fpr"] <= 0.01
    assert 0.985 < op["threshold"] <= 0.99  # just above the third-highest adult
    assert (op["0-5"], op["6-12"], op["13-15"], op["16-17"]) == (1.0, 1.0, 0.0, 0.0)
    assert op["f2"] == pytest.approx(5 * 2 / (5 * 2 + 4 * 2 + 2))
    assert operating_point(y[:200], p[:200], age[:200], 0.01) is None  # no minors: no operating point
