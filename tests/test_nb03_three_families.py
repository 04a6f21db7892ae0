"""Notebook 03: full fine-tuning, LoRA, prompt tuning and IA3 on the same SFT task."""

METHODS = ("full", "lora", "prompt_tuning", "ia3")
FIELDS = ("trainable_params", "peak_memory_bytes", "seconds", "exact_match", "checkpoint_bytes")


def test_every_method_measured(notebook_metrics):
    methods = notebook_metrics("03")["methods"]
    assert set(methods) == set(METHODS)
    for name in METHODS:
        assert all(methods[name][f] > 0 for f in FIELDS if f != "exact_match")
        assert 0.0 <= methods[name]["exact_match"] <= 1.0


def test_trainable_parameters_ordering(notebook_metrics):
    m = notebook_metrics("03")["methods"]
    assert m["full"]["trainable_params"] > m["lora"]["trainable_params"] > m["prompt_tuning"]["trainable_params"]
    assert m["ia3"]["trainable_params"] < m["lora"]["trainable_params"]


def test_lora_checkpoint_smaller_than_full(notebook_metrics):
    m = notebook_metrics("03")["methods"]
    assert m["lora"]["checkpoint_bytes"] < 0.2 * m["full"]["checkpoint_bytes"]
    assert m["prompt_tuning"]["checkpoint_bytes"] < m["lora"]["checkpoint_bytes"]


def test_full_training_holds_more_memory_than_lora(notebook_metrics):
    m = notebook_metrics("03")["methods"]
    assert m["full"]["peak_memory_bytes"] > m["lora"]["peak_memory_bytes"]


def test_lora_answers_held_out_facts(notebook_metrics):
    assert notebook_metrics("03")["methods"]["lora"]["exact_match"] >= 0.5


def test_lora_matches_full_fine_tuning_on_held_out_facts(notebook_metrics):
    m = notebook_metrics("03")["methods"]
    assert abs(m["lora"]["exact_match"] - m["full"]["exact_match"]) <= 0.1
