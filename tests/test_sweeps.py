"""helpers.sweeps: LoRA's parameter count by placement and rank, the rank for a budget, AdaLoRA's guard."""
import pytest
from peft import AdaLoraConfig, LoraConfig, get_peft_model

from helpers.models import count_parameters, load_model
from helpers.sweeps import full_rank, lora_trainable, rank_for_budget, score_setting


@pytest.fixture(scope="module")
def tiny():
    return load_model("data/tiny-base")


def test_lora_trainable_is_what_peft_trains(tiny):
    model, _ = tiny
    for targets, r in (("all-linear", 2), (["q_proj", "v_proj"], 8), (["down_proj"], 5)):
        peft_model = get_peft_model(load_model("data/tiny-base")[0],
                                    LoraConfig(r=r, target_modules=targets, task_type="CAUSAL_LM"))
        assert lora_trainable(model, targets, r) == count_parameters(peft_model, trainable_only=True)
        # counted on a model that already carries LoRA, its own layers are not counted twice
        assert lora_trainable(peft_model, targets, r) == lora_trainable(model, targets, r)


def test_rank_for_budget_and_full_rank(tiny):
    model, _ = tiny
    budget = lora_trainable(model, "all-linear", 2)                     # 36,992 on the tiny model
    assert rank_for_budget(model, ["q_proj", "v_proj"], budget) == 10   # 10 x 3,584 = 35,840
    assert rank_for_budget(model, ["q_proj"], 10) == 1                  # never below rank 1
    assert full_rank(model, "all-linear") == 256 and full_rank(model, ["k_proj"]) == 128
    with pytest.raises(ValueError, match="no linear layer"):
        lora_trainable(model, ["nonexistent"], 4)


def test_adalora_needs_the_runs_steps(tiny, tmp_path):
    _, tok = tiny
    config = AdaLoraConfig(target_r=2, init_r=4, total_step=10, target_modules="all-linear", task_type="CAUSAL_LM")
    with pytest.raises(ValueError, match="total_step"):
        score_setting("data/tiny-base", tok, [], [], config, recipe={"learning_rate": 1e-3}, learning_rate=1e-3,
                      steps=5, seed=0, output_dir=tmp_path, run_name="x")
