"""Notebook 06: learning (the skill) against forgetting (fact probes): full fine-tuning and LoRA at matched
learning over seeds, forgetting that follows how far the weights moved, replay that works on probes it never
showed, the L2 pull; the tiny model and the real one."""
import pytest

from helpers import ledger

VERDICTS = ("LoRA ahead of full", "full ahead of LoRA", "can't tell")


def runs(metrics):
    return {(r["name"], r["seed"]): r for r in metrics["runs"]}


@pytest.fixture(params=["tiny", "real"])
def metrics(request, notebook_metrics, real_notebook_metrics):
    return notebook_metrics("06") if request.param == "tiny" else real_notebook_metrics("06")


def test_every_run_measured_with_both_rulers(metrics):
    for r in metrics["runs"]:
        assert 0 <= r["skill_accuracy"] <= 1 and 0 <= r["fact_probe_after"] <= 1, r["name"]
    b, lora = metrics["biderman"], metrics["lora_run"]
    assert lora == f"lora_attn_r{metrics['recipe']['lora_r']}" and {"full", lora} <= set(b)
    assert b["learning"] in VERDICTS and b["forgetting"] in VERDICTS
    assert b["lora_learns"] in ("less", "more", "can't tell") and b["lora_forgets"] in ("less", "more", "can't tell")
    for name in ("full", lora):
        assert b[name]["skill"]["values"] == [r["skill_accuracy"] for r in metrics["runs"] if r["name"] == name]


def test_real_model_forgetting_on_the_general_ability_ruler(real_notebook_metrics):
    """On a real model, section 2 also reads forgetting on ARC-Easy questions (helpers.ruler), paired by question,
    judged by the course's verdict; the tiny budget leaves the ruler out (its model sits at chance)."""
    m = real_notebook_metrics("06")
    assert m["ruler_items"] == 8 and 0.0 <= m["ruler_before"] <= 1.0
    section2 = [r for r in m["runs"] if r["name"] in ("full", m["lora_run"])]
    for r in section2:
        assert r["ruler_before"] == m["ruler_before"]
        assert r["ruler_drop"] == pytest.approx(r["ruler_before"] - r["ruler_after"]) and r["ruler_drop_se"] >= 0
    assert m["biderman"]["ruler_forgetting"] in VERDICTS


def test_every_tiny_run_learns_the_skill_but_the_heaviest_replay(notebook_metrics):
    """Every run learns the skill, but replay at its highest share: there most of the answer tokens trained are
    general text (measured 83% at half the rows), and the skill is not learned at all (0.00 on the seed that
    forgot most), as the notebook says; the lighter replay still learns."""
    m = notebook_metrics("06")
    heaviest = f"{m['remedies_on']}_replay_{max(m['replay'], key=float)}"
    for r in m["runs"]:
        if r["name"] != heaviest:
            assert r["skill_accuracy"] > r["skill_before"], r["name"]
    assert m["replay"][max(m["replay"], key=float)]["general_token_share"] > 0.75


def test_biderman_over_three_seeds_as_measured(notebook_metrics):
    """The tiny model does not reproduce "LoRA learns less and forgets less": at about matched learning LoRA r=4
    on attention forgets more than full fine-tuning, every seed of it more than every seed of full fine-tuning
    (section 2 of the notebook)."""
    m = notebook_metrics("06")
    b, lora = m["biderman"], m["lora_run"]
    assert m["seeds"] == [0, 1, 2] and b["reproduced"] is False
    assert b["forgetting"] == "full ahead of LoRA" and b["lora_forgets"] == "more"
    assert b[lora]["fact_drop"]["min"] > b["full"]["fact_drop"]["max"] + 1 / m["probes"]
    assert abs(b[lora]["skill"]["mean"] - b["full"]["skill"]["mean"]) < 0.15   # matched learning


def test_rank_and_movement_varied_apart(notebook_metrics):
    """Section 3: rank 4's seeds moved the attention weights the same distance (0.535-0.542) and dropped 0.148 to
    0.694 (measured 2026-12-01): movement does not decide forgetting, and the rank series (r=1, r=64) lands within
    that spread of the rank-4 line, so the rank question is "can't tell" at this budget."""
    m = notebook_metrics("06")
    moved = m["rank_and_movement"]
    seeds4 = [x for x in moved if x["series"] == "rank 4, seeds"]
    assert len(seeds4) == 3 and {x["series"] for x in moved} == {"rank 4, seeds", "movement series", "rank series",
                                                                 "every linear layer"}
    movement = [x["attention_relative_change"] for x in seeds4]
    drops = [x["fact_drop"] for x in seeds4]
    assert max(movement) - min(movement) < 0.1 * min(movement) and max(drops) - min(drops) > 0.2
    slower = [x for x in moved if x["series"] == "movement series"]
    assert slower and all(x["attention_relative_change"] < min(movement) for x in slower)   # a lower rate moves less
    big = max((x for x in moved if x["series"] == "rank series"), key=lambda x: x["attention_relative_change"])
    assert big["attention_relative_change"] > max(movement)                                 # r=64 moves furthest
    assert m["rank_beyond_movement"] == "can't tell"


def test_replay_reduces_forgetting_on_probes_it_never_showed(notebook_metrics):
    """The remedies run on the family that forgot most (LoRA on attention); replay's drop on the probes it never
    showed is below every seed of that family, and it pays in skill (measured 0.24 and 0.10 against 0.84-0.90)."""
    m = notebook_metrics("06")
    worst = m["remedies_on"]
    assert worst == m["lora_run"]
    assert len(m["replay"]) >= 2
    for ratio, v in m["replay"].items():
        assert v["probes_never_replayed"] > 50, ratio
        assert v["fact_drop_unreplayed"] < m["biderman"][worst]["fact_drop"]["min"], ratio
        assert v["skill_accuracy"] < m["biderman"][worst]["skill"]["min"], ratio


def test_the_remedies_and_the_put_back_read_the_run_that_forgot_most(notebook_metrics):
    m = notebook_metrics("06")
    worst = m["remedies_on"]
    drops = {r["seed"]: r["fact_drop"] for r in m["runs"] if r["name"] == worst}
    assert len(drops) == 3 and m["remedies_seed"] == max(drops, key=drops.get)
    assert m["kept_seed"][worst] == m["remedies_seed"]
    for ratio, v in m["replay"].items():   # a general text is longer than a skill answer
        assert float(ratio) < v["general_token_share"] < 1, ratio


def test_every_remedy_judged_against_every_seed(notebook_metrics):
    m = notebook_metrics("06")
    worst = m["remedies_on"]
    names = set(m["remedy_verdicts"])
    assert {f"{worst}_l2", f"{worst}_last_2", f"{worst}_replay_0.25"} <= names
    assert not any("_lr" in n for n in names)                                  # section 3's runs are no remedies
    seed = m["remedies_seed"]
    l2 = runs(m)[(f"{worst}_l2", seed)]
    assert l2["fact_drop"] < runs(m)[(worst, seed)]["fact_drop"]   # against the same seed without it
    for name, v in m["remedy_verdicts"].items():
        assert v in (f"{name} ahead of {worst}", f"{worst} ahead of {name}", "can't tell")


def test_the_forgetting_sits_where_the_update_went(notebook_metrics):
    m = notebook_metrics("06")
    lora = m["lora_run"]
    why = {(r["run"], r["part"]): r for r in m["why_put_back"]}
    after = runs(m)[(lora, m["kept_seed"][lora])]["fact_probe_after"]   # the seed that forgot most
    assert why[(lora, "attention v, o")]["fact_probe_put_back"] > after + 0.05
    assert why[(lora, "MLP")]["relative_change"] == 0.0
    for part in ("attention q, k", "attention v, o"):
        assert why[(lora, part)]["relative_change"] > why[("full", part)]["relative_change"]


def test_alignment_tax_and_forgetting_over_steps(notebook_metrics):
    m = notebook_metrics("06")
    assert set(m["forgetting_vs_steps"]) == {"full", m["lora_run"]}
    assert all(len(c) >= 3 for c in m["forgetting_vs_steps"].values())
    assert set(m["alignment_tax"]) == {"sft", "sft_then_dpo"}
    sft = m["alignment_tax"]["sft"]
    assert sft["chat_exact_match_after"] > sft["chat_exact_match_before"]
    for stage in m["alignment_tax"].values():
        assert stage["fact_drop"] <= 0.05


def test_claims_agree_with_the_committed_tiny_run(notebook_metrics):
    """The claims this run judges (CLAIMS.md) have the verdicts of the committed run (results/tiny/06.json)."""
    assert ledger.disagreements("06", notebook_metrics("06")) == []
