"""The course command's scheduling: notebooks run two at a time, each kernel with its share of the cores,
notebook 08 alone after them, and a failure named by its notebook."""
import os
from pathlib import Path

import pytest

from helpers.course import RECORDED_ONE_THREAD_FLOPS, default_jobs, estimate, lanes, makespan, notebooks, run_each


def _where(nb: Path) -> tuple[str, str | None, int]:
    """A stand-in for running a notebook: what its kernel would see (threads) and in which process."""
    if nb.name.startswith("99"):
        raise ValueError("broken on purpose")
    return nb.name, os.environ.get("OMP_NUM_THREADS"), os.getpid()


def minutes(line: str) -> int:
    """The minutes of an estimate's line ("estimate: about 24 min ...")."""
    return int(line.split("about ")[1].split(" min")[0])


def fake(*numbers: str) -> list[Path]:
    return [Path(f"{n}_x.ipynb") for n in numbers]


def test_lanes_share_the_cores_and_08_runs_alone_after_them(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    done = list(run_each(fake("02", "05", "08", "09"), _where, jobs=2, budget="no recorded times"))
    assert sorted(nb.name for nb, _ in done) == ["02_x.ipynb", "05_x.ipynb", "08_x.ipynb", "09_x.ipynb"]
    assert done[-1][0].name == "08_x.ipynb" and done[-1][1][2] == os.getpid()   # here, every core
    in_lanes = [result for nb, result in done[:-1]]
    assert {threads for _, threads, _ in in_lanes} == {"1"}                     # a core each
    assert all(pid != os.getpid() for *_, pid in in_lanes)


def test_one_job_runs_them_in_order_here():
    chosen = fake("00", "08", "03")
    done = list(run_each(chosen, _where, jobs=1, budget="no recorded times"))
    assert [nb for nb, _ in done] == chosen and {r[2] for _, r in done} == {os.getpid()}


def test_a_failing_notebook_is_named():
    with pytest.raises(RuntimeError, match="99_x.ipynb failed: broken on purpose"):
        list(run_each(fake("99", "02"), _where, jobs=2, budget="no recorded times"))


def test_lanes_and_their_makespan():
    assert lanes(fake("02"), 2) == 1 and lanes(fake("02", "08"), 2) == 1 and lanes(fake("02", "03"), 2) == 2
    assert makespan([5, 4, 3, 3, 3], 2) == 10 and makespan([5, 4, 3, 3, 3], 1) == 18


def test_the_estimate_counts_the_lanes():
    chosen = notebooks()
    one, two = (estimate(chosen, "tiny", jobs) for jobs in (1, 2))
    assert "2 notebooks at a time" in two and minutes(two) < minutes(one)
    # a budget whose lanes were never measured is estimated as if the lanes gained nothing
    assert minutes(estimate(chosen, "benchmark", 2)) >= minutes(estimate(chosen, "benchmark", 1))


def test_the_estimate_scales_by_this_cpus_speed(monkeypatch):
    from helpers import cost

    chosen = notebooks()
    monkeypatch.setattr(cost, "one_thread_flops", lambda: RECORDED_ONE_THREAD_FLOPS)
    as_recorded = estimate(chosen, "tiny", 2)
    monkeypatch.setattr(cost, "one_thread_flops", lambda: RECORDED_ONE_THREAD_FLOPS / 2)
    half_as_fast = estimate(chosen, "tiny", 2)
    assert abs(minutes(half_as_fast) - 2 * minutes(as_recorded)) <= 1
    assert "times 2.0" in half_as_fast and "times 1.0" in as_recorded


def test_one_threads_speed_is_measured_and_the_threads_restored():
    import torch

    from helpers.cost import one_thread_flops

    threads = torch.get_num_threads()
    assert 1e8 < one_thread_flops() < 1e13   # between a slow phone's core and a GPU's
    assert torch.get_num_threads() == threads


def test_lanes_by_default_only_where_they_were_measured_to_gain(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert default_jobs("tiny") == 2 and default_jobs("benchmark") == 1 and default_jobs("smoke") == 1
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    assert default_jobs("tiny") == 1
