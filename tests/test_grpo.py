"""Verifiable rewards for the letter-reversal task, the reward-function contract, GRPO's data checks, and the
GRPO config, trainer and run (helpers.runs.train) with their curves."""
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from helpers import grpo
from helpers.data import DatasetError
from helpers.recipes import RECIPES
from helpers.runs import TrainedRun

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


@pytest.mark.parametrize("scale", ["tiny", "real"])
def test_every_grpo_recipe_gives_the_config_exactly_its_knobs(tmp_path, scale):
    recipe = RECIPES["grpo"][scale]
    knobs = grpo.grpo_knobs(recipe, max_steps=3)
    assert set(knobs) == set(grpo.GRPO_KNOBS) and knobs["max_steps"] == 3
    args = grpo.grpo_config(tmp_path, **knobs, seed=1)   # every recipe knob but lora_r, warmup_sft_steps
    assert args.num_generations == recipe["num_generations"] and args.max_steps == 3 and args.seed == 1
    assert args.per_device_train_batch_size == recipe["prompts_per_step"] * recipe["num_generations"]
    with pytest.raises(KeyError, match=r"\['lora_r'\] are not GRPO knobs"):
        grpo.grpo_knobs(recipe, lora_r=4)
    with pytest.raises(TypeError, match="lora_r"):   # the LoraConfig's knob, not the config's
        grpo.grpo_config(tmp_path, **knobs, lora_r=8)


def test_training_curves_number_the_spread_from_the_first_step_of_this_session():
    """After a resume from step 1, reward_log holds steps 2 and 3 only: the spread is numbered from there."""
    log_history = [{"step": s, "reward": 0.5, "frac_reward_zero_std": 0.5, "completions/mean_length": 4.0,
                    "kl": 0.1} for s in (1, 2, 3)]
    run = TrainedRun(trainer=SimpleNamespace(num_generations=2, state=SimpleNamespace(
        global_step=3, log_history=log_history)), seconds=1.0)
    curves = grpo.training_curves(run, [[1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]])
    assert curves["group_spread"] == [(2, 0.25), (3, 0.0)]
    assert curves["completion_length"] == [(1, 4.0), (2, 4.0), (3, 4.0)] and len(curves["kl"]) == 3


def test_train_grpo_returns_the_trained_run_and_its_rewards(tmp_path):
    from helpers.data import load_world
    from helpers.models import load_model
    from helpers.training import standard_lora

    rows = grpo.reversal_prompts(load_world("skill_train")[:8], where="skill_train")
    base, tokenizer = load_model("data/tiny-base")
    log = []
    knobs = grpo.grpo_knobs(RECIPES["grpo"]["tiny"], max_steps=2, prompts_per_step=2, num_generations=2,
                            max_completion_length=8)
    run = grpo.train_grpo(base, tokenizer, rows, [grpo.reversal_partial], output_dir=tmp_path, run_name="rl",
                          reward_log=log, peft_config=standard_lora(r=4), seed=0, **knobs)
    assert isinstance(run, TrainedRun) and run.steps == 2 and run.seconds > 0 and run.resumed_from is None
    assert Path(run.trainer.args.output_dir) == tmp_path / "rl"
    assert [len(r) for r in log] == [4, 4]   # per step: 2 prompts x 2 completions, one reward each
    curves = grpo.training_curves(run, log)
    assert [s for s, _ in curves["reward"]] == [1, 2] == [s for s, _ in curves["group_spread"]]
    for (_, mean), rewards in zip(curves["reward"], log):   # TRL's logged mean is the function's
        assert mean == pytest.approx(sum(rewards) / len(rewards), abs=1e-6)
    # train() leaves the policy with its own forward (not TRL's patch) and in eval mode
    assert "forward" not in run.model.get_base_model().__dict__ and not run.model.training


def test_the_placebo_reward_ignores_the_answer_and_repeats_by_seed():
    from helpers.grpo import checked, placebo_reward
    completions = ["The letters reversed are c b a."] * 200 + ["nonsense"] * 200
    first = checked(placebo_reward(3))(prompts=[None] * 400, completions=completions, letters=["a b c"] * 400)
    again = checked(placebo_reward(3))(prompts=[None] * 400, completions=completions, letters=["a b c"] * 400)
    assert first == again and set(first) == {0.0, 1.0}
    # a coin: about half each, for the right answers and the nonsense alike
    assert 0.35 < sum(first[:200]) / 200 < 0.65 and 0.35 < sum(first[200:]) / 200 < 0.65


def test_a_snapshot_at_step_n_is_the_n_step_run(tmp_path):
    """At a constant learning rate, a run's copy after n steps equals an n-step run of the same settings and
    seed bit for bit (notebook 09 reads its shorter runs from such copies); any other schedule is refused."""
    import copy

    from helpers.data import load_world
    from helpers.models import load_model
    from helpers.runs import Snapshots
    from helpers.training import standard_lora

    rows = grpo.reversal_prompts(load_world("skill_train")[:32], where="skill_train")
    base, tokenizer = load_model("data/tiny-base")
    # letters_present pays the untrained model something, so the updates are not zero
    knobs = grpo.grpo_knobs(RECIPES["grpo"]["tiny"], prompts_per_step=4, num_generations=4,
                            max_completion_length=8)
    snapshots = Snapshots([2, 99])
    longer = grpo.train_grpo(copy.deepcopy(base), tokenizer, rows, [grpo.letters_present],
                             output_dir=tmp_path, run_name="long", peft_config=standard_lora(r=4), seed=1,
                             callbacks=[snapshots], **{**knobs, "max_steps": 3})
    shorter = grpo.train_grpo(copy.deepcopy(base), tokenizer, rows, [grpo.letters_present],
                              output_dir=tmp_path, run_name="short", peft_config=standard_lora(r=4), seed=1,
                              **{**knobs, "max_steps": 2})
    assert set(snapshots.models) == {2}   # step 99 was never reached: no copy
    copy_at_2 = snapshots.models[2]
    lora = {k: v for k, v in shorter.model.state_dict().items() if "lora_B" in k}
    assert lora and any(v.abs().max() > 0 for v in lora.values())   # it learned something
    assert all(torch.equal(v, copy_at_2.state_dict()[k]) for k, v in lora.items())
    assert not all(torch.equal(v, longer.model.state_dict()[k]) for k, v in lora.items())   # step 3 moved on
    assert not copy_at_2.training and "forward" not in copy_at_2.get_base_model().__dict__
    with pytest.raises(ValueError, match="constant learning rate"):
        grpo.train_grpo(copy.deepcopy(base), tokenizer, rows, [grpo.letters_present], output_dir=tmp_path,
                        run_name="decay", peft_config=standard_lora(r=4), seed=1, callbacks=[Snapshots([1])],
                        **{**knobs, "max_steps": 2, "lr_scheduler_type": "linear"})
