"""Tables and figures the notebooks share. Plain matplotlib and pandas.

Importing this module sets the course's figure style: readable at Colab's width, light grid, no top and
right spines, layouts that keep labels from overlapping.
"""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

plt.rcParams.update({"figure.dpi": 100, "figure.constrained_layout.use": True, "axes.grid": True,
                     "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False,
                     "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 9, "font.size": 10})


def table(rows: list[dict] | dict, index: str | None = None) -> pd.DataFrame:
    """A DataFrame from a list of dicts (or a dict of dicts, keys becoming the index), for display."""
    if isinstance(rows, dict):
        return pd.DataFrame.from_dict(rows, orient="index")
    df = pd.DataFrame(rows)
    return df.set_index(index) if index else df


def plot_loss_curves(curves: dict[str, list[tuple[int, float]]], title: str = "", ax=None,
                     ylabel: str = "loss (nats per token)"):
    """curves: name -> [(step, loss)]; one line each."""
    ax = ax or plt.subplots(figsize=(6, 3.5))[1]
    for name, points in curves.items():
        if points:
            steps, losses = zip(*points)
            ax.plot(steps, losses, marker="o" if len(points) < 30 else None, ms=3, label=name)
    ax.set(xlabel="optimizer step", ylabel=ylabel, title=title)
    legend_or_no_steps(ax)
    return ax


def legend_or_no_steps(ax, **legend_args):
    """A training curve's legend; where nothing was drawn (runs shorter than their logging interval log no
    step), a line that says so instead of an empty legend and its warning."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**legend_args)
    else:
        ax.text(0.5, 0.5, "no step logged: the runs are shorter than their logging interval",
                ha="center", va="center", transform=ax.transAxes, fontsize=9, wrap=True)


def bar(values: dict[str, float], title: str = "", ylabel: str = "", log: bool = False, ax=None,
        rotation: int = 0, fmt: str = "{:.3g}", wrap: int = 16):
    """One bar per entry, each labelled with its value; names longer than `wrap` characters are wrapped."""
    ax = ax or plt.subplots(figsize=(6, 3.5))[1]
    labels = [textwrap.fill(k, wrap) for k in values]  # long names on two lines, not over their neighbours
    bars = ax.bar(labels, list(values.values()), color="tab:blue")
    ax.bar_label(bars, labels=[fmt.format(v) for v in values.values()], fontsize=8, padding=2)
    ax.set(title=title, ylabel=ylabel)
    if log:
        ax.set_yscale("log")
    ax.margins(y=0.15)
    ax.tick_params(axis="x", rotation=rotation)
    ax.grid(axis="x", visible=False)
    return ax


def save_metrics(metrics: dict, path: str | Path) -> Path:
    """Write a notebook's headline numbers as JSON (the tests read this file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics, indent=2, sort_keys=True, default=float))
    return path


def show_source(obj) -> None:
    """Display a function's source as a code block: a formula in view, while it is defined once in helpers."""
    import inspect

    from IPython.display import Markdown, display

    display(Markdown(f"```python\n{inspect.getsource(obj)}```"))
