"""The course's benchmark: how long each notebook and the test suite take, on which machine.

    python -m helpers.bench                       # every notebook (default run) and the test suite
    python -m helpers.bench --only 02 06 --no-tests
    python -m helpers.bench --budget benchmark    # the notebooks on SmolLM2-135M-Instruct at a realistic budget
    python -m helpers.bench --inplace --no-tests  # refresh the committed notebooks' outputs, timed

Both of the last two also copy the run's metrics to results/tiny/ or results/benchmark/ and render the claims
ledger (CLAIMS.md) again (helpers.ledger).

Timings are benchmarks, not tests: they are written to outputs/bench/<label>.json with the machine's
description and printed as a markdown row for BENCHMARKS.md. To see what a CPU without native bf16
sees on any x86 machine, run it with ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

from helpers import ledger
from helpers.course import execute, lanes, notebooks, run_each, run_notebook
from helpers.env import describe_machine
from helpers.paths import ROOT
from helpers.profiling import ENV as PROFILE_ENV


def time_tests() -> dict:
    """The README's test command (pytest on tests/), timed, with its summary line."""
    start = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "tests", "-p", "no:cacheprovider"],
                         cwd=ROOT, capture_output=True, text=True)
    lines = [l for l in run.stdout.splitlines() if l.strip()]
    return {"seconds": round(time.perf_counter() - start, 1), "exit_code": run.returncode,
            "summary": lines[-1] if lines else run.stderr[-500:]}


def markdown_row(result: dict) -> str:
    m = result["machine"]
    flags = ", ".join(m.get("cpu_flags", [])) or "none of avx2/avx512f/avx512_bf16/amx"
    cells = [result["label"], m.get("cpu_model", "?"), flags, str(m.get("cpu_count")), str(m.get("threads")),
             m.get("bf16_matmul_slowdown", "?"), f"{result['course_seconds'] / 60:.1f} min"
             + (f" ({result['wall_seconds'] / 60:.1f} min wall, {result['jobs']} at a time)"
                if result.get("jobs", 1) > 1 else "")]
    if "tests" in result:
        cells.append(f"{result['tests']['seconds'] / 60:.1f} min ({result['tests']['summary']})")
    cells.append(", ".join(f"{k} {v:.0f} s" for k, v in result["notebooks"].items()))
    return "| " + " | ".join(cells) + " |"


def profile_table(profiles: dict) -> str:
    """A markdown table: one row per notebook, one column per category of helpers.profiling, in seconds."""
    columns = ["training steps", "generation", "evaluation passes", "trainer start-up", "model loads",
               "tokenisation", "4-bit path", "subprocesses"]
    lines = ["| notebook | total | " + " | ".join(columns) + " | other |",
             "|---" * (len(columns) + 3) + "|"]
    for nb, p in profiles.items():
        cells = [f"{p['seconds'].get(c, 0):.0f}" for c in columns]
        lines.append(f"| {nb} | {p['total']:.0f} | " + " | ".join(cells) + f" | {p['other']:.0f} |")
    return "\n".join(lines)


def bench_one(nb: Path, inplace: bool, budget: str, out: Path) -> tuple[float, dict]:
    """Run one notebook for the benchmark; returns (seconds, its metrics)."""
    print(f"running {nb.name} ...", flush=True)
    if inplace and budget == "tiny":  # the default parameters write ../outputs/<stem>/metrics.json
        seconds = execute(nb, nb)
        return seconds, json.loads((ROOT / "outputs" / nb.stem / "metrics.json").read_text())
    metrics, seconds = run_notebook(nb, out / nb.stem, {"budget": budget})
    return seconds, metrics


def main() -> None:
    parser = argparse.ArgumentParser(description="Time the course's notebooks and tests on this machine.")
    parser.add_argument("--only", nargs="*", help="notebook number prefixes, e.g. 00 02")
    parser.add_argument("--no-tests", action="store_true", help="skip timing the test suite")
    parser.add_argument("--budget", default="tiny",
                        help="a named budget of helpers.recipes (benchmark: the real model at a realistic budget)")
    parser.add_argument("--inplace", action="store_true",
                        help="execute the committed notebooks in place (default run): refresh them and time it")
    parser.add_argument("--profile", action="store_true",
                        help="also record where each notebook's time goes (helpers.profiling), in the JSON and a table")
    parser.add_argument("--label", default=None, help="name of this row (default: cpu capability and mode)")
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "bench")
    parser.add_argument("--jobs", type=int, default=1,
                        help="notebooks run at once, each with an equal share of the cores (the course "
                             "command's default is 2 on a CPU; 1 here: each notebook's time with every core)")
    args = parser.parse_args()
    machine = describe_machine(measure_bf16=True)
    label = args.label or f"{machine['device']}-{machine.get('cpu_capability', '')}-{args.budget}"
    result = {"label": label, "machine": machine, "env": {k: os.environ[k] for k in
                                                          ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA") if k in os.environ},
              "notebooks": {}, "metrics": {}}
    chosen = notebooks(args.only)
    jobs = lanes(chosen, args.jobs)
    result["jobs"] = jobs

    def profile_path(nb):
        return (args.out / label / f"{nb.stem}.profile.json").resolve()

    def env_for(nb):
        return {PROFILE_ENV: str(profile_path(nb))} if args.profile else {}

    if args.profile:
        (args.out / label).mkdir(parents=True, exist_ok=True)
    task = partial(bench_one, inplace=args.inplace, budget=args.budget, out=args.out / label)
    start = time.perf_counter()
    for nb, (seconds, metrics) in run_each(chosen, task, jobs, args.budget, env_for):
        result["notebooks"][nb.name[:2]] = round(seconds, 1)
        result["metrics"][nb.name[:2]] = metrics
        print(f"  {nb.name} {seconds:6.1f} s", flush=True)
        if args.profile:
            profile = json.loads(profile_path(nb).read_text())
            profile["kernel start and cells outside the profile"] = round(seconds - profile["total"], 1)
            result.setdefault("profile", {})[nb.name[:2]] = profile
            print("   ", ", ".join(f"{k} {v:.0f} s" for k, v in profile["seconds"].items()),
                  f"other {profile['other']:.0f} s", flush=True)
    result["notebooks"] = dict(sorted(result["notebooks"].items()))
    result["wall_seconds"] = round(time.perf_counter() - start, 1)
    result["course_seconds"] = round(sum(result["notebooks"].values()), 1)
    # the committed tiny run and the recorded real-model benchmark: their metrics and the claims ledger follow
    if args.inplace and args.budget == "tiny" or args.budget == "benchmark":
        run = args.budget
        ledger.refresh(run, outputs=ROOT / "outputs" if run == "tiny" else args.out / label)
        print(f"results/{run}/ and CLAIMS.md refreshed", flush=True)
    if not args.no_tests and args.budget == "tiny":
        print("running the test suite ...", flush=True)
        result["tests"] = time_tests()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{label}.json"
    path.write_text(json.dumps(result, indent=1, default=str))
    print(f"\nwritten {path}\n")
    print(markdown_row(result))
    if args.profile:
        print("\n" + profile_table(result["profile"]))


if __name__ == "__main__":
    main()
