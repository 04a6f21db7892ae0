"""helpers.forgetting on a tiny random Llama: freezing, learning and forgetting measured, measuring during training,
where an update went."""
import pytest
import torch

from helpers.arch import decoder_layers
from helpers.forgetting import (PARTS, MeasureEvery, drop_on, freeze_all_but_last, learning_and_forgetting,
                                plain_weights, relative_change)
from helpers.training import standard_lora, train_sft
from helpers.world import chat

SKILL = [chat(f"Reverse the letters: {a} {b} {c}", f"{c} {b} {a}") for a, b, c in ["abc", "def", "ghi", "jkl"] * 5]
TEXTS = [f"The capital of Land{i} is City{i}." for i in range(10)]
SKILL_TEST = SKILL[:3]
PROBES = [{"prompt": "The capital of Land1 is", "answer": "City1"}]


@pytest.fixture(scope="module")
def tokenizer(make_tokenizer):
    return make_tokenizer([m["content"] for r in SKILL for m in r["messages"]] + TEXTS, 300)


def test_freeze_all_but_last_trains_only_the_last_block(make_llama, tokenizer):
    model = make_llama(tokenizer, layers=3)
    freeze_all_but_last(model, 1)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("model.layers.2.") for n in trainable)


def test_learning_and_forgetting_and_measure_every_on_a_short_run(make_llama, tokenizer, tmp_path):
    model = make_llama(tokenizer, layers=2)
    before = learning_and_forgetting(model, tokenizer, SKILL_TEST, PROBES)
    assert set(before) == {"skill_accuracy", "fact_probe", "fact_hits"} and len(before["fact_hits"]) == 1
    start = decoder_layers(model)[1].mlp.up_proj.weight.detach().clone()
    freeze_all_but_last(model, 1)
    frozen = decoder_layers(model)[0].mlp.up_proj.weight.detach().clone()
    probe = MeasureEvery(tokenizer, PROBES, every=2)
    train_sft(model, tokenizer, SKILL, output_dir=str(tmp_path), callbacks=[probe], max_steps=4,
              batch_size=4, learning_rate=1e-2)
    assert [h["step"] for h in probe.history] == [2, 4]
    assert not torch.equal(decoder_layers(model)[1].mlp.up_proj.weight, start)
    assert torch.equal(decoder_layers(model)[0].mlp.up_proj.weight, frozen)


def test_relative_change_and_plain_weights_of_a_lora_model(make_llama, tokenizer):
    from peft import get_peft_model
    model = make_llama(tokenizer, layers=2)
    start = plain_weights(model)
    peft_model = get_peft_model(model, standard_lora(r=2, target_modules=["v_proj"]))
    for name, p in peft_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p)
    change = relative_change(plain_weights(peft_model), start)
    assert set(change) == set(PARTS) and change["attention v, o"] > 0
    assert change["attention q, k"] == change["MLP"] == change["embeddings, LM head"] == 0.0
    with pytest.raises(ValueError, match="no weight of"):
        relative_change(start, start, {"conv": ("conv1d",)})


def test_drop_on_a_subset_of_probes():
    before, after = [True, True, True, False], [True, False, False, False]
    assert drop_on(before, after, [True, True, False, False]) == 0.5      # 2 right -> 1 right of 2
    assert drop_on(before, after, [False, False, True, True]) == 0.5
