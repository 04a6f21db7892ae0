"""Notebook 06: learning (the skill) against forgetting (fact probes) for full fine-tuning, LoRA and remedies."""
import pytest


def runs(notebook_metrics):
    return {r["name"]: r for r in notebook_metrics("06")["runs"]}


def drop(run):
    return run["fact_probe_before"] - run["fact_probe_after"]


def test_every_run_learns_the_skill(notebook_metrics):
    for run in runs(notebook_metrics).values():
        assert run["skill_accuracy"] > run["skill_before"], run["name"]


@pytest.mark.xfail(strict=True, reason="measured on the tiny model: LoRA r=4 attention drops 0.173 of fact probes, "
                   "full fine-tuning 0.116 (0.053 at matched skill); LoRA needs a ~10x larger learning rate to learn "
                   "the skill, and must move attention ~3x as far as full FT does (33-44% vs 10-13% relative change); "
                   "the forgetting sits in attention v/o in both runs (notebook 06, section 6). The assertion "
                   "is kept as the issue states it. Strict: when it passes, this marker must go.")
def test_full_fine_tuning_forgets_more_facts_than_lora_r4_attention(notebook_metrics):
    r = runs(notebook_metrics)
    assert drop(r["full"]) > drop(r["lora_attn_r4"])


def test_replay_reduces_full_fine_tunings_forgetting(notebook_metrics):
    r = runs(notebook_metrics)
    replay = [v for k, v in r.items() if k.startswith("full_replay_")]
    assert len(replay) >= 2 and all(drop(v) < drop(r["full"]) for v in replay)


def test_l2_pull_reduces_forgetting(notebook_metrics):
    r = runs(notebook_metrics)
    assert drop(r["full_l2"]) < drop(r["full"])


def test_alignment_tax_measured_for_sft_and_dpo(notebook_metrics):
    tax = notebook_metrics("06")["alignment_tax"]
    assert tax["sft"]["chat_exact_match_after"] > tax["sft"]["chat_exact_match_before"]
    for stage in ("sft", "dpo"):
        assert 0 <= tax[stage]["fact_probe_after"] <= 1 and tax[stage]["perplexity_after"] > 0


def test_forgetting_tracked_over_steps(notebook_metrics):
    curves = notebook_metrics("06")["forgetting_vs_steps"]
    assert set(curves) == {"full", "lora_attn_r4"} and all(len(c) >= 3 for c in curves.values())


def test_forgetting_is_located_by_putting_parts_back(notebook_metrics):
    why = {(r["run"], r["part"]): r for r in notebook_metrics("06")["why_put_back"]}
    after = {n: runs(notebook_metrics)[n]["fact_probe_after"] for n in ("full", "lora_attn_r4")}
    for run in after:                       # attention v, o holds the forgetting: putting it back restores facts
        assert why[(run, "attention v, o")]["fact probe with it put back"] > after[run] + 0.05
    assert why[("lora_attn_r4", "MLP")]["relative change"] == 0.0          # LoRA on attention leaves the MLP as is
    for part in ("attention q, k", "attention v, o"):                       # and moves attention further than full FT
        assert why[("lora_attn_r4", part)]["relative change"] > why[("full", part)]["relative change"]
