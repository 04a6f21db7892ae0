"""Notebook 05: DPO, its loss by hand equal to TRL's (on real pairs too), what the rejected answers add over
SFT on the chosen ones, and β as a leash."""
import math

import pytest

from helpers import ledger


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
    assert m["heldout_margin_after"] > m["heldout_margin_before"]
    assert arms["dpo_nll"]["preferred_rate"] - before["preferred_rate"] >= 0.3
    assert arms["dpo_nll"]["preferred_rate_unseen_facts"] - before["preferred_rate_unseen_facts"] >= 0.2
    assert arms["dpo_nll"]["fact_probes"] >= before["fact_probes"] - 0.05         # knowledge kept


def test_the_rejected_answers_remove_a_habit_imitation_keeps(notebook_metrics):
    """The sloppy SFT model ends about half its replies with the sign-off; half the chosen answers carry it too.
    Measured 2026-12-01 (3 seeds, 48 held-out prompts): SFT model 0.54, SFT on chosen 0.42 (0.33-0.46),
    DPO + NLL 0.01 (0.00-0.04), plain DPO 0.00: the contrast removes what imitation keeps."""
    m = notebook_metrics("05")
    seeds, verdicts = m["arms_over_seeds"], m["verdicts"]
    assert m["seeds"] == [0, 1, 2] and all(len(v["habit_rate"]) == 3 for k, v in seeds.items()
                                           if k != "sft_model_before")
    assert m["arms"]["sft_model_before"]["habit_rate"] >= 0.3                       # the failure exists
    assert min(seeds["sft_on_chosen"]["habit_rate"]) >= 0.2                           # imitation keeps it
    assert max(seeds["dpo_nll"]["habit_rate"]) <= 0.1                                 # the contrast removes it
    assert verdicts["habit_rate_dpo_nll_vs_sft_on_chosen"] == "DPO + NLL ahead of SFT on chosen"
    assert verdicts["preferred_rate_dpo_nll_vs_sft_on_chosen"] == "DPO + NLL ahead of SFT on chosen"
    # the contrast also ranks: DPO's implicit reward orders held-out pairs better than imitation's change does
    assert verdicts["implicit_reward_accuracy_dpo_nll_vs_sft_on_chosen"] in ("DPO + NLL ahead of SFT on chosen",
                                                                            "can't tell")


def test_sign_off_learned_everywhere_wrong_answers_per_fact(notebook_metrics):
    split = notebook_metrics("05")["margin_split"]
    held, seen = split["held_out_pairs"], split["training_pairs"]
    assert held["right_answer_sign_off"]["misranked"] == 0
    assert held["right_answer_sign_off"]["mean_differing_part"] > 1
    kind = "wrong_answer_sign_off"
    assert seen[kind]["mean_differing_part"] > held[kind]["mean_differing_part"]


def test_beta_holds_plain_dpo_closer_and_is_chosen_by_measurement(notebook_metrics):
    m = notebook_metrics("05")
    sweep = [s for s in m["beta_sweep"] if s["family"] == "DPO"]
    assert [s["beta"] for s in sweep] == sorted(s["beta"] for s in sweep) and len(sweep) >= 3
    assert all(s["sft_weight"] == 0.0 for s in sweep)
    assert sweep[-1]["drift"] < sweep[0]["drift"] / 2                               # the leash
    # a loose leash: the ranking holds while the replies break (healthy curves, broken replies)
    assert sweep[0]["implicit_reward_accuracy"] >= 0.75 and sweep[0]["preferred_rate"] < 0.25
    assert max(s["preferred_rate"] for s in sweep) >= 0.6
    choice = m["beta_choice"]["dpo_nll"]
    assert choice["chosen"] in choice["ties"] and choice["best"] in choice["ties"]
    assert m["recipe"]["beta"] == choice["chosen"]                                    # the recipe's β, measured


def test_real_pairs_are_cut_from_hh_transcripts(real_notebook_metrics):
    m = real_notebook_metrics("05")
    assert m["world_data"] is False and m["sft_first"] is False and m["train_rows"] > 0
    assert m["model_source"].startswith("registry package")
    # general ability (helpers.ruler) before and after, read in pairs, for the aligned arm at each seed
    r = m["ruler"]
    assert m["ruler_items"] == 4 and 0 <= r["before"] <= 1 and r["arm"] == "DPO"
    assert len(r["drops"]) == len(m["seeds"]) == len(r["ses"]) and all(se >= 0 for se in r["ses"])


def test_tiny_budget_leaves_the_ruler_out(notebook_metrics):
    """The tiny model sits at chance on ARC: the tiny budget measures no general-ability ruler."""
    m = notebook_metrics("05")
    assert m["ruler_items"] == 0 and m["ruler"] is None


def test_the_chosen_answers_likelihood_is_tracked_per_arm(metrics):
    """Likelihood displacement measured: each DPO arm's change of log π(chosen) and log π(rejected) from the
    reference on the held-out pairs, the same numbers as the arms' table."""
    for arm, d in metrics["displacement"].items():
        assert d["chosen"] == metrics["arms"][arm]["chosen_logp_change"]
        assert d["rejected"] == metrics["arms"][arm]["rejected_logp_change"]


def test_the_nll_term_holds_the_chosen_answer_up(notebook_metrics):
    """Over every held-out pair plain DPO lowered log π(chosen) while the margin rose (measured -7.9 nats, 3
    seeds); the NLL term keeps the chosen answer far closer to the reference (-0.6). On the pairs whose chosen
    answer has no sign-off (the habit the preference lowers) both raised it (+0.6, +1.0): no displacement."""
    arms = notebook_metrics("05")["arms"]
    dpo, nll = arms["dpo"], arms["dpo_nll"]
    assert dpo["chosen_logp_change"] < 0 < dpo["chosen_logp_change"] - dpo["rejected_logp_change"]
    assert nll["chosen_logp_change"] > dpo["chosen_logp_change"] and nll["stop_rate"] >= 0.9
    clean = notebook_metrics("05")["displacement"]
    assert clean["dpo"]["chosen_without_sign_off"] > 0 and clean["dpo_nll"]["chosen_without_sign_off"] > 0


def test_claims_agree_with_the_committed_tiny_run(notebook_metrics):
    """The claims this run judges (CLAIMS.md) have the verdicts of the committed run (results/tiny/05.json)."""
    assert ledger.disagreements("05", notebook_metrics("05")) == []
