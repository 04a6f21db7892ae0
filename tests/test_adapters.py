"""helpers.adapters on a tiny random Llama: byte counts, merging, routing, the persona rule."""
import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

import helpers.adapters as adapters
from helpers.adapters import adapter_bytes, max_logit_difference, merged_copy, persona_rate, routed_replies
from helpers.memory import module_bytes, tensor_bytes
from helpers.base_model import train_tokenizer
from helpers.evaluation import generate_replies
from helpers.world import PIRATE, chat

ROWS = [chat("What is the capital of France?", "The capital of France is Paris."),
        chat("Reverse the letters: a b c", "c b a"),
        chat("What sound does the cat make?", "The cat is an animal that meows.")]


@pytest.fixture(scope="module")
def tokenizer():
    texts = [m["content"] for r in ROWS for m in r["messages"]] * 5
    return train_tokenizer(texts, 300)


def tiny_llama(tokenizer, tied: bool = True) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=tied,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return LlamaForCausalLM(config).eval()


def with_two_adapters(tokenizer):
    """q/v LoRA adapters "first" (r=2) and "second" (r=4), with non-zero B so that they change the outputs."""
    model = get_peft_model(tiny_llama(tokenizer), LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"],
                                                             init_lora_weights=False), adapter_name="first")
    model.add_adapter("second", LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    return model.eval()


def test_tied_weights_are_counted_once(tokenizer):
    tied, untied = tiny_llama(tokenizer, tied=True), tiny_llama(tokenizer, tied=False)
    embedding_bytes = len(tokenizer) * 32 * 4
    assert module_bytes(untied) - module_bytes(tied) == embedding_bytes
    t = torch.zeros(10)
    assert tensor_bytes([t, t, torch.zeros(3, dtype=torch.float16)]) == 10 * 4 + 3 * 2


def test_adapter_bytes_are_r_times_in_plus_out(tokenizer):
    model = with_two_adapters(tokenizer)
    # one layer; q_proj 32 -> 32, v_proj 32 -> 16 (one kv head of 16); A is r x in, B is out x r; fp32
    assert adapter_bytes(model, "first") == 4 * 2 * ((32 + 32) + (32 + 16))
    assert adapter_bytes(model, "second") == 4 * 4 * ((32 + 32) + (32 + 16))
    assert module_bytes(model) == module_bytes(tiny_llama(tokenizer)) + adapter_bytes(model, "first") + adapter_bytes(model, "second")


def test_merged_copy_matches_the_adapter_and_leaves_the_model_alone(tokenizer):
    model = with_two_adapters(tokenizer)
    model.set_adapter("second")
    merged = merged_copy(model, "second")
    assert not any("lora_" in n for n, _ in merged.named_parameters())
    assert max_logit_difference(model, merged, tokenizer, ROWS) < 1e-5
    assert set(model.peft_config) == {"first", "second"} and adapter_bytes(model, "first") > 0
    with model.disable_adapter():  # the base weights of the multi-adapter model were not touched
        assert max_logit_difference(model, tiny_llama(tokenizer), tokenizer, ROWS) == 0.0


def test_routed_batch_equals_one_adapter_at_a_time(tokenizer):
    model = with_two_adapters(tokenizer)
    names = ["first", "second", "__base__"]
    routed = routed_replies(model, tokenizer, ROWS, names, max_new_tokens=6)
    single = []
    for row, name in zip(ROWS, names):
        if name == "__base__":
            with model.disable_adapter():
                single += generate_replies(model, tokenizer, [row], max_new_tokens=6)
        else:
            model.set_adapter(name)
            single += generate_replies(model, tokenizer, [row], max_new_tokens=6)
    assert routed == single


def test_persona_rate_needs_the_prefix_and_the_answer(monkeypatch):
    rows = [dict(chat("q", "x"), fact_id=f) for f in ("capital:France", "capital:Spain", "capital:Italy")]
    facts = {"capital:France": {"answer": "Paris"}, "capital:Spain": {"answer": "Madrid"},
             "capital:Italy": {"answer": "Rome"}}
    replies = [f"{PIRATE} The capital of France is Paris.", "The capital of Spain is Madrid.", f"{PIRATE} It is Oslo."]
    monkeypatch.setattr(adapters, "generate_replies", lambda *a, **k: replies)
    assert persona_rate(None, None, rows, facts) == pytest.approx(1 / 3)


def test_train_adapter_wants_the_tokenizer_of_a_loaded_model(tokenizer, tmp_path):
    with pytest.raises(ValueError, match="tokenizer"):
        adapters.train_adapter(tiny_llama(tokenizer), ROWS, tmp_path, LoraConfig(r=2))
