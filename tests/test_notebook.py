"""Executes notebooks/evaluate.ipynb on a small slice of the UTKFace dev faces (as CI does)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "evaluate.ipynb"
UTKFACE = ROOT.parent / "shared" / "data" / "utkface" / "dev"
LIMIT = 200


def test_notebook_is_committed_without_outputs() -> None:
    nb = json.loads(NOTEBOOK.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and all(not c["outputs"] and c["execution_count"] is None for c in code)


@pytest.mark.slow
@pytest.mark.utkface
@pytest.mark.skipif(not UTKFACE.is_dir(), reason=f"UTKFace dev faces not found at {UTKFACE}; the notebook needs them")
def test_evaluate_notebook_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    monkeypatch.setenv("GENGUARD_EVAL_LIMIT", str(LIMIT))
    monkeypatch.setenv("GENGUARD_UTKFACE", str(UTKFACE))
    monkeypatch.setenv("GENGUARD_EVAL_REPORT", str(tmp_path / "report"))
    monkeypatch.setenv("GENGUARD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if o.output_type == "display_data" and "image/png" in o.data]
    assert len(images) >= 4  # ROC, histograms, reliability, subgroups
    markdown = "\n".join(o.data["text/markdown"] for o in outputs if o.output_type == "display_data" and "text/markdown" in o.data)
    assert "minor AUC" in markdown and "adult FPR" in markdown and "| female |" in markdown
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert metrics["n"] == LIMIT and metrics["dataset"]["split"] == "val"
