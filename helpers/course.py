"""The main job: run every notebook in order with papermill and print their headline numbers.

    python -m helpers.course                  # every notebook, executed copies in outputs/course
    python -m helpers.course --only 00 02     # some of them
    python -m helpers.course --real           # on SmolLM2-135M-Instruct and real data, at a small budget
    python -m helpers.course --inplace        # refresh the committed notebooks' outputs
    python -m helpers.course --sync           # rewrite badges and setup cells from helpers.paths.REPO
    python -m helpers.course --html           # render the executed copies to HTML, to read as a learner does
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import time
from pathlib import Path

from helpers.env import BATCH_ENV
from helpers.paths import NOTEBOOKS_DIR, REPO_URL, ROOT, colab_badge

# The kernel's environment: offline, quiet progress bars, and matplotlib's inline backend (no MPLBACKEND),
# so that every figure is stored in the executed notebook.
KERNEL_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
              "TOKENIZERS_PARALLELISM": "false", BATCH_ENV: "1"}

# The real model and real data every notebook also runs on (tests/test_real_model.py, `--real`, the benchmark).
REAL_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
REAL_CHAT_DATA = "data/real/alpaca_5000.json"
REAL_PREFERENCE_DATA = "data/real/hh_rlhf_harmless_test.jsonl.gz"
# Per notebook: the parameters of a run on the real model at a small budget (CI) and at a realistic one (benchmark).
REAL_MODEL_RUNS: dict[str, dict[str, dict]] = {
    "smoke": {
        "01": {"max_steps": 4, "batch_size": 4, "max_train_rows": 64, "timing_repeats": 5},
        "02": {"dataset": REAL_CHAT_DATA, "max_train_rows": 32, "max_eval_rows": 6, "max_steps": 4,
               "batch_size": 4, "max_length": 192, "sweep_steps": 0, "overfit_epochs": 0},
        "03": {"dataset": REAL_CHAT_DATA, "max_train_rows": 24, "max_eval_rows": 6, "max_steps": 3,
               "batch_size": 4, "max_length": 192, "seeds": [0]},
        "04": {"dataset": REAL_CHAT_DATA, "max_train_rows": 24, "max_eval_rows": 6, "max_steps": 3,
               "batch_size": 4, "max_length": 192, "seeds": [0], "max_probes": 48},
        "05": {"dataset": REAL_PREFERENCE_DATA, "max_train_rows": 32, "max_eval_rows": 12, "max_steps": 2,
               "batch_size": 2, "max_length": 128, "sweep_betas": [], "max_probes": 32, "check_pairs": 4},
        "06": {"seeds": [0], "max_steps": 3, "batch_size": 4, "ranks": [], "replay_ratios": [0.25],
               "max_probes": 32, "max_skill_rows": 8, "put_back": False, "alignment_tax": False,
               "measure_every": 3},
        "07": {"steps": {"facts": 3, "skill": 3, "persona": 3}, "batch_size": 4, "max_eval_rows": 2,
               "timing_repeats": 3, "combination_types": ["cat"]},
        "08": {"dataset": REAL_CHAT_DATA, "batch_size": 2, "seq_len": 64, "timed_steps": 1,
               "gen_tokens": 8, "launch_steps": 3},
        "09": {"reward": "reversal_partial", "warmup_sft_steps": 16, "max_steps": 2,
               "prompts_per_step": 2, "num_generations": 4,
               "seeds": [0], "hack_steps": 0, "generations_sweep": [], "max_eval_rows": 8,
               "max_probes": 16},
    },
    # A realistic budget that fits 2 CPU cores in about 45 minutes for the whole course (python -m
    # helpers.bench --real); on a GPU raise rows and steps (BENCHMARKS.md records what ran where).
    "benchmark": {
        "01": {"max_steps": 16, "batch_size": 8, "max_train_rows": 256, "timing_repeats": 5},
        "02": {"dataset": REAL_CHAT_DATA, "max_train_rows": 256, "max_eval_rows": 24, "max_steps": 24,
               "batch_size": 8, "max_length": 256, "sweep_steps": 0, "overfit_epochs": 0},
        "03": {"dataset": REAL_CHAT_DATA, "max_train_rows": 128, "max_eval_rows": 16, "max_steps": 12,
               "batch_size": 8, "max_length": 256, "seeds": [0]},
        "04": {"dataset": REAL_CHAT_DATA, "max_train_rows": 128, "max_eval_rows": 16, "max_steps": 12,
               "batch_size": 8, "max_length": 256, "seeds": [0], "max_probes": 96},
        "05": {"dataset": REAL_PREFERENCE_DATA, "max_train_rows": 128, "max_eval_rows": 48, "max_steps": 12,
               "batch_size": 4, "max_length": 192, "sweep_betas": [], "max_probes": 96, "check_pairs": 8},
        "06": {"seeds": [0, 1, 2], "max_steps": 12, "batch_size": 8, "ranks": [], "replay_ratios": [0.25],
               "max_probes": 96, "max_skill_rows": 24, "put_back": False, "alignment_tax": False,
               "measure_every": 4},
        "07": {"steps": {"facts": 12, "skill": 12, "persona": 12}, "batch_size": 8, "max_eval_rows": 16,
               "timing_repeats": 3, "combination_types": ["cat"]},
        "08": {"dataset": REAL_CHAT_DATA, "batch_size": 4, "seq_len": 256, "launch_steps": 3},
        "09": {"reward": "reversal_partial", "warmup_sft_steps": 30, "max_steps": 12, "prompts_per_step": 4,
               "num_generations": 4, "seeds": [0, 1], "hack_steps": 0, "generations_sweep": [],
               "max_eval_rows": 24, "max_probes": 48},
    },
}


def real_model_parameters(prefix: str, budget: str = "smoke") -> dict:
    """papermill parameters that run notebook `prefix` on the real model at the given budget."""
    return {"model": REAL_MODEL, **REAL_MODEL_RUNS[budget].get(prefix, {})}


def notebooks(only: list[str] | None = None) -> list[Path]:
    found = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
    if only:
        found = [nb for nb in found if any(nb.name.startswith(o) for o in only)]
    return found


@contextlib.contextmanager
def kernel_environment():
    """os.environ as the notebook kernels should inherit it, restored afterwards."""
    saved = dict(os.environ)
    os.environ.update(KERNEL_ENV)
    os.environ.pop("MPLBACKEND", None)  # Agg would draw nothing into the notebook
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def execute(notebook: Path, output: Path, parameters: dict | None = None, live: bool = False) -> float:
    """Run a notebook top to bottom with papermill; returns the seconds it took.

    live: show which cell of how many is running and the elapsed time (the course command does).
    """
    import papermill as pm

    progress = {"desc": notebook.stem, "unit": "cell", "leave": False} if live else False
    start = time.perf_counter()
    with kernel_environment():
        pm.execute_notebook(str(notebook), str(output), parameters=parameters or {}, cwd=str(NOTEBOOKS_DIR),
                            kernel_name="python3", progress_bar=progress)
    return time.perf_counter() - start


def run_notebook(notebook: Path, out_dir: Path, parameters: dict | None = None, live: bool = False,
                 output_notebook: Path | None = None) -> tuple[dict, float]:
    """Execute one notebook in out_dir; returns (its metrics JSON, seconds).

    The notebook writes its metrics to out_dir/metrics.json and anything else under out_dir.
    """
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics_path = out_dir / "metrics.json"
    params = {"output_dir": str(out_dir), "metrics_path": str(metrics_path), **(parameters or {})}
    seconds = execute(notebook, output_notebook or out_dir / notebook.name, params, live)
    return json.loads(metrics_path.read_text()), seconds


DRAWS = re.compile(r"plt\.(show|subplots|figure)\(|\bfig\.|\bplot_[a-z_]+\(|\bbar\(|draw_[a-z_]+\(|\.plot\(")


def blank_figures(notebook: Path) -> list[int]:
    """Indexes of code cells that draw (by their source) but store no image: a reader would see nothing.

    A cell that rightly draws nothing for some parameters says so in a comment: "# no figure when ...".
    """
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    return [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and DRAWS.search(c.source)
            and "# no figure when" not in c.source
            and not any("image/png" in o.get("data", {}) for o in c.get("outputs", []))]


def headline(metrics: dict) -> str:
    """The scalar metrics of a notebook, short, for the summary table."""
    items = [f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()
             if isinstance(v, (int, float, bool))]
    return ", ".join(items[:6])


SETUP_MARK = "# written by `python -m helpers.course --sync`"


def setup_cell_source() -> str:
    return f'''# Setup. On Colab: fetch the course, install what Colab lacks, check the runtime. Locally: nothing.
import os, subprocess, sys
if "google.colab" in sys.modules and not os.path.exists("/content/course"):
    {SETUP_MARK}
    REPO_URL = "{REPO_URL}"
    subprocess.run(["git", "clone", "--depth", "1", REPO_URL, "/content/course"], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-r",
                    "/content/course/requirements-colab.txt"], check=True)
if "google.colab" in sys.modules:
    os.chdir("/content/course/notebooks")
sys.path.insert(0, os.path.abspath(".."))  # makes `helpers` importable
from helpers.colab import check_runtime
check_runtime()  # on Colab: one line, ready or "restart the runtime" and why'''


def sync(paths: list[Path] | None = None) -> list[Path]:
    """Rewrite each notebook's Colab badge and setup cell, and the README's badges, from helpers.paths."""
    import nbformat

    changed = []
    for nb_path in paths or notebooks():
        nb = nbformat.read(nb_path, as_version=4)
        before = nbformat.writes(nb)
        nb.metadata.pop("jupytext", None)
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nb.metadata.setdefault("language_info", {"name": "python"})
        nb.metadata["accelerator"] = "GPU"  # Colab opens it on a GPU runtime where one is free
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                cell.source = re.sub(r"\[!\[Open In Colab\]\([^)]*\)\]\([^)]*\)", colab_badge(nb_path.name), cell.source)
            elif SETUP_MARK in cell.source:
                cell.source = setup_cell_source()
        if nbformat.writes(nb) != before:
            nbformat.write(nb, nb_path)
            changed.append(nb_path)
    readme = ROOT / "README.md"
    if readme.exists():
        text = readme.read_text()
        new = re.sub(r"\[!\[Open In Colab\]\([^)]*\)\]\([^)]*notebooks/([^)]+\.ipynb)\)",
                     lambda m: colab_badge(m.group(1)), text)
        if new != text:
            readme.write_text(new)
            changed.append(readme)
    return changed


def to_html(notebook: Path, out_dir: Path) -> Path:
    """The executed notebook as one HTML page (figures inlined), as GitHub or nbviewer would show it."""
    from nbconvert import HTMLExporter
    import nbformat

    body, _ = HTMLExporter().from_notebook_node(nbformat.read(notebook, as_version=4))
    out = Path(out_dir) / f"{notebook.stem}.html"
    out.write_text(body, encoding="utf-8")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the course's notebooks with papermill.")
    parser.add_argument("--only", nargs="*", help="notebook number prefixes, e.g. 00 02")
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "course")
    parser.add_argument("--real", action="store_true", help="run on the real model and data at a small budget")
    parser.add_argument("--inplace", action="store_true", help="save outputs into the committed notebooks")
    parser.add_argument("--sync", action="store_true", help="rewrite badges and setup cells from helpers.paths.REPO")
    parser.add_argument("--html", action="store_true", help="also render each executed notebook to HTML")
    args = parser.parse_args()
    if args.sync:
        for path in sync():
            print(f"updated {path}")
        return
    rows, total = [], 0.0
    for nb in notebooks(args.only):
        print(f"running {nb.name} ...", flush=True)
        parameters = real_model_parameters(nb.name[:2]) if args.real else None
        out_dir = args.out / (f"{nb.stem}_real" if args.real else nb.stem)
        if args.inplace:
            seconds, metrics = execute(nb, nb, live=True), {}
        else:
            metrics, seconds = run_notebook(nb, out_dir, parameters, live=True)
            if args.html:
                print(f"  html: {to_html(out_dir / nb.name, out_dir)}")
        total += seconds
        rows.append((nb.name, seconds, headline(metrics)))
        print(f"  {seconds:6.1f} s  {headline(metrics)}", flush=True)
    print(f"\n{'notebook':34s} {'seconds':>8s}  headline metrics")
    for name, seconds, line in rows:
        print(f"{name:34s} {seconds:8.1f}  {line}")
    print(f"{'total':34s} {total:8.1f}")
    if not args.inplace:
        print(f"executed notebooks and metrics in {args.out}")


if __name__ == "__main__":
    main()
