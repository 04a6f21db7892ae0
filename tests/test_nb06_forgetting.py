"""Notebook 06: learning (the skill) against forgetting (fact probes): full fine-tuning and LoRA at matched
learning over seeds, forgetting that follows how far the weights moved, replay that works on probes it never
showed, the L2 pull; the tiny model and the real one."""
import pytest


def runs(metrics):
    return {(r["name"], r["seed"]): r for r in metrics["runs"]}


@pytest.fixture(params=["tiny", "real"])
def metrics(request, notebook_metrics, real_notebook_metrics):
    return notebook_metrics("06") if request.param == "tiny" else real_notebook_metrics("06")


def test_every_run_measured_with_both_rulers(metrics):
    for r in metrics["runs"]:
        assert 0 <= r["skill_accuracy"] <= 1 and 0 <= r["fact_probe_after"] <= 1, r["name"]
    b = metrics["biderman"]
    assert {"full", "lora_attn_r4"} <= set(b) and b["lora_learns"] in ("less", "the same", "more")
    assert b["lora_forgets"] in ("less than", "as much as", "more than")


def test_every_tiny_run_learns_the_skill(notebook_metrics):
    for r in notebook_metrics("06")["runs"]:
        assert r["skill_accuracy"] > r["skill_before"], r["name"]


def test_biderman_over_three_seeds_as_measured(notebook_metrics):
    """The tiny model does not reproduce "LoRA learns less and forgets less": at matched learning LoRA r=4 on
    attention forgets more than full fine-tuning, for every seed (section 2 of the notebook)."""
    m = notebook_metrics("06")
    b = m["biderman"]
    assert m["seeds"] == [0, 1, 2] and b["reproduced"] is False and b["lora_forgets"] == "more than"
    assert b["lora_attn_r4"]["fact drop"]["min"] > b["full"]["fact drop"]["max"]
    assert abs(b["lora_attn_r4"]["skill"]["mean"] - b["full"]["skill"]["mean"]) < 0.15   # matched learning


def test_lora_forgetting_follows_how_far_attention_moved(notebook_metrics):
    moved = sorted(notebook_metrics("06")["rank_and_movement"], key=lambda m: m["attention relative change"])
    drops = [m["fact drop"] for m in moved]
    assert drops == sorted(drops) and len(moved) >= 3


def test_replay_reduces_forgetting_on_probes_it_never_showed(notebook_metrics):
    m = notebook_metrics("06")
    full_drop = m["biderman"]["full"]["fact drop"]["mean"]
    assert len(m["replay"]) >= 2
    for ratio, v in m["replay"].items():
        assert v["probes never replayed"] > 50, ratio
        assert v["fact_drop_unreplayed"] < full_drop, ratio


def test_l2_pull_reduces_forgetting(notebook_metrics):
    m = notebook_metrics("06")
    assert runs(m)[("full_l2", 0)]["fact_drop"] < m["biderman"]["full"]["fact drop"]["mean"]


def test_the_forgetting_sits_where_the_update_went(notebook_metrics):
    m = notebook_metrics("06")
    why = {(r["run"], r["part"]): r for r in m["why_put_back"]}
    after = runs(m)[("lora_attn_r4", 0)]["fact_probe_after"]
    assert why[("lora_attn_r4", "attention v, o")]["fact probe with it put back"] > after + 0.05
    assert why[("lora_attn_r4", "MLP")]["relative change"] == 0.0
    for part in ("attention q, k", "attention v, o"):
        assert why[("lora_attn_r4", part)]["relative change"] > why[("full", part)]["relative change"]


def test_alignment_tax_and_forgetting_over_steps(notebook_metrics):
    m = notebook_metrics("06")
    assert set(m["forgetting_vs_steps"]) == {"full", "lora_attn_r4"}
    assert all(len(c) >= 3 for c in m["forgetting_vs_steps"].values())
    for stage in m["alignment_tax"].values():
        assert stage["fact drop"] <= 0.05
