"""Notebook 02: SFT with LoRA teaches the base model to answer, including facts held out of SFT (tiny world);
on the real model and real data, the held-out loss falls; the adapter reloads, merges and exports exactly."""
import statistics

import pytest

from helpers import ledger

TARGETS = ["q", "v", "q+v", "all-linear"]


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
    m = notebook_metrics("02")
    sweeps, top = m["sweeps"], m["full_rank"]
    assert top == 256   # the tiny model's hidden size: every adapted layer's min(n_out, n_in)
    ranks = [1, 4, 32, top]
    assert sorted(sweeps["rank"]) == sorted([*(f"{s} r={r}" for s in ("α/r", "α/√r") for r in ranks),
                                             "full fine-tuning"])
    assert sorted(sweeps["target"]) == sorted(TARGETS)
    for setting in (s for sweep in sweeps.values() for s in sweep.values()):
        assert len(setting["heldout_loss"]["values"]) == 3 and len(setting["exact_match"]["values"]) == 3
        assert all(0.0 <= v <= 1.0 for v in setting["exact_match"]["values"])
    # each setting put LoRA where it says: trainable parameters grow with the rank (all linear layers),
    # q+v trains exactly q's and v's, and all-linear more than any attention subset
    trainable = {r: sweeps["rank"][f"α/r r={r}"]["trainable"] for r in ranks}
    assert all(trainable[r] == r * trainable[1] for r in ranks)
    assert trainable[top] > sweeps["rank"]["full fine-tuning"]["trainable"]   # LoRA at full rank: more
    target = {t: s["trainable"] for t, s in sweeps["target"].items()}
    assert target["q+v"] == target["q"] + target["v"] and target["all-linear"] > target["q+v"]
    # at one budget every LoRA placement trains within 10% of it (AdaLoRA: its kept ranks, within 50%)
    for name, s in sweeps["budget"].items():
        assert abs(s["trainable"] / m["parameter_budget"] - 1) < (0.5 if "AdaLoRA" in name else 0.1), name
    # the seed changes the run: some setting's seeds disagree
    assert any(s["heldout_loss"]["range"] > 0 for sweep in sweeps.values() for s in sweep.values())


def test_adalora_spends_its_rank_budget_unevenly(notebook_metrics):
    """AdaLoRA keeps the mean rank it was given, and gives the matrices different ranks."""
    m = notebook_metrics("02")
    for name, ranks in m["adalora_kept_ranks"].items():
        assert len(ranks) == 28                                   # 4 layers x 7 linear layers
        assert sum(ranks.values()) == 2 * len(ranks)              # budget_rank = 2 on average
        assert min(ranks.values()) < 2 < max(ranks.values()), name


def test_ties_follow_the_verdict_rule(notebook_metrics):
    """The best setting ties only with settings that are not behind it on every seed; every other setting
    is behind it on every seed (held-out loss, resolution 0)."""
    m = notebook_metrics("02")
    for kind, verdicts in m["sweep_verdicts"].items():
        settings, v = m["sweeps"][kind], verdicts["heldout_loss"]
        values = {n: s["heldout_loss"]["values"] for n, s in settings.items()}
        assert statistics.mean(values[v["best"]]) == min(statistics.mean(x) for x in values.values())
        for name, x in values.items():
            behind = min(x) > max(values[v["best"]])
            assert (name not in v["ties"]) == behind, (kind, name)
    # the four questions of section 7 are answered, each by the verdict rule on its two arms
    for question, x in m["sweep_answers"].items():
        a = m["sweeps"]["rank" if question in ("rank_scale", "full_rank") else "budget"][x["a"]]
        assert x["a_loss"] == a["heldout_loss"]["mean"]
        assert x["verdict"] in (f"{x['a']} ahead of {x['b']}", f"{x['b']} ahead of {x['a']}", "can't tell")
    assert sorted(m["sweep_answers"]) == ["adalora", "all_linear_at_budget", "full_rank", "rank_scale"]


def test_real_data_has_no_world_rulers(real_notebook_metrics):
    m = real_notebook_metrics("02")
    assert m["world_data"] is False and "exact_match" not in m["after"]
    assert m["model_source"].startswith("registry package") and m["max_steps"] > 0
    # the general-ability ruler, before and after SFT, read in pairs (helpers.ruler)
    assert m["ruler_items"] == 4 and 0 <= m["before"]["ARC-Easy accuracy"] <= 1
    assert m["ruler_drop"]["drop"] == pytest.approx(m["before"]["ARC-Easy accuracy"] - m["after"]["ARC-Easy accuracy"])


def test_tiny_budget_leaves_the_ruler_out(notebook_metrics):
    m = notebook_metrics("02")
    assert m["ruler_items"] == 0 and m["ruler_drop"] is None and "ARC-Easy accuracy" not in m["before"]


def test_claims_agree_with_the_committed_tiny_run(notebook_metrics):
    """The claims this run judges (CLAIMS.md) have the verdicts of the committed run (results/tiny/02.json)."""
    assert ledger.disagreements("02", notebook_metrics("02")) == []


def test_exercises_1_and_2_run(tmp_path):
    """Exercise 1 (two ranks, one placement per sweep, longer sweeps) and exercise 2 (one epoch) run to the
    summary, at a small budget: section 7 answers only the questions its arms allow."""
    from helpers.course import notebooks, run_notebook
    (nb,) = notebooks(["02"])
    m, _ = run_notebook(nb, tmp_path, {"epochs": 1, "sweep_ranks": [4, 64], "sweep_targets": ["q+v"],
                                       "budget_targets": ["all-linear"], "sweep_steps": 5,
                                       "sweep_seeds": [0], "overfit_epochs": 0})
    assert m["steps"] == 37                                  # 591 rows in batches of 16, once
    assert sorted(m["sweeps"]["rank"]) == ["full fine-tuning", "α/r r=4", "α/r r=64", "α/√r r=4", "α/√r r=64"]
    assert sorted(m["sweep_answers"]) == ["adalora"]       # no full rank, no attention-only arm at the budget


def test_exercise_3_a_malformed_row_is_named(tmp_path):
    """Exercise 3: an Alpaca file with a row missing `output` is refused with its file, line and field."""
    import json

    from helpers.formats import sft_splits
    bad = tmp_path / "alpaca.json"
    rows = [{"instruction": f"Say {i}.", "input": "", "output": str(i)} for i in range(20)]
    del rows[7]["output"]
    bad.write_text(json.dumps(rows))
    with pytest.raises(ValueError) as err:
        sft_splits(str(bad), "data/world")
    assert "alpaca.json" in str(err.value) and "output" in str(err.value)
