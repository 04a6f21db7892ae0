"""Unit tests of helpers/lora.py (the counting and SVD side of LoRA; the layer itself is tested through
notebook 01, where it is written): small shapes, fast."""
import math

import pytest
import torch
from torch import nn

from helpers import lora
from helpers.arch import block_linear_shapes, llama_block_shapes


def linear(n_out=12, n_in=10, seed=0):
    torch.manual_seed(seed)
    return nn.Linear(n_in, n_out)


@pytest.mark.parametrize("r, message", [(0, "at least 1"), (-2, "at least 1"), (11, "Pick r <= 10")])
def test_bad_rank_says_what_to_do(r, message):
    with pytest.raises(ValueError, match=message):
        lora.check_rank(r, 12, 10)
    with pytest.raises(TypeError, match="whole number"):
        lora.check_rank(2.0, 12, 10)


def test_rslora_scaling():
    assert lora.scaling_factor(16, 4) == 4 and lora.scaling_factor(16, 4, use_rslora=True) == 8
    assert math.isclose(lora.scaling_factor(6, 9, use_rslora=True), 2.0)


def test_llama_counts_match_published_and_built_models(make_llama):
    assert lora.llama_parameter_count(4096, 11008, 32, 32, 32000) == 6_738_415_616  # Llama-2-7B
    model = make_llama(None, layers=2)
    assert lora.llama_parameter_count(32, 64, 2, 2, 64, kv_heads=1, tied_embeddings=True) == \
        sum(p.numel() for p in model.parameters())
    assert block_linear_shapes(model) == llama_block_shapes(32, 64, 2, 1)
    b = lora.lora_vs_full_counts(llama_block_shapes(4096, 11008, 32), ["q_proj", "v_proj"], r=8, layers=32)
    assert b["lora_params"] == 4_194_304  # what peft prints for Llama-2-7B, r=8 on q and v
    # two shares: of the targeted matrices, and of the whole model (what peft's print_trainable_parameters says)
    b = lora.lora_vs_full_counts(llama_block_shapes(4096, 11008, 32), ["q_proj", "v_proj"], r=8, layers=32,
                                 model_params=6_738_415_616)
    assert b["targeted_params"] == 32 * 2 * 4096 * 4096 and b["of_targeted"] == 4_194_304 / b["targeted_params"]
    assert b["of_model"] == pytest.approx(0.000622, abs=1e-6)   # peft: "trainable%: 0.0622"


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


def test_weight_deltas_and_effective_ranks(make_llama):
    model = make_llama(None, layers=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model.model.layers[1].mlp.up_proj.weight += torch.outer(torch.ones(64), torch.ones(32))
    deltas = lora.weight_deltas(before, model)
    assert len(deltas) == 14
    rows = {r["matrix"]: r for r in lora.effective_ranks({k: v for k, v in deltas.items() if v.abs().sum() > 0})}
    assert rows["model.layers.1.mlp.up_proj.weight"]["effective_rank"] == 1


def test_median_forward_seconds_and_drawing():
    layer = linear()
    t = lora.median_forward_seconds({"a": layer}, {"input": torch.randn(2, 10)}, repeats=3)
    assert t["a"] > 0
    mats = lora.lora_matrices(6, 2, 4)
    assert int(torch.linalg.matrix_rank(mats["ΔW = (α/r)·B·A"])) == 2
    lora.draw_lora(mats)
