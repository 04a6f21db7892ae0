"""The main job: run every notebook in order with papermill and print their headline numbers.

    python -m helpers.course                  # every notebook, executed copies in outputs/course
    python -m helpers.course --only 00 02     # some of them
    python -m helpers.course --budget smoke   # a named budget (helpers.recipes): smoke, benchmark, colab_t4
    python -m helpers.course --only 02 -p max_steps 5 -y "sweep_ranks: [1, 4]"   # any parameter
    python -m helpers.course --inplace        # refresh the committed notebooks' outputs
    python -m helpers.course --sync           # rewrite badges and setup cells from helpers.paths.REPO
    python -m helpers.course --html           # render the executed copies to HTML, to read as a learner does
"""
from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import re
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from functools import partial
from pathlib import Path

from helpers import ledger
from helpers.env import BATCH_ENV, OFFLINE_ENV
from helpers.paths import NOTEBOOKS_DIR, REPO_URL, ROOT, colab_badge
from helpers.recipes import check_parameters

# The kernel's environment: offline, quiet progress bars, and matplotlib's inline backend (no MPLBACKEND),
# so that every figure is stored in the executed notebook.
KERNEL_ENV = {**OFFLINE_ENV, BATCH_ENV: "1"}


# Measured: an AVX2-only 2-core CPU (Zen 3, cpu family 25) ran the tiny course 1.6x slower than an AVX-512 Zen 4
# (family 25; 1.1x to 2.8x by notebook), and 2.4x slower than a Zen 5 (family 26): BENCHMARKS.md. The estimate
# of the real-model benchmark budget, recorded on AVX-512 machines, uses it; the tiny world's measures the CPU.
AVX2_ONLY_SLOWDOWN = 1.6
# The committed tiny notebooks (whose papermill durations the estimate starts from) ran on BENCHMARKS.md's Xeon
# (2026-12-03, b213549), where one thread multiplies the tiny model's matrices (`helpers.cost.one_thread_flops`)
# at about 165 GFLOP/s (159-173 measured). Another CPU's estimate is the recorded time times the ratio of the two
# speeds. Checked on a Zen 4 (2026-12-03): its thread runs that product at 105 GFLOP/s, a ratio of 1.57, and it ran
# the course two at a time in 23.6 min against the Xeon's 15.6 (1.51x).
RECORDED_ON = "the AVX-512 Xeon of BENCHMARKS.md"
RECORDED_ONE_THREAD_FLOPS = 165e9
# The real-model benchmark budget, seconds per notebook at today's budgets on AVX-512 2-core machines
# (BENCHMARKS.md): 01, 02, 05, 06, 07, 09 measured on a Zen 4; 03 and 04 on a Xeon about 0.6x the Zen 4's
# time; 00 and 08 (which train with no recipe's rate) on a Zen 5 (2026-11-24).
RECORDED_SECONDS = {"benchmark": {"00": 23, "01": 205, "02": 278, "03": 767, "04": 624, "05": 1547, "06": 1361,
                                  "07": 1241, "08": 273, "09": 1970}}


def recorded_seconds(notebook: Path, budget: str) -> float | None:
    """Seconds a notebook took on the AVX-512 2-core machine: for "tiny", its committed run (papermill stores the
    duration in the notebook); for "benchmark", BENCHMARKS.md's row; None when nothing was recorded."""
    if budget == "tiny":
        import nbformat

        return nbformat.read(notebook, as_version=4).metadata.get("papermill", {}).get("duration")
    return RECORDED_SECONDS.get(budget, {}).get(notebook.name[:2])


def estimate(chosen: list[Path], budget: str, jobs: int = 1) -> str:
    """One line: how long the chosen notebooks should take on this CPU, from the recorded times (each alone,
    with every core), run `jobs` at a time as `run_each` runs them. On the tiny world the recorded times are
    scaled by this CPU's speed (`helpers.cost.one_thread_flops`) against the machine that recorded them."""
    from helpers import cost
    from helpers.env import cpu_model_and_flags

    known = [recorded_seconds(nb, budget) for nb in chosen]
    if any(s is None for s in known):
        return f"no recorded time for every notebook at budget {budget!r}: no estimate"
    jobs = lanes(chosen, jobs)
    shared, alone = split(chosen, jobs)
    seconds = dict(zip(chosen, known))
    in_lanes = makespan([seconds[nb] * LANE_SLOWDOWN.get(budget, jobs) for nb in shared], jobs)
    minutes = (in_lanes + sum(seconds[nb] for nb in alone)) / 60
    how = f", {jobs} notebooks at a time" if jobs > 1 else ""
    if budget == "tiny":
        here = cost.one_thread_flops()
        factor = RECORDED_ONE_THREAD_FLOPS / here
        return (f"estimate: about {minutes * factor:.0f} min on this CPU{how}: {minutes:.0f} min recorded on "
                f"{RECORDED_ON} times {factor:.1f}, the ratio of their speeds (one thread multiplies the tiny "
                f"model's matrices at {here / 1e9:.0f} GFLOP/s here, {RECORDED_ONE_THREAD_FLOPS / 1e9:.0f} there)")
    if "avx512f" in cpu_model_and_flags()[1]:
        return (f"estimate: about {minutes:.0f} min on a 2-core AVX-512 CPU like this one (recorded{how}); about "
                f"{minutes * AVX2_ONLY_SLOWDOWN:.0f} min on an AVX2-only one (the tiny course's measured "
                f"{AVX2_ONLY_SLOWDOWN}x)")
    return (f"estimate: about {minutes * AVX2_ONLY_SLOWDOWN:.0f} min on a 2-core CPU without AVX-512 like this "
            f"one ({minutes:.0f} min recorded on an AVX-512 one{how}, times {AVX2_ONLY_SLOWDOWN})")


# Notebook 08 times one process against two and measures memory: it runs alone, after the others, with every core.
RUNS_ALONE = {"08"}
# A notebook in a lane (one thread, beside another notebook) against alone with two threads, by budget:
# measured on the Xeon (2026-12-02, seventh session; BENCHMARKS.md), the tiny course's notebooks took 1.43x to
# 1.69x as long in a lane (1.57x in all), so two lanes finish the course 1.2x sooner (13.7 min against 16.8).
# Not measured for a budget: taken as slow as the cores are shared (no gain from lanes).
LANE_SLOWDOWN = {"tiny": 1.6}


def default_jobs(budget: str = "tiny") -> int:
    """Notebooks run at once by default: on a CPU of 2 cores or more, 2 for a budget whose lanes were measured
    to gain (LANE_SLOWDOWN: the tiny world's products are too small to spread over two cores, so two notebooks
    of one thread each finish sooner than one notebook at a time with two threads); otherwise 1 (a GPU would
    be shared by the kernels; the real model's products do use both cores)."""
    import torch

    if budget not in LANE_SLOWDOWN or torch.cuda.is_available():
        return 1
    return max(1, min(2, os.cpu_count() or 1))


def split(chosen: list[Path], jobs: int) -> tuple[list[Path], list[Path]]:
    """(in lanes, alone): the notebooks `run_each` runs `jobs` at a time, and those it runs one at a time with
    every core after them (RUNS_ALONE; every notebook when jobs is 1)."""
    alone = [nb for nb in chosen if jobs == 1 or nb.name[:2] in RUNS_ALONE]
    return [nb for nb in chosen if nb not in alone], alone


def lane_threads(jobs: int) -> int:
    """Threads for each notebook's kernel when `jobs` run at once: an equal share of the cores."""
    return max(1, (os.cpu_count() or 1) // jobs)


def lanes(chosen: list[Path], jobs: int) -> int:
    """How many notebooks `run_each` runs at once: `jobs`, no more than it has notebooks to share the cores
    (one left alone gets every core)."""
    return max(1, min(jobs, len(split(chosen, jobs)[0])))


def makespan(seconds: list[float], jobs: int) -> float:
    """Seconds until the last of these jobs ends, started longest first on `jobs` lanes (as `run_each` does)."""
    lanes = [0.0] * max(1, jobs)
    for s in sorted(seconds, reverse=True):
        lanes[lanes.index(min(lanes))] += s
    return max(lanes)


def _in_lane(threads: int, env: dict, task, notebook: Path):
    """task(notebook) in a worker process whose kernels get `threads` threads each."""
    os.environ.update({"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), **env})
    try:
        return task(notebook)
    except Exception as e:   # papermill's error does not unpickle in the parent; its message does
        raise RuntimeError(f"{notebook.name} failed: {e}") from None


def run_each(chosen: list[Path], task, jobs: int = 1, budget: str = "tiny", env_for=None):
    """Yield (notebook, task(notebook)) for each chosen notebook, as each ends.

    jobs 1: one after the other, here. jobs > 1: that many at once, each in a worker process whose kernel gets
    an equal share of the cores, the longest recorded first (so the lanes end together); RUNS_ALONE after
    them, one at a time with every core. env_for(notebook): extra environment for its kernel (a profile path).
    """
    env_for = env_for or (lambda nb: {})
    jobs = lanes(chosen, jobs)
    shared, alone = split(chosen, jobs)
    shared.sort(key=lambda nb: -(recorded_seconds(nb, budget) or 0))   # the longest first
    if shared:
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            running = {pool.submit(_in_lane, lane_threads(jobs), env_for(nb), task, nb): nb for nb in shared}
            for done in as_completed(running):
                yield running[done], done.result()
    for nb in alone:
        saved = dict(os.environ)
        os.environ.update(env_for(nb))
        try:
            yield nb, task(nb)
        finally:
            os.environ.clear()
            os.environ.update(saved)


def command_line_parameters(pairs: list[list[str]], yamls: list[str]) -> dict:
    """-p NAME VALUE pairs (values read as papermill reads them) and -y YAML strings, as one dict."""
    import yaml
    from papermill.cli import _resolve_type

    out = {name: _resolve_type(value) for name, value in pairs}
    for text in yamls:
        loaded = yaml.safe_load(text)
        if not isinstance(loaded, dict):
            raise SystemExit(f"-y takes YAML of name: value pairs, e.g. -y 'sweep_ranks: [1, 4]'; got {text!r}")
        out.update(loaded)
    return out


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
    check_parameters(notebook, parameters or {})   # an unknown or mistyped parameter: refused before it runs
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics_path = out_dir / "metrics.json"
    params = {"output_dir": str(out_dir), "metrics_path": str(metrics_path), **(parameters or {})}
    seconds = execute(notebook, output_notebook or out_dir / notebook.name, params, live)
    return ledger.with_claims(notebook.name[:2], metrics_path, params.get("budget", "tiny")), seconds


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
from helpers.env import quiet_known_warnings
check_runtime()  # on Colab: one line, ready or "restart the runtime" and why
quiet_known_warnings()  # harmless library messages silenced at their source: helpers.env says which'''


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


def execute_in_place(nb: Path, live: bool = False) -> tuple[float, dict]:
    """Refresh a committed notebook's outputs; returns (seconds, {})."""
    print(f"running {nb.name} ...", flush=True)
    return execute(nb, nb, live=live), {}


def run_into(nb: Path, out: Path, parameters: dict, html: bool = False, live: bool = False) -> tuple[float, dict]:
    """Run a notebook into out/<its stem>[_<budget>]; returns (seconds, its metrics)."""
    print(f"running {nb.name} ...", flush=True)
    budget = parameters.get("budget", "tiny")
    out_dir = out / (nb.stem if budget == "tiny" else f"{nb.stem}_{budget}")
    metrics, seconds = run_notebook(nb, out_dir, parameters, live=live)
    if html:
        print(f"  html: {to_html(out_dir / nb.name, out_dir)}", flush=True)
    return seconds, metrics


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the course's notebooks with papermill.")
    parser.add_argument("--only", nargs="*", help="notebook number prefixes, e.g. 00 02")
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "course")
    parser.add_argument("--budget", default="tiny",
                        help="a named budget of helpers.recipes: tiny (default), smoke, benchmark, colab_t4")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="set one parameter (as papermill's -p: numbers, True/False, None, else a string)")
    parser.add_argument("-y", "--yaml", action="append", default=[],
                        help="parameters as YAML, for lists and dicts: -y 'sweep_ranks: [1, 4]'")
    parser.add_argument("--inplace", action="store_true", help="save outputs into the committed notebooks")
    parser.add_argument("--sync", action="store_true", help="rewrite badges and setup cells from helpers.paths.REPO")
    parser.add_argument("--html", action="store_true", help="also render each executed notebook to HTML")
    parser.add_argument("--jobs", type=int, default=None,
                        help="notebooks run at once, each with its share of the cores (default: 2 for the tiny "
                             "budget on a CPU of 2 cores or more, else 1)")
    args = parser.parse_args()
    if args.sync:
        for path in sync():
            print(f"updated {path}")
        return
    given = command_line_parameters(args.parameter, args.yaml)
    if given and args.inplace:
        parser.error("--inplace refreshes the committed default run; it takes no -p/-y")
    rows, total = [], 0.0
    chosen = notebooks(args.only)
    for nb in chosen:   # refused before anything runs
        try:
            check_parameters(nb, {"budget": args.budget, **given})
        except (KeyError, TypeError) as e:
            parser.error(e.args[0])
    jobs = lanes(chosen, args.jobs or default_jobs(args.budget))
    print(estimate(chosen, args.budget, jobs) + (" (before the -p/-y changes)" if given else ""), flush=True)
    parameters = {"budget": args.budget, **given}
    if args.inplace:
        task = partial(execute_in_place, live=jobs == 1)
    else:
        task = partial(run_into, out=args.out, parameters=parameters, html=args.html, live=jobs == 1)
    if jobs > 1:
        print(f"{jobs} notebooks at a time, {lane_threads(jobs)} thread(s) each"
              + "".join(f"; {nb.name} alone after them" for nb in chosen if nb.name[:2] in RUNS_ALONE),
              flush=True)
    start = time.perf_counter()
    for nb, (seconds, metrics) in run_each(chosen, task, jobs, args.budget):
        total += seconds
        rows.append((nb.name, seconds, headline(metrics)))
        print(f"  {nb.name} {seconds:6.1f} s  {headline(metrics)}", flush=True)
    print(f"\n{'notebook':34s} {'seconds':>8s}  headline metrics")
    for name, seconds, line in sorted(rows):
        print(f"{name:34s} {seconds:8.1f}  {line}")
    print(f"{'total':34s} {total:8.1f}")
    print(f"{'wall clock':34s} {time.perf_counter() - start:8.1f}")
    if not args.inplace:
        print(f"executed notebooks and metrics in {args.out}")
    elif args.budget == "tiny":   # the committed run: its metrics and the claims ledger follow it
        copied = ledger.refresh("tiny")
        print(f"{len(copied)} metrics files in results/tiny/; CLAIMS.md re-rendered")


if __name__ == "__main__":
    main()
