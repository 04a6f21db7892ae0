"""Taking a model elsewhere: GGUF files (F16 and Q8_0) that transformers reads back with the same tokenizer and
nearly the same logits, a merged safetensors folder, and clear refusals."""
import pytest
import torch

from helpers.export import export_merged, load_gguf, save_gguf
from helpers.models import load_model
from helpers.training import standard_lora

PROMPTS = ["The capital of France is", "A baby cat is called a", "Reverse the letters: a b c"]


@pytest.fixture(scope="module")
def tiny():
    return load_model("data/tiny-base")


@pytest.mark.parametrize("quant, tolerance", [("F16", 0.01), ("Q8_0", 0.05)])
def test_gguf_round_trip(tiny, tmp_path, quant, tolerance):
    model, tokenizer = tiny
    path = save_gguf(model, tokenizer, tmp_path / f"tiny-{quant}.gguf", quant)
    back, back_tokenizer = load_gguf(path)
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    assert back_tokenizer.apply_chat_template(messages, tokenize=False) == \
        tokenizer.apply_chat_template(messages, tokenize=False)
    agree = []
    for prompt in PROMPTS:
        ids = tokenizer(prompt, return_tensors="pt").input_ids
        assert back_tokenizer(prompt, return_tensors="pt").input_ids.tolist() == ids.tolist()
        with torch.no_grad():
            a, b = model(ids).logits, back(ids).logits
        assert (a - b).abs().max() < tolerance * a.abs().max(), (quant, prompt)   # the format's rounding
        agree += (a.argmax(-1) == b.argmax(-1)).flatten().tolist()
    assert sum(agree) >= 0.9 * len(agree)            # the same next token almost everywhere (ties may flip)


def test_q8_0_is_smaller_than_f16(tiny, tmp_path):
    model, tokenizer = tiny
    f16, q8 = (save_gguf(model, tokenizer, tmp_path / f"{q}.gguf", q).stat().st_size for q in ("F16", "Q8_0"))
    assert q8 < 0.7 * f16


def test_merged_folder_and_refusals(tiny, tmp_path):
    from peft import get_peft_model
    from transformers import GPT2Config, GPT2LMHeadModel
    model, tokenizer = tiny
    peft_model = get_peft_model(load_model("data/tiny-base")[0], standard_lora(r=2))
    with pytest.raises(ValueError, match="merge the adapter first"):
        save_gguf(peft_model, tokenizer, tmp_path / "x.gguf")
    merged = export_merged(peft_model, tokenizer, tmp_path / "merged")
    assert (tmp_path / "merged" / "model.safetensors").exists() and not hasattr(merged, "peft_config")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_merged(peft_model, tokenizer, tmp_path / "merged")
    with pytest.raises(ValueError, match="not supported here"):
        save_gguf(model, tokenizer, tmp_path / "m.gguf", "Q4_K")
    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=4, vocab_size=64))
    with pytest.raises(ValueError, match="Llama-architecture"):
        save_gguf(gpt2, tokenizer, tmp_path / "gpt2.gguf")
    assert not list(tmp_path.glob("*.partial"))
