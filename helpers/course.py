"""The main job: run every notebook in order with papermill and print their headline numbers.

    python -m helpers.course                  # every notebook, executed copies in outputs/course
    python -m helpers.course --only 00 02     # some of them
    python -m helpers.course --inplace        # refresh the committed notebooks' outputs
    python -m helpers.course --sync           # rewrite badges and setup cells from helpers.paths.REPO
"""
from __future__ import annotations

import argparse
import json
import os
import re
import time
from pathlib import Path

from helpers.paths import NOTEBOOKS_DIR, REPO_URL, ROOT, colab_badge

OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "TOKENIZERS_PARALLELISM": "false", "MPLBACKEND": "Agg"}


def notebooks(only: list[str] | None = None) -> list[Path]:
    found = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
    if only:
        found = [nb for nb in found if any(nb.name.startswith(o) for o in only)]
    return found


def run_notebook(notebook: Path, out_dir: Path, parameters: dict | None = None,
                 output_notebook: Path | None = None) -> tuple[dict, float]:
    """Execute one notebook with papermill in out_dir; returns (its metrics JSON, seconds).

    The notebook writes its metrics to out_dir/metrics.json and anything else under out_dir.
    """
    import papermill as pm

    os.environ.update(OFFLINE_ENV)
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics_path = out_dir / "metrics.json"
    params = {"output_dir": str(out_dir), "metrics_path": str(metrics_path), **(parameters or {})}
    start = time.perf_counter()
    pm.execute_notebook(str(notebook), str(output_notebook or out_dir / notebook.name), parameters=params,
                        cwd=str(NOTEBOOKS_DIR), kernel_name="python3", progress_bar=False)
    seconds = time.perf_counter() - start
    return json.loads(metrics_path.read_text()), seconds


def run_inplace(notebook: Path) -> float:
    """Execute a notebook with its default parameters and save the outputs into the committed file."""
    import papermill as pm

    os.environ.update(OFFLINE_ENV)
    start = time.perf_counter()
    pm.execute_notebook(str(notebook), str(notebook), cwd=str(NOTEBOOKS_DIR), kernel_name="python3",
                        progress_bar=False)
    return time.perf_counter() - start


def headline(metrics: dict) -> str:
    """The scalar metrics of a notebook, short, for the summary table."""
    items = [f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()
             if isinstance(v, (int, float, bool))]
    return ", ".join(items[:6])


SETUP_MARK = "# written by `python -m helpers.course --sync`"


def setup_cell_source() -> str:
    return f'''# Setup. On Colab: fetch the course and install its pinned requirements. Locally: nothing to do.
import os, subprocess, sys
if "google.colab" in sys.modules and not os.path.exists("/content/course"):
    REPO_URL = "{REPO_URL}"  {SETUP_MARK}
    subprocess.run(["git", "clone", "--depth", "1", REPO_URL, "/content/course"], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-r", "/content/course/requirements.txt"], check=True)
if "google.colab" in sys.modules:
    os.chdir("/content/course/notebooks")
sys.path.insert(0, os.path.abspath(".."))  # makes `helpers` importable'''


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


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the course's notebooks with papermill.")
    parser.add_argument("--only", nargs="*", help="notebook number prefixes, e.g. 00 02")
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "course")
    parser.add_argument("--inplace", action="store_true", help="save outputs into the committed notebooks")
    parser.add_argument("--sync", action="store_true", help="rewrite badges and setup cells from helpers.paths.REPO")
    args = parser.parse_args()
    if args.sync:
        for path in sync():
            print(f"updated {path}")
        return
    rows, total = [], 0.0
    for nb in notebooks(args.only):
        print(f"running {nb.name} ...", flush=True)
        if args.inplace:
            seconds = run_inplace(nb)
            metrics = {}
        else:
            metrics, seconds = run_notebook(nb, args.out / nb.stem)
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
