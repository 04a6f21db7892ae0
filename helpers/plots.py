"""Tables and figures the notebooks share. Plain matplotlib and pandas."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd


def table(rows: list[dict] | dict, index: str | None = None) -> pd.DataFrame:
    """A DataFrame from a list of dicts (or a dict of dicts, keys becoming the index), for display."""
    if isinstance(rows, dict):
        return pd.DataFrame.from_dict(rows, orient="index")
    df = pd.DataFrame(rows)
    return df.set_index(index) if index else df


def plot_loss_curves(curves: dict[str, list[tuple[int, float]]], title: str = "", ax=None):
    """curves: name -> [(step, loss)]; one line each."""
    ax = ax or plt.subplots(figsize=(6, 3.5))[1]
    for name, points in curves.items():
        if points:
            steps, losses = zip(*points)
            ax.plot(steps, losses, marker="o" if len(points) < 30 else None, ms=3, label=name)
    ax.set(xlabel="step", ylabel="loss", title=title)
    ax.legend()
    ax.grid(alpha=0.3)
    return ax


def bar(values: dict[str, float], title: str = "", ylabel: str = "", log: bool = False, ax=None):
    ax = ax or plt.subplots(figsize=(6, 3.5))[1]
    ax.bar(list(values), list(values.values()), color="tab:blue")
    ax.set(title=title, ylabel=ylabel)
    if log:
        ax.set_yscale("log")
    ax.tick_params(axis="x", rotation=30)
    ax.grid(alpha=0.3, axis="y")
    return ax


def save_metrics(metrics: dict, path: str | Path) -> Path:
    """Write a notebook's headline numbers as JSON (the tests read this file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics, indent=2, sort_keys=True, default=float))
    return path
