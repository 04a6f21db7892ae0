"""Architecture knowledge (helpers.arch) on small randomly initialised models of several architectures:
layer names by role, decoder blocks, block shapes."""
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, PhiConfig, PhiForCausalLM, Qwen2Config, Qwen2ForCausalLM

from helpers.arch import (attention_targets, block_linear_shapes, check_target_modules, decoder_layers,
                          linear_module_names, llama_block_shapes, role_targets)
from helpers.training import standard_lora

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


@pytest.mark.parametrize("arch", list(EXPECTED))
def test_decoder_layers_found_in_every_architecture_and_through_peft(arch):
    from peft import get_peft_model
    model = models()[arch]
    assert len(decoder_layers(model)) == 1
    peft_model = get_peft_model(model, standard_lora(r=2, target_modules=attention_targets(model)))
    assert decoder_layers(peft_model) is decoder_layers(model)


def test_roles_name_each_architectures_layers():
    m = models()
    assert role_targets(m["qwen2"], ["value", "attention output"]) == ["v_proj", "o_proj"]
    assert role_targets(m["phi"], ["MLP"]) == ["fc1", "fc2"]
    assert role_targets(m["gpt2"], ["MLP"]) == ["c_fc"]
    with pytest.raises(ValueError, match="unknown role"):
        role_targets(m["qwen2"], ["queries"])


def test_block_shapes_in_one_orientation():
    qwen = models()["qwen2"]
    assert block_linear_shapes(qwen) == llama_block_shapes(32, 64, 4, 2)   # (n_out, n_in), like nn.Linear
    gpt2 = block_linear_shapes(models()["gpt2"])
    assert gpt2["c_attn"] == (96, 32) and gpt2["c_fc"] == (128, 32)      # Conv1D's (n_in, n_out) turned round
