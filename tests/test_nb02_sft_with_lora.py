"""Notebook 02: SFT with LoRA teaches the base model to answer, including facts held out of SFT (tiny world);
on the real model and real data, the held-out loss falls; the adapter reloads, merges and exports exactly."""
import pytest

from helpers import claims

RANKS, TARGETS = ["r=1", "r=4", "r=16", "r=64"], ["q", "k", "v", "o", "q+v", "all-linear"]


@pytest.fixture(params=["tiny", "real"])
def metrics(request, notebook_metrics, real_notebook_metrics):
    return notebook_metrics("02") if request.param == "tiny" else real_notebook_metrics("02")


def test_held_out_loss_falls(metrics):
    assert metrics["heldout_loss_after"] < metrics["heldout_loss_before"]
    assert metrics["before"]["heldout_loss"] == metrics["heldout_loss_before"]
    assert metrics["train_rows"] > 0 and metrics["eval_rows"] > 0 and metrics["steps"] > 0


def test_the_config_in_view_is_the_helpers(metrics):
    # every field of the SFTConfig written out in section 4 equals helpers.training.sft_config's
    assert metrics["sft_config_fields"] > 50 and metrics["sft_config_differences"] == []


def test_adapter_is_small_reloads_and_merges_exactly(metrics):
    assert 0 < metrics["adapter_bytes"] < 0.1 * metrics["base_model_bytes"]
    assert metrics["reloaded_generations_equal"] is True and metrics["merged_generations_equal"] is True


def test_gguf_exports_read_back_within_their_rounding(metrics):
    f16, q8 = metrics["gguf"]["F16"], metrics["gguf"]["Q8_0"]
    assert f16["max_abs_logit_diff"] < 0.01 * f16["max_abs_logit"]
    assert q8["max_abs_logit_diff"] < 0.05 * q8["max_abs_logit"] and q8["bytes"] < 0.7 * f16["bytes"]


def test_sft_answers_held_out_facts(notebook_metrics):
    m = notebook_metrics("02")
    assert m["world_data"] and m["before"]["exact_match"] <= 0.10
    # measured (3 epochs, 2026-12-01): exact match 0.66 and names the answer (the answer about the asked subject)
    # 0.66, from 0.00 and 0.00; the margins leave room for another CPU's rounding (a few of 58 held-out facts)
    assert m["after"]["exact_match"] >= 0.55 and m["after"]["names_answer"] >= 0.55
    assert m["after"]["names_answer"] >= m["after"]["exact_match"]     # an exact answer names its answer


def test_every_assistant_turn_of_a_conversation_is_trained(metrics):
    """Two rows joined into one two-turn conversation train both answers: their masked tokens add up."""
    tokens = metrics["mask_tokens"]
    assert tokens["row 1"] > 0 and tokens["row 2"] > 0 and tokens["two turns"] == tokens["row 1"] + tokens["row 2"]


def test_stopping_is_measured_and_sft_teaches_the_tiny_model_to_stop(metrics, notebook_metrics):
    assert 0.0 <= metrics["before"]["stop_rate"] <= 1.0 and 0.0 <= metrics["after"]["stop_rate"] <= 1.0
    tiny = notebook_metrics("02")
    # measured: 0.95 -> 1.00 of 58 replies end with <|end|> within 48 tokens
    assert tiny["after"]["stop_rate"] >= max(0.95, tiny["before"]["stop_rate"])


def test_longer_run_overfits_and_best_checkpoint_is_earlier(notebook_metrics):
    overfit = notebook_metrics("02")["overfit"]
    assert overfit["first_eval_loss"] > overfit["best_eval_loss"] < overfit["final_eval_loss"]


def test_sweeps_cover_every_setting_with_three_seeds(notebook_metrics):
    sweeps = notebook_metrics("02")["sweeps"]
    # the metrics JSON is written with sorted keys: compare the settings, not their order
    assert sorted(sweeps["rank"]) == sorted(RANKS) and sorted(sweeps["target"]) == sorted(TARGETS)
    for setting in [*sweeps["rank"].values(), *sweeps["target"].values()]:
        assert len(setting["values"]) == 3 and all(0.0 <= v <= 1.0 for v in setting["values"])
    # each setting put LoRA where it says: trainable parameters grow 4x with the rank (all linear layers),
    # q+v trains exactly q's and v's, and all-linear more than any attention subset
    rank = {r: sweeps["rank"][f"r={r}"]["trainable"] for r in (1, 4, 16, 64)}
    assert rank[4] == 4 * rank[1] and rank[16] == 4 * rank[4] and rank[64] == 4 * rank[16]
    target = {t: s["trainable"] for t, s in sweeps["target"].items()}
    assert target["q+v"] == target["q"] + target["v"] and target["all-linear"] > target["q+v"]
    # the seed changes the run: some setting's seeds disagree
    assert any(s["range"] > 0 for s in [*sweeps["rank"].values(), *sweeps["target"].values()])


def test_ties_follow_the_verdict_rule(notebook_metrics):
    """The best setting ties only with settings that are not behind it on every seed by more than one
    held-out fact; every other setting is behind it on every seed."""
    m = notebook_metrics("02")
    assert m["sweep_score"] == "exact_match"
    for kind, verdict in m["sweep_verdicts"].items():
        settings, best = m["sweeps"][kind], verdict["best"]
        assert verdict["resolution"] == pytest.approx(1 / m["eval_rows"])
        assert settings[best]["mean"] == max(s["mean"] for s in settings.values())
        assert best in verdict["ties"]
        for name, s in settings.items():
            # in held-out facts: behind when the best's worst seed beats this one's best by MORE than one
            facts = (min(settings[best]["values"]) - max(s["values"])) * m["eval_rows"]
            behind = round(facts, 6) > 1
            assert (name not in verdict["ties"]) == behind, (kind, name, facts)
    # the lesson of the target ablation: a LoRA on the keys alone is behind every linear layer
    assert "all-linear" in m["sweep_verdicts"]["target"]["ties"]
    assert "k" not in m["sweep_verdicts"]["target"]["ties"]


def test_real_data_has_no_world_rulers(real_notebook_metrics):
    m = real_notebook_metrics("02")
    assert m["world_data"] is False and "exact_match" not in m["after"]
    assert m["model_source"].startswith("registry package") and m["max_steps"] > 0


def test_claims_agree_with_the_committed_tiny_run(notebook_metrics):
    """The claims this run judges (CLAIMS.md) have the verdicts of the committed run (results/tiny/02.json)."""
    assert claims.disagreements("02", notebook_metrics("02")) == []
