"""helpers.cost: what a cell is about to cost, said before it runs."""
import pytest

from helpers.cost import (LONG_SECONDS, duration, matmul_flops, planned_steps, predict_step_seconds, say_cost,
                          typical_length)


def test_matmul_speed_is_measured_and_positive():
    assert 1e8 < matmul_flops("cpu") < 1e14


def test_a_step_costs_more_with_more_tokens_and_full_fine_tuning(make_llama):
    model = make_llama(None, layers=2)
    small = predict_step_seconds(model, "sft", batch_size=4, seq_len=32)
    assert predict_step_seconds(model, "sft", batch_size=16, seq_len=32) > small
    assert predict_step_seconds(model, "sft", batch_size=4, seq_len=32, lora=False) > small
    assert predict_step_seconds(model, "dpo", batch_size=4, seq_len=32) > small
    grpo = predict_step_seconds(model, "grpo", batch_size=4, seq_len=32, num_generations=8,
                                max_completion_length=16)
    assert grpo > predict_step_seconds(model, "grpo", batch_size=4, seq_len=32, num_generations=2,
                                       max_completion_length=16)
    with pytest.raises(ValueError, match="one of 'sft', 'dpo', 'grpo'"):
        predict_step_seconds(model, "ppo", batch_size=1, seq_len=1)


def test_say_cost_warns_past_the_long_threshold_and_names_what_to_lower(capsys):
    assert say_cost("the ablations", runs=2, steps=10, step_seconds=0.5, basis="predicted") == 10
    line = capsys.readouterr().out
    assert line.startswith("the ablations: 2 runs x 10 steps at ~0.50 s a step (predicted): about 10 s")
    assert "WARNING" not in line
    seconds = say_cost("the ablations", runs=30, steps=60, step_seconds=4.0, basis="predicted",
                       lower="sweep_steps or sweep_seeds")
    assert seconds == 7200 > LONG_SECONDS
    line = capsys.readouterr().out
    assert line.startswith("WARNING, a long cell.") and "about 2.0 h" in line and "sweep_steps or sweep_seeds" in line


def test_steps_and_durations():
    assert planned_steps(591, 16, 6) == 222 and planned_steps(591, 16, 6, max_steps=40) == 40
    assert [duration(s) for s in (5, 600, 7200)] == ["5 s", "10.0 min", "2.0 h"]


def test_typical_length_counts_chat_and_text_rows(make_tokenizer):
    tok = make_tokenizer(["hello world", "the cat sat"], 300)
    chat = [{"messages": [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "world"}]}]
    text = tok.apply_chat_template(chat[0]["messages"], tokenize=False)
    assert typical_length(tok, chat) == len(tok(text, add_special_tokens=False)["input_ids"]) > 4
    assert typical_length(tok, [{"text": "hello world"}]) == len(tok("hello world")["input_ids"])
    assert typical_length(tok, []) == 0


def test_a_budget_run_on_a_model_it_was_not_sized_for_says_so(capsys):
    """The issue's learner: notebook 02 with only `model` and `dataset` changed keeps the tiny budget's
    ablations (60 runs of 40 steps): apply_budget says the budget was sized for another model, and the
    ablation cell's estimate, from the measured step of the real model on a CPU, is a warning."""
    from helpers.recipes import REAL_MODEL, TINY_BUDGET, apply_budget

    namespace = {name: None for name in TINY_BUDGET["02"]}
    namespace.update(model=REAL_MODEL, dataset="data/real/alpaca_5000.json")
    apply_budget("02", "tiny", namespace)
    out = capsys.readouterr().out
    assert "NOTE: budget 'tiny' sizes its steps, seeds and sweeps for data/tiny-base" in out
    assert namespace["sweep_steps"] == 40
    # 60 ablation runs x 40 steps at the real model's ~4 s a step on 2 CPU cores (BENCHMARKS.md)
    say_cost("the ablations", runs=60, steps=namespace["sweep_steps"], step_seconds=4.0, basis="measured")
    assert capsys.readouterr().out.startswith("WARNING, a long cell.")
    apply_budget("02", "tiny", {name: None for name in TINY_BUDGET["02"]})
    assert "NOTE" not in capsys.readouterr().out
