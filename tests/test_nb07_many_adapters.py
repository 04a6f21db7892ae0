"""Notebook 07: many adapters on one base model: swap, combine, stack, merge."""
import pytest

TASKS = ("facts", "skill", "persona")


@pytest.fixture(scope="module")
def metrics(notebook_metrics):
    return notebook_metrics("07")


@pytest.mark.parametrize("task", TASKS)
def test_each_adapter_beats_the_base_model_on_its_own_task(metrics, task):
    accuracy = metrics["per_task_accuracy"]
    assert accuracy[task][task] > accuracy["base"][task]


def test_every_adapter_and_combination_is_measured_on_every_task(metrics):
    accuracy = metrics["per_task_accuracy"]
    assert {"base", *TASKS, "linear", "cat", "svd", "ties", "dare_ties"} <= set(accuracy)
    assert all(set(scores) == set(TASKS) and all(0.0 <= v <= 1.0 for v in scores.values())
               for scores in accuracy.values())


def test_merged_adapter_generates_exactly_what_the_adapter_did(metrics):
    assert metrics["merged_generations_equal"] is True


def test_one_base_plus_adapters_is_smaller_than_merged_models(metrics):
    memory = metrics["memory_bytes"]
    n = len(metrics["adapter_bytes"])
    assert memory["base_plus_adapters"] < memory["merged_models"]
    # and the gap is the base model copies: base + adapters = one merged model + the adapters' bytes
    assert memory["base_plus_adapters"] == memory["merged_models"] // n + sum(metrics["adapter_bytes"].values())


def test_disable_adapter_is_the_base_model(metrics):
    assert metrics["disabled_equals_base"] is True and metrics["disabled_max_logit_difference"] == 0.0


def test_stacking_adapters_equals_their_cat_combination(metrics):
    assert metrics["stacked_equals_cat"] is True and metrics["stacked_vs_cat_max_logit_difference"] < 1e-3
