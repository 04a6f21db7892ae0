"""Notebook 05: DPO, its loss by hand equal to TRL's (on real pairs too), what the rejected answers add over
SFT on the chosen ones, and β as a leash."""
import math

import pytest

from helpers import claims


@pytest.fixture(params=["tiny", "real"])
def metrics(request, notebook_metrics, real_notebook_metrics):
    return notebook_metrics("05") if request.param == "tiny" else real_notebook_metrics("05")


def test_initial_loss_is_ln2_and_hand_loss_equals_trl(metrics):
    assert abs(metrics["initial_loss"] - math.log(2)) < 1e-4
    assert metrics["hand_vs_trl_loss_abs_diff"] < 1e-4
    assert metrics["dpo_config_equals_helper"] is True


def test_every_arm_measured_on_held_out_pairs(metrics):
    arms = metrics["arms"]
    assert {"sft_on_chosen", "dpo"} <= set(arms) and metrics["eval_rows"] > 0
    for name in ("sft_on_chosen", "dpo"):
        assert 0 <= arms[name]["implicit_reward_accuracy"] <= 1 and arms[name]["drift"] > 0
    # one reference for every arm: the SFT model (each adapter switched off) ranks the pairs the same way
    for name in set(arms) - {"sft_model_before"}:
        assert abs(arms[name]["logp_margin_before"] - arms["dpo"]["logp_margin_before"]) < 1e-3


def test_dpo_learned_the_preference_on_the_tiny_world(notebook_metrics):
    m = notebook_metrics("05")
    arms, before = m["arms"], m["arms"]["sft_model_before"]
    assert m["heldout_margin_after"] > 0 > m["heldout_margin_before"]             # chosen now more likely
    assert arms["dpo_nll"]["preferred_rate"] - before["preferred_rate"] >= 0.4
    assert arms["dpo_nll"]["preferred_rate_unseen_facts"] - before["preferred_rate_unseen_facts"] >= 0.4
    assert arms["dpo_nll"]["fact_probes"] >= before["fact_probes"] - 0.05         # knowledge kept


def test_the_rejected_answers_add_ranking_imitation_adds_behaviour(notebook_metrics):
    m = notebook_metrics("05")
    arms, verdicts = m["arms"], m["verdicts"]
    # the contrast ranks: DPO's implicit reward orders held-out pairs better than imitation's, by more than one
    # held-out pair (the verdict the notebook's reading is written from); DPO + NLL is not behind imitation.
    # Measured 2026-12-01 (SFT start of 3 epochs): SFT on chosen 0.81, DPO 0.88, DPO + NLL 0.83 of 48 pairs:
    # DPO + NLL against imitation is one pair, "can't tell" (with a 6-epoch SFT start it had been "ahead").
    assert verdicts["implicit_reward_accuracy_dpo_vs_sft_on_chosen"] == "DPO ahead of SFT on chosen"
    assert arms["dpo_nll"]["implicit_reward_accuracy"] >= arms["sft_on_chosen"]["implicit_reward_accuracy"]
    assert verdicts["implicit_reward_accuracy_dpo_nll_vs_sft_on_chosen"] in ("DPO + NLL ahead of SFT on chosen",
                                                                            "can't tell")
    # imitation adds the behaviour: the chosen style in greedy replies, which DPO alone never produces
    assert arms["sft_on_chosen"]["preferred_rate"] > arms["dpo"]["preferred_rate"]
    assert verdicts["preferred_rate_sft_on_chosen_vs_dpo"] == "SFT on chosen ahead of DPO"


def test_sign_off_learned_everywhere_wrong_answers_per_fact(notebook_metrics):
    split = notebook_metrics("05")["margin_split"]
    held, seen = split["held_out_pairs"], split["training_pairs"]
    assert held["plain_right_answer"]["misranked"] == 0
    assert held["plain_right_answer"]["mean_differing_part"] > 10
    kind = "wrong_answer_sign_off"
    assert seen[kind]["mean_differing_part"] > held[kind]["mean_differing_part"]


def test_beta_holds_plain_dpo_closer(notebook_metrics):
    sweep = notebook_metrics("05")["beta_sweep"]
    assert [s["beta"] for s in sweep] == sorted(s["beta"] for s in sweep) and len(sweep) >= 3
    assert all(s["sft_weight"] == 0.0 for s in sweep)
    assert sweep[-1]["drift"] < sweep[0]["drift"] / 2                               # the leash


def test_real_pairs_are_cut_from_hh_transcripts(real_notebook_metrics):
    m = real_notebook_metrics("05")
    assert m["world_data"] is False and m["sft_first"] is False and m["train_rows"] > 0
    assert m["model_source"].startswith("registry package")


def test_the_chosen_answers_likelihood_is_tracked_per_arm(metrics):
    """Likelihood displacement measured: each DPO arm's change of log π(chosen) and log π(rejected) from the
    reference on the held-out pairs, the same numbers as the arms' table."""
    for arm, d in metrics["displacement"].items():
        assert d["chosen"] == metrics["arms"][arm]["chosen_logp_change"]
        assert d["rejected"] == metrics["arms"][arm]["rejected_logp_change"]


def test_plain_dpo_has_healthy_curves_and_broken_replies_on_the_tiny_world(notebook_metrics):
    """Measured: plain DPO ranks 0.88 of held-out pairs right, yet 0.44 of its replies stop (SFT on chosen
    1.00) and the rule prefers none (SFT on chosen 0.88); the NLL term keeps the chosen answer rising."""
    arms = notebook_metrics("05")["arms"]
    dpo, imitation, nll = arms["dpo"], arms["sft_on_chosen"], arms["dpo_nll"]
    assert dpo["implicit_reward_accuracy"] >= 0.75
    assert dpo["stop_rate"] < imitation["stop_rate"] - 0.25
    assert dpo["preferred_rate"] < imitation["preferred_rate"] - 0.5
    assert nll["stop_rate"] >= 0.9 and nll["chosen_logp_change"] > dpo["chosen_logp_change"]


def test_claims_agree_with_the_committed_tiny_run(notebook_metrics):
    """The claims this run judges (CLAIMS.md) have the verdicts of the committed run (results/tiny/05.json)."""
    assert claims.disagreements("05", notebook_metrics("05")) == []
