import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from helpers.env import OFFLINE_ENV  # noqa: E402

# Tests never reach a hub: everything is local. Agg for the figures unit tests draw (the notebook kernels get
# the inline backend instead: helpers.course.kernel_environment).
for key, value in {**OFFLINE_ENV, "MPLBACKEND": "Agg"}.items():
    os.environ.setdefault(key, value)
# For a developer: COURSE_REUSE_OUTPUTS=1 reads the tiny run's metrics from outputs/<notebook>/metrics.json,
# written by `python -m helpers.course --inplace`, instead of executing the notebook again. CI never sets it.
REUSE_OUTPUTS = os.environ.get("COURSE_REUSE_OUTPUTS") == "1"

_metrics: dict[tuple[str, str], dict] = {}
_seconds: dict[tuple[str, str], float] = {}


# Run in parallel (README: `-n 2 --dist loadfile`, pytest-xdist), each worker executes whole notebooks: every
# test of one notebook's module lands on the same worker, so each notebook still runs once per budget (plain
# `-n 2` would spread a module's tests and run its notebook on both workers), and the slowest start first.
# (`--dist loadgroup` would do it by marks, but pytest 9 ignores the test ids xdist 3.8 rewrites for it.)
# A worker gets an equal share of the cores (torch and the kernels it starts: OMP_NUM_THREADS), so two
# workers on 2 cores do not fight over them.
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if WORKERS > 1:
    os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // WORKERS))


# The real-model smoke's seconds in CI (2026-12-03 on the Xeon, one core a worker; 09 before its warm-up went from 16
# steps to 4), only to order the groups: the tiny run's time is read from the committed notebook.
SMOKE_SECONDS = {"00": 38, "01": 105, "02": 130, "03": 79, "04": 202, "05": 101, "06": 87, "07": 140, "08": 298,
                 "09": 134}


def _notebook_seconds(prefix: str) -> float:
    """A notebook's cost in a test session: the committed notebook's own run time (papermill's record) and its
    smoke run's, to start the slowest first."""
    import json

    found = sorted((ROOT / "notebooks").glob(f"{prefix}_*.ipynb"))
    if not found:
        return 0.0
    tiny = json.loads(found[0].read_text())["metadata"].get("papermill", {}).get("duration") or 0.0
    return tiny + SMOKE_SECONDS.get(prefix, 0.0)


def _notebook_of(item) -> str | None:
    """The notebook prefix a test module is about: `test_nb03_three_families` -> "03"."""
    module = item.module.__name__.rsplit(".", 1)[-1] if item.module else ""
    return module.split("_")[1][2:] if module.startswith("test_nb") else None


def pytest_collection_modifyitems(config, items):
    """The slowest notebooks' modules first: a parallel run (`--dist loadfile`) hands out whole test files in
    this order."""
    cost = {nb: _notebook_seconds(nb) for nb in {_notebook_of(item) for item in items} if nb}
    items.sort(key=lambda item: -cost.get(_notebook_of(item), 0.0))   # stable: a file's own order is kept


def pytest_testnodedown(node, error):
    """On the controller of a parallel run: collect each worker's notebook run times."""
    _seconds.update({tuple(k.split("|")): v for k, v in node.workeroutput.get("notebook_seconds", {}).items()})


def pytest_sessionfinish(session):
    if hasattr(session.config, "workeroutput"):   # a worker: send the run times to the controller
        session.config.workeroutput["notebook_seconds"] = {"|".join(k): v for k, v in _seconds.items()}


def pytest_terminal_summary(terminalreporter):
    """Each notebook's run time in this session, so that a slow CI run says where the time went."""
    if _seconds:
        workers = terminalreporter.config.getoption("numprocesses", None) or 1
        terminalreporter.write_sep("-", f"notebook run times ({workers} worker(s) in parallel)")
        for (prefix, budget), seconds in sorted(_seconds.items()):
            terminalreporter.write_line(f"{prefix} {budget:6s} {seconds:7.1f} s")
        terminalreporter.write_line(f"total     {sum(_seconds.values()):7.1f} s")


def _run(tmp_path_factory, prefix: str, budget: str) -> dict:
    import json

    from helpers.course import blank_figures, notebooks, run_notebook

    key = (prefix, budget)
    if key not in _metrics:
        (nb,) = notebooks([prefix])
        if REUSE_OUTPUTS and budget == "tiny":
            _metrics[key] = json.loads((ROOT / "outputs" / nb.stem / "metrics.json").read_text())
            return _metrics[key]
        out = tmp_path_factory.mktemp(f"{nb.stem}_{budget}")
        metrics, seconds = run_notebook(nb, out, {"budget": budget})
        _seconds[key] = seconds
        blank = blank_figures(out / nb.name)
        assert not blank, f"{nb.name} ({key[1]}): cells {blank} draw but stored no figure"
        _metrics[key] = metrics
    return _metrics[key]


@pytest.fixture(scope="session")
def notebook_metrics(tmp_path_factory):
    """notebook_metrics("02") executes notebooks/02_*.ipynb once per test session with papermill
    (default parameters: the tiny world; offline; outputs in a temporary folder), checks that every cell
    that draws stored its figure, and returns the notebook's metrics JSON."""
    return lambda prefix: _run(tmp_path_factory, prefix, "tiny")


@pytest.fixture(scope="session")
def real_notebook_metrics(tmp_path_factory):
    """The same on the real model (SmolLM2-135M-Instruct, real data) at the small CI budget."""
    return lambda prefix: _run(tmp_path_factory, prefix, "smoke")


@pytest.fixture(scope="session")
def make_tokenizer():
    """make_tokenizer(texts, vocab_size): a byte-level BPE with the course's chat template, trained on the texts."""
    from helpers.base_model import train_tokenizer
    return train_tokenizer


@pytest.fixture(scope="session")
def make_llama():
    """make_llama(tokenizer, layers=1, tied=True): a tiny random Llama (hidden 32, MLP 64, 2 heads, 1 kv head) for
    that tokenizer (or, tokenizer=None, a 64-token vocabulary), in eval mode."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    def build(tokenizer, layers: int = 1, tied: bool = True):
        torch.manual_seed(0)
        ids = {"eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id} if tokenizer else {}
        config = LlamaConfig(vocab_size=len(tokenizer) if tokenizer else 64, hidden_size=32, intermediate_size=64,
                             num_hidden_layers=layers, num_attention_heads=2, num_key_value_heads=1,
                             tie_word_embeddings=tied, **ids)
        return LlamaForCausalLM(config).eval()

    return build
