"""Notebook 00: a base model knows facts in prose and does not answer chat questions; an instruct model does."""

FAMILIES = ("full fine-tuning", "LoRA r=8, all linear", "LoRA r=8 on q, v", "prompt tuning, 20 tokens")


def test_base_model_knows_the_facts(notebook_metrics):
    assert notebook_metrics("00")["fact_probe_accuracy"] >= 0.90


def test_base_model_does_not_answer_chat_before_sft(notebook_metrics):
    m = notebook_metrics("00")
    assert m["chat_exact_match"] <= 0.10 and m["chat_names_answer"] <= 0.25


def test_three_families_counted(notebook_metrics):
    counts = notebook_metrics("00")["trainable_params"]
    assert counts["full fine-tuning"] == notebook_metrics("00")["parameters"] == 3_334_912
    assert [counts[f] for f in FAMILIES] == sorted((counts[f] for f in FAMILIES), reverse=True)
    assert counts["prompt tuning, 20 tokens"] == 20 * 256                # 20 virtual tokens x hidden size


def test_real_instruct_model_already_answers(real_notebook_metrics, notebook_metrics):
    real, tiny = real_notebook_metrics("00"), notebook_metrics("00")
    assert real["model_source"].startswith("registry package") and real["parameters"] == 134_515_008
    assert real["chat_names_answer"] >= 0.3 > tiny["chat_names_answer"]
    counts = real["trainable_params"]
    assert [counts[f] for f in FAMILIES] == sorted((counts[f] for f in FAMILIES), reverse=True)
