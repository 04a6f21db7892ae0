"""Notebook 04: NF4 built by hand equals bitsandbytes (on real weights too), double quantization counted,
QLoRA against LoRA over seeds; on the tiny model and on the real one."""
import pytest

from helpers import ledger
from helpers.quant import bits_per_param_formula
from helpers.verdict import verdict


@pytest.fixture(params=["tiny", "real"])
def metrics(request, notebook_metrics, real_notebook_metrics):
    return notebook_metrics("04") if request.param == "tiny" else real_notebook_metrics("04")


def test_nf4_codebook_and_quantizer_match_bitsandbytes(metrics):
    assert metrics["nf4_codebook_max_abs_diff"] < 1e-6
    assert metrics["from_scratch_vs_bnb_max_abs_diff"] < 1e-5 and metrics["from_scratch_same_bytes"] is True


def test_double_quantization_bits_per_param(metrics):
    assert metrics["bits_per_param_formula_dq"] == pytest.approx(4 + 8 / 64 + 32 / (64 * 256))
    assert abs(metrics["bits_per_param_dq"] - bits_per_param_formula(double_quant=True)) < 0.02
    assert abs(metrics["bits_per_param_no_dq"] - 4.5) < 0.02
    assert metrics["bits_per_param_dq"] < metrics["bits_per_param_no_dq"]


def test_nf4_error_below_fp4_and_int4_on_gaussian_data(metrics):
    err = metrics["quant_error"]["gaussian"]
    assert err["nf4"]["mse"] < err["fp4"]["mse"] and err["nf4"]["mse"] < err["int4"]["mse"]
    assert err["nf4"]["mae"] < err["fp4"]["mae"] and err["nf4"]["mae"] < err["int4"]["mae"]


def test_quant_error_reported_for_every_weight_of_the_first_block(metrics):
    errors = metrics["quant_error"]
    assert len(errors) == 8 and all(set(v) == {"nf4", "fp4", "int4"} for v in errors.values())


def test_4bit_footprint_smaller_than_bf16_and_fp32(metrics):
    fp = metrics["footprint_bytes"]
    assert fp["nf4"] < fp["bf16"] < fp["fp32"]


def test_4bit_nf4_model_keeps_its_knowledge(metrics):
    q = metrics["quality_4bit"]
    assert q["nf4_dq"]["fact_probes"] >= q["fp32"]["fact_probes"] - 0.10


def test_qlora_and_lora_both_learn(metrics):
    before, after = metrics["heldout_loss_before"], metrics["heldout_loss_after"]
    assert after["LoRA"] < before
    assert len(metrics["qlora_runs"]) == 2 * len(metrics["seeds"])


def test_qlora_against_lora_is_the_verdict_of_the_runs(metrics):
    score = metrics["qlora_vs_lora_score"]
    qlora, lora = ([r[score] for r in metrics["qlora_runs"] if r["arm"] == a] for a in ("QLoRA", "LoRA"))
    assert metrics["qlora_vs_lora_verdict"] == verdict(
        qlora, lora, names=("QLoRA", "LoRA"), higher_is_better=score == "exact_match",
        resolution=metrics["qlora_vs_lora_resolution"])


def test_four_bit_gap_is_read_from_the_run(metrics):
    """4 bits' cost in held-out loss before training, and what QLoRA leaves of it after (against LoRA)."""
    q, after = metrics["quality_4bit"], metrics["heldout_loss_after"]
    gap = metrics["four_bit_gap"]
    assert gap["before"] == pytest.approx(q["nf4_dq"]["heldout_loss"] - q["fp32"]["heldout_loss"])
    assert gap["after"] == pytest.approx(after["QLoRA"] - after["LoRA"])


def test_exact_match_cannot_tell_qlora_from_lora_on_the_tiny_world(notebook_metrics):
    m = notebook_metrics("04")
    assert m["seeds"] == [0, 1, 2] and m["qlora_vs_lora_score"] == "exact_match"
    assert m["qlora_vs_lora_resolution"] == pytest.approx(1 / m["eval_rows"])
    assert m["qlora_vs_lora_verdict"] == "can't tell", m["qlora_vs_lora"]
    assert m["heldout_loss_after"]["QLoRA"] < m["heldout_loss_before"]


def test_qlora_training_memory_is_measured_per_arm_and_smaller(metrics):
    """QLoRA's point, memory, measured on any device: the weights' bytes and the peak of one training step."""
    mem = metrics["memory_by_arm"]
    assert mem["QLoRA"]["weight_bytes"] < 0.5 * mem["LoRA"]["weight_bytes"]
    assert 0 < mem["QLoRA"]["training_peak_bytes"] < mem["LoRA"]["training_peak_bytes"]
    loss = metrics["qlora_vs_lora_loss"]
    assert metrics["qlora_vs_lora_loss_verdict"] == verdict(
        loss["QLoRA"]["values"], loss["LoRA"]["values"], names=("QLoRA", "LoRA"), higher_is_better=False)


def test_nf4_is_closest_to_fp32_on_the_pretraining_text(notebook_metrics):
    """The data types judged on what the tiny model learned (its pretraining text's perplexity), measured:
    fp32 1.2378, NF4 1.2425, int4 1.2463, FP4 1.2485; every 4-bit type above fp32."""
    ppl = {k: v["corpus_perplexity"] for k, v in notebook_metrics("04")["quality_by_type"].items()}
    assert ppl["fp32"] < ppl["nf4"] < min(ppl["int4"], ppl["fp4"])


def test_claims_agree_with_the_committed_tiny_run(notebook_metrics):
    """The claims this run judges (CLAIMS.md) have the verdicts of the committed run (results/tiny/04.json)."""
    assert ledger.disagreements("04", notebook_metrics("04")) == []


def test_exercise_3_runs(tmp_path):
    """Exercise 3 (a short run, `max_steps`) runs to the summary, at a small budget and one seed."""
    from helpers.course import notebooks, run_notebook
    (nb,) = notebooks(["04"])
    m, _ = run_notebook(nb, tmp_path, {"max_steps": 4, "seeds": [0], "max_probes": 48, "max_texts": 16})
    assert m["max_steps"] == 4 and len(m["qlora_runs"]) == 2
    assert m["qlora_vs_lora_verdict"] in ("can't tell", "QLoRA ahead of LoRA", "LoRA ahead of QLoRA")
