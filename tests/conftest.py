import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# Tests never reach a hub: everything is local.
for key, value in {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                   "TOKENIZERS_PARALLELISM": "false", "MPLBACKEND": "Agg"}.items():
    os.environ.setdefault(key, value)

_metrics: dict[str, dict] = {}


@pytest.fixture(scope="session")
def notebook_metrics(tmp_path_factory):
    """notebook_metrics("02") executes notebooks/02_*.ipynb once per test session with papermill
    (default parameters, offline, outputs in a temporary folder) and returns its metrics JSON."""
    from helpers.course import notebooks, run_notebook

    def run(prefix: str) -> dict:
        if prefix not in _metrics:
            (nb,) = notebooks([prefix])
            metrics, seconds = run_notebook(nb, tmp_path_factory.mktemp(nb.stem))
            print(f"\n{nb.name}: {seconds:.1f} s")
            _metrics[prefix] = metrics
        return _metrics[prefix]

    return run
