"""Notebook 01: LoRA from the matrices up. The from-scratch layer equals peft's, merging changes nothing,
rank r >= k recovers a rank-k target, and the intrinsic rank of a full fine-tune's ΔW is measured;
on the tiny model and on the real one."""
import pytest

MODULES = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


@pytest.fixture(params=["tiny", "real"])
def metrics(request, notebook_metrics, real_notebook_metrics):
    return notebook_metrics("01") if request.param == "tiny" else real_notebook_metrics("01")


def test_from_scratch_layer_equals_peft(metrics):
    assert metrics["peft_equal_max_abs_diff"] < 1e-5


def test_merged_equals_unmerged_to_float_rounding(metrics):
    for key in ("merge_max_abs_diff", "scratch_merge_max_abs_diff"):
        assert metrics[key] < 1e-5 * metrics["max_abs_logit"], key    # relative to the logits' size


def test_lora_layer_starts_as_the_base_layer(metrics):
    assert metrics["init_max_abs_diff"] == 0.0


def test_rank_at_least_k_recovers_the_toy_target(metrics):
    k, losses = metrics["toy_true_rank"], {int(r): loss for r, loss in metrics["toy_rank_recovery"].items()}
    below, above = [losses[r] for r in losses if r < k], [losses[r] for r in losses if r >= k]
    assert below and above, f"the toy needs ranks on both sides of k={k}: {sorted(losses)}"
    assert max(above) * 100 <= min(below), f"r >= k should be 100x better than r < k: {losses}"


def test_rslora_keeps_large_ranks_learning(metrics):
    norms = metrics["update_norm_vs_rank"]
    assert norms["α/√r"]["128"] > 2 * norms["α/r"]["128"]
    assert norms["α/r"]["128"] < norms["α/r"]["4"]


def test_effective_rank_measured_per_module_type_and_full_fine_tune_learned(metrics):
    assert set(metrics["effective_rank_90"]) == MODULES
    for module, fraction in metrics["effective_rank_90_fraction"].items():
        assert 0 < fraction <= 1 and metrics["effective_rank_90"][module] >= 1, module
    assert metrics["full_ft"]["last_loss"] < metrics["full_ft"]["first_loss"]


def test_checkpoint_sizes_follow_the_lora_paper(notebook_metrics):
    m = notebook_metrics("01")
    assert m["gpt3_lora_params"] == 96 * 2 * 4 * (12288 + 12288)
    assert 30e6 < m["gpt3_lora_bytes"] < 40e6 and m["gpt3_full_bytes"] == 350e9
    assert m["llama7b_params"] == 6_738_415_616  # Llama-2-7B's published count, from config numbers alone


def test_forward_times_reported(metrics):
    assert metrics["merged_forward_time_ratio"] > 0 and metrics["unmerged_forward_time_ratio"] > 0
