"""Notebook 04: NF4 built by hand equals bitsandbytes, double quantization counted, QLoRA close to LoRA."""
import pytest

from helpers.quant import bits_per_param_formula


def test_nf4_codebook_matches_bitsandbytes(notebook_metrics):
    assert notebook_metrics("04")["nf4_codebook_max_abs_diff"] < 1e-6


def test_from_scratch_quantization_matches_bitsandbytes(notebook_metrics):
    assert notebook_metrics("04")["from_scratch_vs_bnb_max_abs_diff"] < 1e-5


def test_double_quantization_bits_per_param(notebook_metrics):
    m = notebook_metrics("04")
    assert m["bits_per_param_formula_dq"] == pytest.approx(4 + 8 / 64 + 32 / (64 * 256))
    assert abs(m["bits_per_param_dq"] - bits_per_param_formula(double_quant=True)) < 0.02
    assert abs(m["bits_per_param_no_dq"] - 4.5) < 0.02
    assert m["bits_per_param_dq"] < m["bits_per_param_no_dq"]


def test_nf4_error_below_fp4_and_int4_on_gaussian_data(notebook_metrics):
    err = notebook_metrics("04")["quant_error"]["gaussian"]
    assert err["nf4"]["mse"] < err["fp4"]["mse"] and err["nf4"]["mse"] < err["int4"]["mse"]
    assert err["nf4"]["mae"] < err["fp4"]["mae"] and err["nf4"]["mae"] < err["int4"]["mae"]


def test_quant_error_reported_for_real_weights(notebook_metrics):
    errors = notebook_metrics("04")["quant_error"]
    assert len(errors) > 1 and all(set(v) == {"nf4", "fp4", "int4"} for v in errors.values())


def test_4bit_footprint_smaller_than_fp32(notebook_metrics):
    fp = notebook_metrics("04")["footprint_bytes"]
    assert fp["4bit"] < fp["bf16"] < fp["fp32"]


def test_4bit_model_keeps_its_knowledge(notebook_metrics):
    acc = notebook_metrics("04")["fact_probe_accuracy"]
    assert acc["after"] >= acc["before"] - 0.10


def test_qlora_close_to_lora(notebook_metrics):
    m = notebook_metrics("04")
    assert abs(m["qlora_exact_match"] - m["lora_exact_match"]) <= 0.10
    assert abs(m["qlora_exact_match_train"] - m["lora_exact_match_train"]) <= 0.10
