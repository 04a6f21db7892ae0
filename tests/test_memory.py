"""The memory estimator against exact measurement, and the will-it-fit table's sanity."""
import pytest
import torch
from peft import LoraConfig, get_peft_model

from helpers.models import load_model
from helpers.memory import (GPUS, PUBLISHED, estimate_memory, measured_training_bytes, model_shape, one_training_step,
                            optimizer_state_bytes, parameter_count, will_it_fit)


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_full_fine_tuning_bytes_are_exact(optimizer):
    model, _ = load_model("data/tiny-base", device="cpu", dtype=torch.float32)
    opt = torch.optim.AdamW(model.parameters()) if optimizer == "adamw" else torch.optim.SGD(model.parameters(), lr=0.1)
    one_training_step(model, opt)
    measured = measured_training_bytes(model, opt)
    est = estimate_memory(model.config, "full", dtype="float32", optimizer=optimizer)
    for part in ("weights", "gradients", "optimizer_states"):
        assert est[part] == measured[part], part
    assert est["parameters"] == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("r,targets", [(8, "all-linear"), (4, ["q_proj", "v_proj"])])
def test_lora_bytes_are_exact(r, targets):
    model, _ = load_model("data/tiny-base", device="cpu", dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=r, lora_alpha=2 * r, target_modules=targets))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    one_training_step(model, opt)
    measured = measured_training_bytes(model, opt)
    est = estimate_memory(model.config, "lora", dtype="float32", lora_r=r, target_modules=targets)
    for part in ("weights", "gradients", "optimizer_states"):
        assert est[part] == measured[part], part


def test_qwen2_shape_counts_biases():
    from transformers import Qwen2Config, Qwen2ForCausalLM
    cfg = Qwen2Config(hidden_size=64, num_hidden_layers=2, intermediate_size=96, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=100, tie_word_embeddings=False)
    model = Qwen2ForCausalLM(cfg)
    assert parameter_count(cfg) == sum(p.numel() for p in model.parameters())
    assert model_shape(cfg).qkv_bias


def test_published_sizes_are_in_their_class():
    billions = {name: parameter_count(shape) / 1e9 for name, shape in PUBLISHED.items()}
    assert 0.45 < billions["0.5B (Qwen2.5-0.5B)"] < 0.55 and 1.4 < billions["1.5B (Qwen2.5-1.5B)"] < 1.6
    assert 7.0 < billions["7B (Qwen2.5-7B)"] < 7.8 and 12.5 < billions["13B (Llama-2-13B)"] < 13.5
    assert 69 < billions["70B (Llama-3.1-70B)"] < 72


def test_eight_bit_adam_is_about_a_quarter():
    tensors = [4096 * 4096] * 3
    assert 0.25 < optimizer_state_bytes(tensors, 4, "adamw_8bit") / optimizer_state_bytes(tensors, 4, "adamw") < 0.26


def test_will_it_fit_is_sane():
    rows = {(r["model"], r["method"]): r for r in will_it_fit()}
    t4, card24, card80 = GPUS
    assert rows[("7B (Qwen2.5-7B)", "full (fp32, AdamW)")][card80] == "no"
    assert rows[("7B (Qwen2.5-7B)", "QLoRA (NF4 base)")][t4] == "yes"
    assert rows[("70B (Llama-3.1-70B)", "QLoRA (NF4 base)")][card24] == "no"
    assert rows[("0.5B (Qwen2.5-0.5B)", "LoRA (bf16 base)")][t4] == "yes"
    for model in PUBLISHED:  # QLoRA < LoRA < full, always
        full, lora, qlora = (rows[(model, m)]["peak GiB"] for m in ("full (fp32, AdamW)", "LoRA (bf16 base)", "QLoRA (NF4 base)"))
        assert qlora < lora < full


def test_checkpointing_and_batch_move_activations_only():
    shape = PUBLISHED["1.5B (Qwen2.5-1.5B)"]
    small, big = (estimate_memory(shape, "lora", batch_size=b, seq_len=512) for b in (1, 8))
    ckpt = estimate_memory(shape, "lora", batch_size=8, seq_len=512, gradient_checkpointing=True)
    assert small["weights"] == big["weights"] == ckpt["weights"]
    assert big["activations"] == pytest.approx(8 * small["activations"])
    assert ckpt["activations"] < big["activations"] / 2


def _qlora_model():
    from peft import prepare_model_for_kbit_training
    from transformers import BitsAndBytesConfig

    from helpers import quant

    quant.patch_cpu_dequantize()
    config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                bnb_4bit_compute_dtype=torch.float32)
    model, _ = load_model("data/tiny-base", quantization_config=config, device_map="cpu")
    quant.keep_bnb_layout(model)
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    return get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear"))


def test_qlora_bytes_are_exact():
    model = _qlora_model()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    one_training_step(model, opt)
    measured = measured_training_bytes(model, opt)
    est = estimate_memory(model.config, "qlora", dtype="float32", lora_r=8)
    for part in ("weights", "gradients", "optimizer_states"):
        assert est[part] == measured[part], (part, est[part], measured[part])


def test_peak_tensor_bytes_follows_allocations():
    from helpers.memory import PeakTensorBytes

    before = torch.zeros(1000)  # exists before the block, and no model is given: not counted
    with PeakTensorBytes() as peak:
        a = torch.ones(500) * 2      # 2000 bytes (the ones() temporary is freed at once)
        b = torch.ones(1000) + a.sum()
        del a, b
        c = torch.ones(250)
    # at the addition: a (2000), ones(1000) (4000), the scalar sum (4) and the result b (4000)
    assert peak.peak_bytes == 2000 + 4000 + 4 + 4000
    assert peak.current == 1000 and before.numel() == 1000 and c.numel() == 250


@pytest.mark.parametrize("method", ["full", "lora", "qlora"])
@pytest.mark.parametrize("checkpointing", [False, True])
def test_estimated_peak_is_close_to_measured(method, checkpointing):
    from helpers.memory import training_peak

    if method == "qlora":
        model = _qlora_model()
    else:
        model, _ = load_model("data/tiny-base", dtype=torch.float32)
    if checkpointing:
        model.activation_checkpointing_enable({"use_reentrant": False})
    if method == "lora":
        model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear"))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    measured = training_peak(model, opt, batch_size=8, seq_len=128)["peak"]
    est = estimate_memory(model.config, method, dtype="float32", batch_size=8, seq_len=128, lora_r=8,
                          gradient_checkpointing=checkpointing, foreach=False)["peak"]
    assert abs(est / measured - 1) < 0.12, (est, measured)
