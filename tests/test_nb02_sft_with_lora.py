"""Notebook 02: SFT with LoRA teaches the base model to answer, including facts held out of SFT."""

RANKS = ["r=1", "r=2", "r=4", "r=8", "r=16", "r=64"]
TARGETS = ["q", "k", "v", "o", "q+v", "q+k+v+o", "all-linear"]


def test_base_model_does_not_answer_before_sft(notebook_metrics):
    assert notebook_metrics("02")["exact_match_before"] <= 0.10


def test_sft_answers_held_out_facts(notebook_metrics):
    assert notebook_metrics("02")["exact_match_after_heldout"] >= 0.60


def test_sft_answers_seen_facts_better_than_before(notebook_metrics):
    m = notebook_metrics("02")
    assert m["exact_match_after_seen"] >= 0.60 > m["exact_match_before_seen"]


def test_longer_run_overfits_and_best_checkpoint_is_earlier(notebook_metrics):
    overfit = notebook_metrics("02")["overfit"]
    assert overfit["first_eval_loss"] > overfit["best_eval_loss"] < overfit["final_eval_loss"]


def test_sweeps_cover_every_setting(notebook_metrics):
    m = notebook_metrics("02")
    assert set(m["rank_sweep"]) == set(RANKS)
    assert set(m["target_sweep"]) == set(TARGETS)
    assert all(0.0 <= v <= 1.0 for v in [*m["rank_sweep"].values(), *m["target_sweep"].values()])


def test_adapter_is_small_and_merges_exactly(notebook_metrics):
    m = notebook_metrics("02")
    assert 0 < m["adapter_bytes"] < 0.1 * m["base_model_bytes"]
    assert m["reloaded_generations_equal"] is True
    assert m["merged_generations_equal"] is True
