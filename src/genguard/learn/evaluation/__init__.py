"""Evaluation: metrics, plots and the report of a head on labelled data.

- :mod:`.metrics`: pure metrics over rows (AUC, recall by age band, FPR, ECE, subgroups);
- :mod:`.plots`: the figures and the written report;
- :mod:`.run`: :func:`evaluate`, which scores a dataset through the Guard's pipeline.
"""

from genguard.learn.evaluation.metrics import (
    ADULT_BANDS,
    MINOR_BANDS,
    SUBGROUP_MIN_ADULTS,
    EvalRow,
    compute_metrics,
    expected_calibration_error,
    reliability_curve,
    rows_from_arrays,
    subgroup_table,
)
from genguard.learn.evaluation.run import EvalReport, evaluate, write_report

__all__ = [
    "ADULT_BANDS",
    "MINOR_BANDS",
    "SUBGROUP_MIN_ADULTS",
    "EvalReport",
    "EvalRow",
    "compute_metrics",
    "evaluate",
    "expected_calibration_error",
    "reliability_curve",
    "rows_from_arrays",
    "subgroup_table",
    "write_report",
]
