"""Notebook 05: DPO, its loss by hand equal to TRL's (on real pairs too), what the rejected answers add over
SFT on the chosen ones, and β as a leash."""
import math

import pytest


@pytest.fixture(params=["tiny", "real"])
def metrics(request, notebook_metrics, real_notebook_metrics):
    return notebook_metrics("05") if request.param == "tiny" else real_notebook_metrics("05")


def test_initial_loss_is_ln2_and_hand_loss_equals_trl(metrics):
    assert abs(metrics["initial_loss"] - math.log(2)) < 1e-4
    assert metrics["hand_vs_trl_loss_abs_diff"] < 1e-4
    assert metrics["dpo_config_equals_helper"] is True


def test_every_arm_measured_on_held_out_pairs(metrics):
    assert {"SFT on chosen", "DPO"} <= set(metrics["arms"]) and metrics["eval_rows"] > 0
    for name in ("SFT on chosen", "DPO"):
        arm = metrics["arms"][name]
        assert 0 <= arm["implicit reward accuracy"] <= 1 and arm["drift (nats)"] > 0
    assert metrics["sft_on_chosen"] == metrics["arms"]["SFT on chosen"]


def test_dpo_learned_the_preference_on_the_tiny_world(notebook_metrics):
    m = notebook_metrics("05")
    arms, before = m["arms"], m["arms"]["SFT model (before)"]
    assert m["heldout_margin_after"] > 0 > m["heldout_margin_before"]             # chosen now more likely
    assert arms["DPO + NLL"]["preferred rate"] - before["preferred rate"] >= 0.4
    assert arms["DPO + NLL"]["preferred rate, unseen facts"] - before["preferred rate, unseen facts"] >= 0.4
    assert arms["DPO + NLL"]["fact probes"] >= before["fact probes"] - 0.05       # knowledge kept


def test_the_rejected_answers_add_ranking_imitation_adds_behaviour(notebook_metrics):
    arms = notebook_metrics("05")["arms"]
    assert arms["DPO + NLL"]["implicit reward accuracy"] > arms["SFT on chosen"]["implicit reward accuracy"]
    assert arms["SFT on chosen"]["preferred rate"] > arms["DPO"]["preferred rate"]


def test_sign_off_learned_everywhere_wrong_answers_per_fact(notebook_metrics):
    split = notebook_metrics("05")["margin_split"]
    held, seen = split["held-out pairs"], split["training pairs"]
    assert held["plain right answer"]["misranked"] == 0
    assert held["plain right answer"]["mean differing part"] > 10
    kind = "wrong answer + sign-off"
    assert seen[kind]["mean differing part"] > held[kind]["mean differing part"]


def test_beta_holds_plain_dpo_closer(notebook_metrics):
    sweep = notebook_metrics("05")["beta_sweep"]
    assert [s["beta"] for s in sweep] == sorted(s["beta"] for s in sweep) and len(sweep) >= 3
    assert all(s["sft_weight"] == 0.0 for s in sweep)
    assert sweep[-1]["drift"] < sweep[0]["drift"] / 2                               # the leash


def test_real_pairs_are_cut_from_hh_transcripts(real_notebook_metrics):
    m = real_notebook_metrics("05")
    assert m["world_data"] is False and m["sft_first"] is False and m["train_rows"] > 0
    assert m["model_source"].startswith("registry package")
