"""Notebook 03: full fine-tuning, LoRA, prompt tuning and IA3 on the same SFT task, over seeds; the tiny model
and the real one."""
import pytest

METHODS = ("full", "lora", "prompt_tuning", "ia3")


@pytest.fixture(params=["tiny", "real"])
def metrics(request, notebook_metrics, real_notebook_metrics):
    return notebook_metrics("03") if request.param == "tiny" else real_notebook_metrics("03")


def test_every_method_measured_for_every_seed(metrics):
    runs = metrics["runs"]
    assert {(r["method"], r["seed"]) for r in runs} == {(m, s) for m in METHODS for s in metrics["seeds"]}
    for r in runs:
        assert r["trainable_params"] > 0 and r["memory_bytes"] > 0 and r["checkpoint_bytes"] > 0


def test_trainable_parameters_and_checkpoint_ordering(metrics):
    m = metrics["methods"]
    assert m["full"]["trainable_params"] > m["lora"]["trainable_params"] > m["prompt_tuning"]["trainable_params"]
    assert m["ia3"]["trainable_params"] < m["lora"]["trainable_params"]
    assert m["lora"]["checkpoint_bytes"] < 0.2 * m["full"]["checkpoint_bytes"]
    assert m["prompt_tuning"]["checkpoint_bytes"] < m["lora"]["checkpoint_bytes"]


def test_full_training_holds_more_memory_than_lora(metrics):
    m = metrics["methods"]
    assert m["full"]["memory_bytes"] > m["lora"]["memory_bytes"]


def test_full_and_lora_lower_the_held_out_loss(metrics):
    m = metrics["methods"]
    assert m["full"]["heldout_loss"] < metrics["heldout_loss_before"]
    assert m["lora"]["heldout_loss"] < metrics["heldout_loss_before"]


def test_lora_answers_held_out_facts_and_ties_full_fine_tuning(notebook_metrics):
    m = notebook_metrics("03")
    assert m["seeds"] == [0, 1, 2] and m["methods"]["lora"]["exact_match"] >= 0.5
    assert m["lora_vs_full"] == "a tie", m["methods"]
