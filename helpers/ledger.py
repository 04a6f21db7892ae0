"""The claims ledger, CLAIMS.md: every claim of `helpers.claims` with its verdict on the committed tiny run
(`results/tiny/`) and on the recorded real-model benchmark (`results/benchmark/`), rendered from their metrics,
never typed.

    python -m helpers.ledger                  # re-render CLAIMS.md from results/
    python -m helpers.ledger --from-outputs tiny   # first copy outputs/*/metrics.json (a fresh tiny run)
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from helpers.claims import CLAIMS, CONTRADICTED, NOT_RUN, SUPPORTED, judged, notebook_claims
from helpers.paths import ROOT
from helpers.verdict import CANT_TELL

RESULTS = ROOT / "results"
LEDGER = ROOT / "CLAIMS.md"
MODELS = {"tiny": "tiny world (tiny-base, 3.3M; budget \"tiny\")",
          "benchmark": "real model (SmolLM2-135M-Instruct; budget \"benchmark\")"}
NOT_RECORDED = {"benchmark": "no real-model benchmark run is recorded yet (`results/benchmark/` is empty); the "
                             "issue \"The real model's lessons\" records it"}


def load_results(results: Path = RESULTS) -> dict[str, dict[str, list[dict]]]:
    """{run ("tiny", "benchmark"): {notebook prefix: its claims}} from results/<run>/<prefix>.json."""
    runs = {}
    for run in MODELS:
        runs[run] = {}
        for path in sorted((results / run).glob("*.json")):
            runs[run][path.stem] = json.loads(path.read_text()).get("claims", [])
    return runs


def render(results: Path = RESULTS) -> str:
    runs = load_results(results)
    lines = ["# Claims ledger", "",
             "Every claim the course teaches, from the fine-tuning articles and from papers, with its verdict on "
             "the tiny world and on the real model. Rendered by `python -m helpers.ledger` from the metrics "
             "of the committed runs in `results/` (never typed): **supported**, **contradicted**, **can't tell** "
             "(the course's rule, `helpers.verdict`: every seed of one arm beats every seed of the other by "
             "more than the measure's resolution, or it can't tell), or **not run** with why. A test renders "
             "it again from those files, and each notebook's tests check that the verdicts of the run CI makes "
             "agree with the committed ones.", ""]
    counts = {run: {} for run in MODELS}
    sections, absent = {}, {run: not any(runs[run].values()) for run in MODELS}
    for c in CLAIMS:
        cells = []
        for run in MODELS:
            got = {x["key"]: x for x in runs[run].get(c.notebook, [])}.get(c.key)
            if got is None:
                got = judged(NOT_RUN, "" if absent[run] else f"no run of this notebook is recorded in results/{run}/",
                             "")
            counts[run][got["verdict"]] = counts[run].get(got["verdict"], 0) + 1
            detail = f"{got['measured']}: {got['values']}" if got["values"] else got["measured"]
            cells.append(f"**{got['verdict']}**: {detail}" if got["verdict"] != NOT_RUN else
                         f"not run{': ' + detail if detail else ' (see above)'}")
        sections.setdefault(c.notebook, []).append(f"| {c.text} | {c.source} | " + " | ".join(cells) + " |")
    order = (SUPPORTED, CONTRADICTED, CANT_TELL, NOT_RUN)
    lines += ["| claims | " + " | ".join(order) + " |", "|---|" + "---|" * len(order)]
    lines += [f"| {MODELS[run]} | " + " | ".join(str(counts[run].get(v, 0)) for v in order) + " |" for run in MODELS]
    lines += [""] + [f"Not run on the {MODELS[run]}: {NOT_RECORDED[run]}." for run in MODELS if absent[run]]
    for prefix, rows in sections.items():
        notebook = next(ROOT.glob(f"notebooks/{prefix}_*.ipynb")).name
        lines += ["", f"## Notebook {prefix}", "", f"[{notebook}](notebooks/{notebook})", "",
                  "| claim | source | " + " | ".join(MODELS.values()) + " |", "|---|---|" + "---|" * len(MODELS)]
        lines += rows
    lines += ["", "Timing claims (a merged model's latency) are measured on the machine of the run; their verdict "
                  "is not compared between runs.", ""]
    return "\n".join(lines)


def disagreements(prefix: str, metrics: dict, run: str = "tiny", results: Path = RESULTS) -> list[str]:
    """The claims whose verdict on this run's metrics differs from the committed run's (timing claims aside)."""
    committed = {c["key"]: c["verdict"] for c in json.loads((results / run / f"{prefix}.json").read_text())["claims"]
                 if not c["timing"]}
    now = {c["key"]: c["verdict"] for c in notebook_claims(prefix, metrics) if not c["timing"]}
    return [f"{k}: committed {committed.get(k)!r}, this run {now.get(k)!r}" for k in sorted(committed | now)
            if committed.get(k) != now.get(k)]


def with_claims(prefix: str, metrics_path: Path, budget: str = "tiny") -> dict:
    """Add the notebook's judged claims to the metrics JSON it wrote (a run at `budget`), in place; return
    the metrics."""
    metrics = json.loads(Path(metrics_path).read_text())
    metrics["claims"] = notebook_claims(prefix, metrics, budget)
    Path(metrics_path).write_text(json.dumps(metrics, indent=1, sort_keys=True, default=str))
    return metrics


def copy_outputs(run: str = "tiny", outputs: Path = ROOT / "outputs", results: Path = RESULTS) -> list[Path]:
    """Each notebook's metrics of the default run (outputs/<notebook>/metrics.json), its claims judged, to
    results/<run>/<prefix>.json."""
    (results / run).mkdir(parents=True, exist_ok=True)
    copied = []
    for path in sorted(outputs.glob("[0-9][0-9]_*/metrics.json")):
        target = results / run / f"{path.parent.name[:2]}.json"
        shutil.copyfile(path, target)
        with_claims(path.parent.name[:2], target, run)
        copied.append(target)
    return copied


def refresh(run: str = "tiny", outputs: Path = ROOT / "outputs") -> list[Path]:
    """After a run that the ledger follows (the committed tiny run, the real-model benchmark): its metrics to
    results/<run>/ (copy_outputs) and CLAIMS.md rendered again. Returns the files copied."""
    copied = copy_outputs(run, outputs)
    LEDGER.write_text(render())
    return copied


def main(argv=None):
    parser = argparse.ArgumentParser(description="Render CLAIMS.md from the committed runs' metrics.")
    parser.add_argument("--from-outputs", choices=list(MODELS), help="first copy outputs/*/metrics.json there")
    args = parser.parse_args(argv)
    if args.from_outputs:
        print(f"copied {len(refresh(args.from_outputs))} metrics files to results/{args.from_outputs}/")
    else:
        LEDGER.write_text(render())
    print(f"wrote {LEDGER.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
