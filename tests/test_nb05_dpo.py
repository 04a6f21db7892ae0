"""Notebook 05: DPO on the tiny world's preference pairs, measured against TRL and on held-out prompts."""
import math

import pytest


def test_initial_loss_is_ln2(notebook_metrics):
    assert abs(notebook_metrics("05")["initial_loss"] - math.log(2)) < 1e-3


def test_hand_loss_equals_trl_loss(notebook_metrics):
    assert notebook_metrics("05")["hand_vs_trl_loss_abs_diff"] < 1e-4


@pytest.mark.xfail(strict=True, reason="measured 0.83: the implicit reward (a change from the reference) misranks "
                   "wrong-answer pairs because the reference doubts the sign-off more after a wrong answer; "
                   "see notebook 05, section 6. Strict: when it passes, this marker must go.")
def test_heldout_preference_accuracy(notebook_metrics):
    assert notebook_metrics("05")["heldout_preference_accuracy"] >= 0.9


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
