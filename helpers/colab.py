"""Colab without a broken runtime: install only what Colab lacks, then say in one line whether to restart.

Colab's image comes with torch, numpy, pandas, matplotlib and ipywidgets already installed, and numpy and
matplotlib already imported by the time a notebook's first cell runs. Reinstalling them (as a full
`pip install -r requirements.txt` would) leaves the kernel running the old versions until a restart, and
pandas is pinned by the `google-colab` package itself. So the setup cell installs requirements-colab.txt:
the course's own libraries (transformers, trl, peft, ...) pinned, and nothing Colab already provides.
tests/test_colab.py checks those pins against a recorded Colab package list.
"""
from __future__ import annotations

import importlib.metadata
import re
import sys
from pathlib import Path

from helpers.env import in_colab
from helpers.paths import ROOT

COLAB_REQUIREMENTS = ROOT / "requirements-colab.txt"
# Packages Colab provides and may have imported before the first cell: the course never reinstalls them.
PREIMPORTED = ("numpy", "matplotlib", "pandas", "torch", "ipywidgets", "PIL")
# Modules whose loaded version is compared with the installed one: a difference means "restart".
STALE_CHECKED = (*PREIMPORTED, "pyarrow")


def pins(path: Path = COLAB_REQUIREMENTS) -> dict[str, str]:
    """{package: version} of a requirements file's `name==version` lines."""
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
        if match:
            out[match.group(1).lower()] = match.group(2)
        elif line:
            raise ValueError(f"{path.name}: '{line}' is not a name==version pin")
    return out


def stale_modules() -> dict[str, tuple[str, str]]:
    """Imported modules whose installed version differs from the one running: {name: (running, installed)}."""
    out = {}
    for name in STALE_CHECKED:
        module = sys.modules.get(name)
        running = getattr(module, "__version__", None) if module else None
        if running is None:
            continue
        try:
            installed = importlib.metadata.version("pillow" if name == "PIL" else name)
        except importlib.metadata.PackageNotFoundError:
            continue
        if installed != running:
            out[name] = (running, installed)
    return out


def runtime_report() -> str:
    """One line: ready, or what to do. Checks the pins of requirements-colab.txt and stale imported modules."""
    wrong = {}
    for name, version in pins().items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            installed = "missing"
        if installed != version:
            wrong[name] = (installed, version)
    stale = stale_modules()
    if stale:
        detail = ", ".join(f"{n} {r} is loaded but {i} is installed" for n, (r, i) in stale.items())
        return f"Restart the runtime (Runtime > Restart session), then run this cell again: {detail}."
    if wrong:
        detail = ", ".join(f"{n} {i} (want {v})" for n, (i, v) in wrong.items())
        return f"The install did not finish: {detail}. Run this cell again; if it persists, Runtime > Restart session."
    return "Colab runtime ready: the course's libraries are installed at their pinned versions; no restart needed."


def check_runtime() -> None:
    """Print the runtime report on Colab; locally, where requirements.txt is installed, do nothing."""
    if in_colab():
        print(runtime_report())
