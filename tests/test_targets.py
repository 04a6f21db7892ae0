"""Target modules are found by name in small randomly initialised models of several architectures."""
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, PhiConfig, PhiForCausalLM, Qwen2Config, Qwen2ForCausalLM

from helpers.training import attention_targets, check_target_modules, linear_module_names, standard_lora

SMALL = dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
             num_key_value_heads=2)


def models():
    torch.manual_seed(0)
    return {"gpt2": GPT2LMHeadModel(GPT2Config(vocab_size=64, n_positions=32, n_layer=1, n_embd=32, n_head=4)),
            "qwen2": Qwen2ForCausalLM(Qwen2Config(**SMALL)),
            "phi": PhiForCausalLM(PhiConfig(**SMALL))}


EXPECTED = {"gpt2": (["c_attn", "c_fc", "c_proj"], ["c_attn"]),
            "qwen2": (["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"], ["q_proj", "v_proj"]),
            "phi": (["dense", "fc1", "fc2", "k_proj", "q_proj", "v_proj"], ["q_proj", "v_proj"])}


@pytest.mark.parametrize("arch", list(EXPECTED))
def test_linear_and_attention_names(arch):
    model = models()[arch]
    linears, attention = EXPECTED[arch]
    assert linear_module_names(model) == linears
    assert attention_targets(model) == attention


@pytest.mark.parametrize("arch", list(EXPECTED))
def test_lora_on_found_targets_trains_only_the_adapter(arch):
    from peft import get_peft_model
    model = models()[arch]
    peft_model = get_peft_model(model, standard_lora(r=2, target_modules=attention_targets(model)))
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)


def test_unknown_target_names_the_existing_layers():
    with pytest.raises(ValueError, match="q_proj"):
        check_target_modules(models()["qwen2"], ["query"])
