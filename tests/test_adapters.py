"""helpers.adapters on a tiny random Llama: byte counts, merging, the persona rule."""
import pytest
import torch
from peft import LoraConfig, get_peft_model

import helpers.adapters as adapters
from helpers.adapters import adapter_bytes, max_logit_difference, merged_copy, persona_rate
from helpers.memory import module_bytes, tensor_bytes
from helpers.world import PIRATE, chat

ROWS = [chat("What is the capital of France?", "The capital of France is Paris."),
        chat("Reverse the letters: a b c", "c b a"),
        chat("What sound does the cat make?", "The cat is an animal that meows.")]


@pytest.fixture(scope="module")
def tokenizer(make_tokenizer):
    return make_tokenizer([m["content"] for r in ROWS for m in r["messages"]] * 5, 300)


def with_two_adapters(make_llama, tokenizer):
    """q/v LoRA adapters "first" (r=2) and "second" (r=4), with non-zero B so that they change the outputs."""
    model = get_peft_model(make_llama(tokenizer), LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"],
                                                             init_lora_weights=False), adapter_name="first")
    model.add_adapter("second", LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    return model.eval()


def test_tied_weights_are_counted_once(make_llama, tokenizer):
    tied, untied = make_llama(tokenizer, tied=True), make_llama(tokenizer, tied=False)
    embedding_bytes = len(tokenizer) * 32 * 4
    assert module_bytes(untied) - module_bytes(tied) == embedding_bytes
    t = torch.zeros(10)
    assert tensor_bytes([t, t, torch.zeros(3, dtype=torch.float16)]) == 10 * 4 + 3 * 2


def test_adapter_bytes_are_r_times_in_plus_out(make_llama, tokenizer):
    model = with_two_adapters(make_llama, tokenizer)
    # one layer; q_proj 32 -> 32, v_proj 32 -> 16 (one kv head of 16); A is r x in, B is out x r; fp32
    assert adapter_bytes(model, "first") == 4 * 2 * ((32 + 32) + (32 + 16))
    assert adapter_bytes(model, "second") == 4 * 4 * ((32 + 32) + (32 + 16))
    assert module_bytes(model) == module_bytes(make_llama(tokenizer)) + adapter_bytes(model, "first") + adapter_bytes(model, "second")


def test_merged_copy_matches_the_adapter_and_leaves_the_model_alone(make_llama, tokenizer):
    model = with_two_adapters(make_llama, tokenizer)
    model.set_adapter("second")
    merged = merged_copy(model, "second")
    assert not any("lora_" in n for n, _ in merged.named_parameters())
    assert max_logit_difference(model, merged, tokenizer, ROWS) < 1e-5
    assert set(model.peft_config) == {"first", "second"} and adapter_bytes(model, "first") > 0
    with model.disable_adapter():  # the base weights of the multi-adapter model were not touched
        assert max_logit_difference(model, make_llama(tokenizer), tokenizer, ROWS) == 0.0


def test_persona_rate_needs_the_prefix_and_the_answer(monkeypatch):
    rows = [dict(chat("q", "x"), fact_id=f) for f in ("capital:France", "capital:Spain", "capital:Italy")]
    facts = {"capital:France": {"answer": "Paris"}, "capital:Spain": {"answer": "Madrid"},
             "capital:Italy": {"answer": "Rome"}}
    replies = [f"{PIRATE} The capital of France is Paris.", "The capital of Spain is Madrid.", f"{PIRATE} It is Oslo."]
    monkeypatch.setattr(adapters, "generate_replies", lambda *a, **k: replies)
    assert persona_rate(None, None, rows, facts) == pytest.approx(1 / 3)

