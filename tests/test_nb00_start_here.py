"""Notebook 00: the base model knows facts in prose and does not answer chat questions."""


def test_base_model_knows_the_facts(notebook_metrics):
    assert notebook_metrics("00")["fact_probe_accuracy"] >= 0.90


def test_base_model_does_not_answer_chat_before_sft(notebook_metrics):
    assert notebook_metrics("00")["chat_exact_match"] <= 0.10


def test_perplexity_is_reported(notebook_metrics):
    # better than guessing uniformly over the 1.5k-token vocabulary (the model card reports the number)
    assert 1.0 < notebook_metrics("00")["heldout_perplexity"] < 1500


def test_three_families_counted(notebook_metrics):
    counts = notebook_metrics("00")["trainable_params"]
    assert counts["full"] == notebook_metrics("00")["parameters"]
    assert counts["full"] > counts["lora_r8_all_linear"] > counts["lora_r8"] > counts["prompt_tuning"] > 0
