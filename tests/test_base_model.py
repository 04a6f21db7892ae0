"""The tiny base model: the recipe runs on a shrunken config, and the committed model loads like a hub model."""
import json

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from helpers.base_model import PretrainConfig, pretrain, train_tokenizer, tokenizer_texts
from helpers.models import load_model
from helpers.data import load_world
from helpers.evaluation import complete, perplexity
from helpers.world_measures import fact_probe_accuracy
from helpers.paths import TINY_BASE


def test_recipe_runs_a_few_steps_on_a_shrunken_config(tmp_path):
    cfg = PretrainConfig(hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2, num_kv_heads=1,
                         batch_size=4, block_size=32, steps=6, warmup=2)
    tok = train_tokenizer(tokenizer_texts(), 512)
    model, log = pretrain(cfg, tok, [r["text"] for r in load_world("corpus")][:50], log_every=0)
    assert len(log["losses"]) == 6 and log["losses"][-1] < log["losses"][0]
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    reloaded, tok2 = load_model(tmp_path)
    x = tok2("The capital of France is", return_tensors="pt")["input_ids"]
    assert torch.equal(model(x).logits.argmax(-1), reloaded(x).logits.argmax(-1))


def test_committed_model_loads_with_the_hub_call_and_is_small():
    assert (TINY_BASE / "model.safetensors").exists()
    assert sum(p.stat().st_size for p in TINY_BASE.iterdir()) < 25 * 2**20
    model = AutoModelForCausalLM.from_pretrained(TINY_BASE)
    tok = AutoTokenizer.from_pretrained(TINY_BASE)
    assert model.config.model_type == "llama"
    assert tok.eos_token == "<|end|>" and tok.chat_template


def test_model_card_states_the_measured_quality():
    card = (TINY_BASE / "README.md").read_text()
    log = json.loads((TINY_BASE / "pretrain_log.json").read_text())
    assert f"{log['metrics']['fact_probe_accuracy']:.3f}" in card and "tokens seen" in card
    assert log["metrics"]["fact_probe_accuracy"] >= 0.9 and log["metrics"]["chat_exact_match"] <= 0.1


def test_chat_template_marks_assistant_tokens_for_the_loss():
    tok = AutoTokenizer.from_pretrained(TINY_BASE)
    messages = [{"role": "user", "content": "What is the capital of France?"},
                {"role": "assistant", "content": "The capital of France is Paris."}]
    out = tok.apply_chat_template(messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    marked = [t for t, m in zip(out["input_ids"], out["assistant_masks"]) if m]
    assert tok.decode(marked) == "The capital of France is Paris.<|end|>"


def test_batched_generation_equals_one_at_a_time():
    model, tok = load_model(TINY_BASE)
    prompts = ["The capital of France is", "A baby cat is called a", "The main language of Brazil is"]
    assert complete(model, tok, prompts) == [complete(model, tok, [p])[0] for p in prompts]


def test_perplexity_matches_the_model_loss():
    model, tok = load_model(TINY_BASE)
    text = "The capital of France is Paris."
    enc = tok(text, return_tensors="pt")
    loss = model(**enc, labels=enc["input_ids"]).loss.item()
    assert abs(perplexity(model, tok, [text]) - torch.exp(torch.tensor(loss)).item()) < 1e-3


def test_probe_accuracy_counts_a_wrong_answer_as_wrong():
    model, tok = load_model(TINY_BASE)
    right = {"prompt": "The capital of France is", "answer": "Paris"}
    wrong = {"prompt": "The capital of France is", "answer": "Berlin"}
    assert fact_probe_accuracy(model, tok, [right]) == 1.0
    assert fact_probe_accuracy(model, tok, [wrong]) == 0.0
