"""Every notebook must have a test module that executes it and asserts its metrics.

Notebook NN_name.ipynb is checked by tests/test_nbNN_*.py, which calls the `notebook_metrics`
fixture (conftest.py) and asserts the numbers the notebook claims.
"""
from pathlib import Path

from helpers.course import notebooks


def test_every_notebook_has_metric_checks():
    tests = {p.name[7:9] for p in Path(__file__).parent.glob("test_nb[0-9][0-9]_*.py")}
    unchecked = [nb.name for nb in notebooks() if nb.name[:2] not in tests]
    assert not unchecked, f"notebooks without a tests/test_nbNN_*.py module asserting their metrics: {unchecked}"


def test_notebooks_follow_the_contract():
    import nbformat

    from helpers.course import SETUP_MARK
    from helpers.paths import colab_url
    for path in notebooks():
        nb = nbformat.read(path, as_version=4)
        text = "\n".join(c.source for c in nb.cells)
        assert colab_url(path.name) in text, f"{path.name}: Colab badge missing or stale (run --sync)"
        assert any(SETUP_MARK in c.source for c in nb.cells if c.cell_type == "code"), f"{path.name}: no setup cell"
        params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(params) == 1, f"{path.name}: needs exactly one cell tagged 'parameters'"
        for name in ("output_dir", "metrics_path", "seed"):
            assert f"{name} =" in params[0].source, f"{path.name}: parameter {name} missing"
        assert any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), \
            f"{path.name}: committed without outputs (run python -m helpers.course --inplace --only {path.name[:2]})"
