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


def test_committed_notebooks_show_their_figures():
    """Every cell that draws stores its image (the kernel's inline backend), and every notebook has some."""
    import nbformat

    from helpers.course import blank_figures
    for path in notebooks():
        assert not blank_figures(path), \
            f"{path.name}: code cells {blank_figures(path)} draw but store no image (re-run with --inplace)"
        nb = nbformat.read(path, as_version=4)
        images = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code"
                     for o in c.get("outputs", []))
        assert images > 0, f"{path.name}: no figure stored"


def test_stored_outputs_are_clean_and_code_fits_colab():
    """No frozen progress bars or library warnings in stored outputs; code lines at most 100 characters."""
    import re

    import nbformat
    noise = re.compile(r"\d+%\|[^\n]*\||Warning:|Failed to load CPU gemm|\{'loss': ")
    for path in notebooks():
        nb = nbformat.read(path, as_version=4)
        for i, c in enumerate(nb.cells):
            if c.cell_type != "code":
                continue
            wide = [line for line in c.source.splitlines() if len(line) > 100]
            assert not wide, f"{path.name} cell {i}: code lines over 100 characters: {wide}"
            for o in c.get("outputs", []):
                text = o.get("text", "") if o.get("output_type") == "stream" else ""
                hit = noise.search(text)
                assert hit is None, f"{path.name} cell {i}: noise in stored output: {hit.group(0)!r}"


SCREEN_LINES = 40   # STYLE: no cell longer than a screen (DESIGN's course contract counts 40 lines)


def test_no_code_cell_is_longer_than_a_screen():
    import nbformat

    long = []
    for path in notebooks():
        nb = nbformat.read(path, as_version=4)
        long += [f"{path.name} cell {i}: {n} lines" for i, c in enumerate(nb.cells)
                 if c.cell_type == "code" and (n := len(c.source.splitlines())) > SCREEN_LINES]
    assert not long, f"code cells longer than {SCREEN_LINES} lines (split them where a result shows): {long}"


def test_every_notebook_links_the_glossary_that_exists():
    from helpers.paths import ROOT
    glossary = ROOT / "GLOSSARY.md"
    assert glossary.exists() and "中文" in glossary.read_text()
    for path in notebooks():
        assert "](../GLOSSARY.md)" in path.read_text(), f"{path.name}: no link to the glossary"


def notebook_code(path) -> str:
    """A notebook's code cells as one Python module (IPython magics and shell lines left out)."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    cells = ["\n".join(line for line in c.source.splitlines() if not line.lstrip().startswith(("%", "!")))
             for c in nb.cells if c.cell_type == "code"]
    return "\n\n".join(cells) + "\n"


def test_notebook_code_has_no_unused_imports_or_dead_names():
    """pyflakes over every notebook's code cells: an unused import, a name defined twice with no use between
    (a half-written `def` left above the real one), an undefined name. A learner reads every line."""
    from pyflakes.api import check
    from pyflakes.reporter import Reporter
    import io

    problems = []
    for path in notebooks():
        out = io.StringIO()
        check(notebook_code(path), path.name, Reporter(out, out))
        problems += [line for line in out.getvalue().splitlines() if line.strip()]
    assert not problems, "pyflakes on the notebooks' code:\n" + "\n".join(problems)


def test_no_trainer_is_trained_outside_the_one_routine():
    """Every training goes through helpers.runs.train: no `.train(` on a trainer in a notebook or a helper."""
    import re

    from helpers.paths import ROOT
    call = re.compile(r"\b(?!model\b)\w+\.train\((?:resume_from_checkpoint|\))")
    sources = {path.name: notebook_code(path) for path in notebooks()}
    sources |= {str(p.relative_to(ROOT)): p.read_text() for p in (ROOT / "helpers").glob("*.py")
                if p.name != "runs.py"}
    found = {name: call.findall(text) for name, text in sources.items() if call.search(text)}
    assert not found, f"trainers trained outside helpers.runs.train: {found}"
