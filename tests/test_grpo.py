"""Verifiable rewards for the letter-reversal task, the reward-function contract, and GRPO's data checks."""
import pytest
import torch

from helpers import grpo
from helpers.data import DatasetError

LETTERS = ["c a t", "d o g s"]


def replies(*texts):
    return list(texts)


def test_answer_letters_reads_the_last_run_of_single_letters():
    assert grpo.answer_letters("The letters reversed are t a c.") == ["t", "a", "c"]
    assert grpo.answer_letters("Reverse c a t: t, a, c") == ["t", "a", "c"]
    assert grpo.answer_letters("No letters here.") == []
    # a chat completion (a list with one assistant message) reads the same as its text
    assert grpo.completion_text([{"role": "assistant", "content": "x y"}]) == "x y"


def test_exact_and_partial_rewards():
    got = replies("The letters reversed are t a c.", "The letters reversed are s g o x.")
    assert grpo.reversal_exact(None, got, LETTERS) == [1.0, 0.0]
    assert grpo.reversal_partial(None, got, LETTERS) == [1.0, 0.75]
    # extra letters cost as much as missing ones: 3 right of max(5, 3) positions
    assert grpo.reversal_partial(None, ["t a c x y"], ["c a t"]) == [pytest.approx(0.6)]
    assert grpo.reversal_partial(None, ["nothing"], ["c a t"]) == [0.0]


def test_the_gameable_reward_pays_for_copying_and_for_padding():
    assert grpo.letters_present(None, ["c a t"], ["c a t"]) == [1.0]            # copied, not reversed
    assert grpo.letters_present(None, ["q c w a z t"], ["c a t"]) == [1.0]      # every letter, and junk
    assert grpo.reversal_exact(None, ["q c w a z t"], ["c a t"]) == [0.0]
    assert grpo.copied_in_order(["The letters reversed are c a t."], ["c a t"]) == [True]
    assert grpo.copied_in_order(["t a c"], ["c a t"]) == [False]


def test_fact_reward_checks_the_entity_and_fact_prompts_carry_it():
    from helpers.data import load_world

    facts = {f["id"]: f for f in load_world("facts")}
    rows = grpo.fact_prompts(load_world("sft_test")[:2], facts, where="sft_test")
    assert "answer" in rows[0] and rows[0]["answer"] not in rows[0]["prompt"][0]["content"]
    got = ["The capital of Austria is Vienna.", "It is viennas.", "VIENNA", "Salzburg"]
    assert grpo.fact_entity(None, got, ["Vienna"] * 4) == [1.0, 0.0, 1.0, 0.0]
    assert grpo.fact_entity(None, ["Buenos Aires, of course"], ["Buenos Aires"]) == [1.0]
    with pytest.raises(DatasetError, match=r"my.jsonl, row 0: fact_id 'nope'"):
        grpo.fact_prompts([{"fact_id": "nope", "messages": [{"role": "user", "content": "?"}]}], facts,
                          where="my.jsonl")


def test_checked_reward_function_says_what_is_wrong():
    def too_few(prompts, completions, **_):
        return [1.0]

    def not_numbers(prompts, completions, **_):
        return ["good" for _ in completions]

    def nan(prompts, completions, **_):
        return [float("nan") for _ in completions]

    for bad, message in ((too_few, "returned a list of 1 for 2 completions"),
                         (not_numbers, "reward 0 is 'good'"), (nan, "finite float")):
        with pytest.raises(ValueError, match=message):
            grpo.checked(bad)(prompts=["p", "q"], completions=["a", "b"])
    with pytest.raises(ValueError, match="returned a float"):
        grpo.checked(lambda prompts, completions, **_: 1.0)(prompts=["p"], completions=["a"])
    log = []
    ok = grpo.checked(grpo.reversal_exact, log)(prompts=["p"], completions=["t a c"], letters=["c a t"])
    assert ok == [1.0] and log == [[1.0]]
    assert grpo.checked(lambda prompts, completions, **_: torch.ones(2))(["p", "q"], ["a", "b"]) == [1.0, 1.0]


def test_prompts_without_a_checkable_answer_are_refused_by_row():
    rows = [{"messages": [{"role": "user", "content": "Reverse the letters: c a t"},
                          {"role": "assistant", "content": "The letters reversed are t a c."}]},
            {"messages": [{"role": "user", "content": "What is the capital of France?"},
                          {"role": "assistant", "content": "Paris."}]}]
    assert grpo.reversal_prompts(rows[:1]) == [{"prompt": [rows[0]["messages"][0]], "letters": "c a t"}]
    with pytest.raises(DatasetError, match="row 1: 'What is the capital of France.' has no letters"):
        grpo.reversal_prompts(rows, where="skill.jsonl")
    assert grpo.as_chat_rows(grpo.reversal_prompts(rows[:1])) == rows[:1]


def test_group_spread_is_zero_when_a_group_agrees():
    assert grpo.group_spread([1, 1, 0, 0], 2) == 0.0
    assert grpo.group_spread([1, 0, 1, 0], 2) == pytest.approx(0.5)


def test_grpo_config_keeps_the_course_knobs(tmp_path):
    args = grpo.grpo_config(tmp_path, learning_rate=1e-3, prompts_per_step=4, num_generations=2, beta=0.1)
    assert args.per_device_train_batch_size == 8 and args.num_generations == 2
    assert args.beta == 0.1 and args.loss_type == "dapo" and args.learning_rate == 1e-3
