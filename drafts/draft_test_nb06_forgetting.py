"""Notebook 06 (DRAFT, not committed: the first assertion fails with the current tiny world): forgetting."""


def runs(notebook_metrics):
    return {r["name"]: r for r in notebook_metrics("06")["runs"]}


def drop(run):
    return run["fact_probe_before"] - run["fact_probe_after"]


def test_every_run_learns_the_skill(notebook_metrics):
    for run in runs(notebook_metrics).values():
        assert run["skill_accuracy"] > run["skill_before"], run["name"]


def test_full_fine_tuning_forgets_more_facts_than_lora_r4_attention(notebook_metrics):
    r = runs(notebook_metrics)
    assert drop(r["full"]) > drop(r["lora_attn_r4"])


def test_replay_reduces_full_fine_tunings_forgetting(notebook_metrics):
    r = runs(notebook_metrics)
    replay = [v for k, v in r.items() if k.startswith("full_replay_")]
    assert replay and all(drop(v) < drop(r["full"]) for v in replay)
