"""Unit tests of helpers/lora.py: small shapes, fast."""
import math

import pytest
import torch
from torch import nn

from helpers import lora


def linear(n_out=12, n_in=10, seed=0):
    torch.manual_seed(seed)
    return nn.Linear(n_in, n_out)


def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True))


def test_layer_starts_equal_to_base_and_counts_r_times_n_plus_m():
    base = linear()
    layer = lora.LoRALinear(base, r=3, alpha=6)
    x = torch.randn(5, 10)
    assert torch.equal(layer(x), base(x))
    assert layer.lora_A.shape == (3, 10) and layer.lora_B.shape == (12, 3)
    assert sum(p.numel() for p in layer.parameters() if p.requires_grad) == lora.lora_parameter_count(12, 10, 3) == 3 * 22
    assert not base.weight.requires_grad and layer.scaling == 2.0


def test_merge_and_unmerge():
    layer = lora.LoRALinear(linear(), r=4, alpha=8)
    nn.init.normal_(layer.lora_B)
    x = torch.randn(7, 10)
    unmerged = layer(x)
    w0 = layer.base_layer.weight.clone()
    layer.merge()
    assert torch.allclose(layer(x), unmerged, atol=1e-5)
    assert torch.allclose(layer.base_layer.weight, w0 + layer.delta_weight(), atol=1e-6)
    layer.unmerge()
    assert torch.allclose(layer.base_layer.weight, w0, atol=1e-6)


@pytest.mark.parametrize("r, message", [(0, "at least 1"), (-2, "at least 1"), (11, "Pick r <= 10")])
def test_bad_rank_says_what_to_do(r, message):
    with pytest.raises(ValueError, match=message):
        lora.LoRALinear(linear(), r=r, alpha=1)


def test_unknown_target_module_lists_existing_ones():
    with pytest.raises(ValueError, match="q_proj"):
        lora.add_lora(tiny_llama(), ["query"], r=2, alpha=4)


def test_add_lora_replaces_targets():
    model = tiny_llama()
    names = lora.add_lora(model, ["q_proj", "v_proj"], r=2, alpha=4)
    assert len(names) == 4 and all(isinstance(model.get_submodule(n), lora.LoRALinear) for n in names)


def test_rslora_scaling():
    assert lora.scaling_factor(16, 4) == 4 and lora.scaling_factor(16, 4, use_rslora=True) == 8
    assert math.isclose(lora.LoRALinear(linear(), 9, 6, use_rslora=True).scaling, 2.0)


def test_copied_from_peft_gives_equal_outputs():
    from peft import LoraConfig, get_peft_model
    model = tiny_llama()
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                  init_lora_weights=False, use_rslora=True))
    scratch, replaced = lora.swap_in_from_scratch(peft_model)
    assert len(replaced) == 4
    ids = torch.randint(0, 64, (2, 9))
    with torch.no_grad():
        assert (peft_model(input_ids=ids).logits - scratch(input_ids=ids).logits).abs().max() < 1e-5
    assert scratch.model.layers[0].self_attn.q_proj.scaling == 8 / 2


def test_llama_counts_match_published_and_built_models():
    assert lora.llama_parameter_count(4096, 11008, 32, 32, 32000) == 6_738_415_616  # Llama-2-7B
    model = tiny_llama()
    assert lora.llama_parameter_count(32, 48, 2, 4, 64, kv_heads=2, tied_embeddings=True) == \
        sum(p.numel() for p in model.parameters())
    assert lora.model_projection_shapes(model) == lora.llama_projection_shapes(32, 48, 4, 2)
    b = lora.lora_budget(lora.llama_projection_shapes(4096, 11008, 32), ["q_proj", "v_proj"], r=8, layers=32)
    assert b["lora_params"] == 4_194_304  # what peft prints for Llama-2-7B, r=8 on q and v


def test_low_rank_approximation_and_error():
    torch.manual_seed(0)
    m = torch.randn(20, 3) @ torch.randn(3, 15)  # rank 3
    assert torch.allclose(lora.low_rank_approximation(m, 3), m, atol=1e-4)
    err = lora.reconstruction_error(m, [1, 3])
    direct = (m - lora.low_rank_approximation(m, 1)).norm() / m.norm()
    assert math.isclose(err[1], float(direct), rel_tol=1e-4) and err[3] < 1e-6


def test_effective_rank():
    d = torch.diag(torch.tensor([2.0, 1.0, 1.0]))  # energy shares 4/6, 1/6, 1/6: cumulative 0.667, 0.833, 1
    assert lora.effective_rank(d, 0.9) == 3 and lora.effective_rank(d, 0.8) == 2 and lora.effective_rank(d, 0.6) == 1
    with pytest.raises(ValueError, match="all zeros"):
        lora.effective_rank(torch.zeros(4, 4))


def test_weight_deltas_and_effective_ranks():
    model = tiny_llama()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model.model.layers[1].mlp.up_proj.weight += torch.outer(torch.ones(48), torch.ones(32))
    deltas = lora.weight_deltas(before, model)
    assert len(deltas) == 14
    rows = {r["matrix"]: r for r in lora.effective_ranks({k: v for k, v in deltas.items() if v.abs().sum() > 0})}
    assert rows["model.layers.1.mlp.up_proj.weight"]["effective_rank"] == 1


def test_toy_rank_recovery_separates_at_the_true_rank():
    res = lora.toy_rank_recovery([1, 2, 3], n=16, k=2, steps=300)
    assert res[2]["final_loss"] * 100 < res[1]["final_loss"] and res[3]["final_loss"] * 100 < res[1]["final_loss"]


def test_median_forward_seconds_and_drawing():
    layer = linear()
    t = lora.median_forward_seconds({"a": layer}, {"input": torch.randn(2, 10)}, repeats=3)
    assert t["a"] > 0
    mats = lora.lora_matrices(6, 2, 4)
    assert int(torch.linalg.matrix_rank(mats["ΔW = (α/r)·B·A"])) == 2
    lora.draw_lora(mats)
