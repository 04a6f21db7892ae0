"""helpers.forgetting on a tiny random Llama: replay mixing, the L2 pull, freezing, the rulers, one run."""
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from helpers.base_model import train_tokenizer
from helpers.forgetting import (PARTS, MeasureEvery, effective_rank, freeze_all_but_last, l2_pull_to_start, mix_replay,
                                plain_weights, relative_change, replay_rows, rulers)
from helpers.training import train_sft
from helpers.world import chat

SKILL = [chat(f"Reverse the letters: {a} {b} {c}", f"{c} {b} {a}") for a, b, c in ["abc", "def", "ghi", "jkl"] * 5]
TEXTS = [f"The capital of Land{i} is City{i}." for i in range(10)]
WORLD = {"skill_test": SKILL[:3], "probes": [{"prompt": "The capital of Land1 is", "answer": "City1"}],
         "heldout_text": TEXTS[:3]}


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer([m["content"] for r in SKILL for m in r["messages"]] + TEXTS, 300)


def tiny_llama(tokenizer, layers: int = 2) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                         num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return LlamaForCausalLM(config).eval()


def test_replay_rows_put_the_text_in_the_assistant_turn():
    (row,) = replay_rows(["Snow is white."])
    assert row["messages"] == [{"role": "user", "content": ""}, {"role": "assistant", "content": "Snow is white."}]


def test_mix_replay_keeps_the_size_and_the_share():
    rows = mix_replay(SKILL, TEXTS, 0.25, seed=0)
    general = [r for r in rows if r["messages"][0]["content"] == ""]
    assert len(rows) == len(SKILL) and len(general) == 5
    assert mix_replay(SKILL, TEXTS, 0.25, seed=0) == rows
    assert mix_replay(SKILL, TEXTS, 0.0) and all(r["messages"][0]["content"] for r in mix_replay(SKILL, TEXTS, 0.0))
    with pytest.raises(ValueError):
        mix_replay(SKILL, TEXTS, 1.0)


def test_l2_pull_adds_the_penalty_gradient(tokenizer):
    model = tiny_llama(tokenizer)
    p = model.model.layers[0].mlp.up_proj.weight
    handles = l2_pull_to_start(model, strength=0.5)
    with torch.no_grad():
        p.add_(1.0)  # move away from the start by 1 everywhere
    (p * 0).sum().backward()  # zero task gradient: only the pull is left, 2 * 0.5 * (theta - theta0) = 1
    assert torch.allclose(p.grad, torch.ones_like(p))
    for h in handles:
        h.remove()
    p.grad = None
    (p * 0).sum().backward()
    assert torch.count_nonzero(p.grad) == 0


def test_freeze_all_but_last_trains_only_the_last_block(tokenizer):
    model = tiny_llama(tokenizer, layers=3)
    freeze_all_but_last(model, 1)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("model.layers.2.") for n in trainable)


def test_rulers_and_measure_every_on_a_short_run(tokenizer, tmp_path):
    model = tiny_llama(tokenizer)
    before = rulers(model, tokenizer, WORLD)
    assert set(before) == {"skill_accuracy", "fact_probe", "perplexity"} and before["perplexity"] > 1
    start = model.model.layers[1].mlp.up_proj.weight.detach().clone()
    freeze_all_but_last(model, 1)
    frozen = model.model.layers[0].mlp.up_proj.weight.detach().clone()
    probe = MeasureEvery(tokenizer, WORLD, every=2)
    train_sft(model, tokenizer, SKILL, output_dir=str(tmp_path), callbacks=[probe], max_steps=4,
              per_device_train_batch_size=4, learning_rate=1e-2)
    assert [h["step"] for h in probe.history] == [2, 4]
    assert not torch.equal(model.model.layers[1].mlp.up_proj.weight, start)
    assert torch.equal(model.model.layers[0].mlp.up_proj.weight, frozen)


def test_effective_rank_counts_the_directions_that_hold_the_energy():
    torch.manual_seed(0)
    u, v = torch.linalg.qr(torch.randn(16, 16))[0], torch.linalg.qr(torch.randn(16, 16))[0]
    delta = u[:, :3] @ torch.diag(torch.tensor([3.0, 2.0, 1.0])) @ v[:, :3].T
    assert effective_rank(delta, 0.9) == 2 and effective_rank(delta, 0.99) == 3


def test_relative_change_and_plain_weights_of_a_lora_model(tokenizer):
    from peft import get_peft_model
    from helpers.training import standard_lora
    model = tiny_llama(tokenizer)
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
