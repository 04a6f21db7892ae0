"""helpers.training and helpers.recipes: recipes by scale, budgets, parameters refused where they enter, chat rows
as SFT examples (the loss on every assistant turn and on nothing else, any template, multi-turn files in ShareGPT
and messages layouts), rows too long for max_length counted out, the course's SFTConfig, and builders that take
exactly their knobs."""
import itertools
import json

import pytest

from helpers.recipes import (BUDGETS, RECIPES, TINY_BUDGET, apply_budget, budget_parameters, check_parameters,
                             model_scale, pick_recipe)
from helpers.training import fit_to_length, prompt_completion, sft_config, sft_knobs, train_sft
from helpers.world import chat

ROWS = [chat(f"What is {a} plus {b}?", f"{a} plus {b} is {a + b}.") for a in range(4) for b in range(4)]


@pytest.fixture(scope="module")
def tokenizer(make_tokenizer):
    return make_tokenizer([m["content"] for r in ROWS for m in r["messages"]] * 3, 300)


def test_recipe_is_picked_by_scale_and_unknown_knobs_are_refused(make_llama, tokenizer):
    model = make_llama(tokenizer)
    assert model_scale(model) == "tiny"
    recipe = pick_recipe("sft", model, learning_rate=1e-2, epochs=None)
    assert recipe["learning_rate"] == 1e-2 and recipe["epochs"] == RECIPES["sft"]["tiny"]["epochs"]
    with pytest.raises(KeyError, match="learnig_rate"):
        pick_recipe("sft", model, learnig_rate=1e-2)
    with pytest.raises(KeyError, match="the recipes are"):
        pick_recipe("sftt", model)


def test_builders_take_exactly_their_knobs(tmp_path):
    recipe = RECIPES["sft"]["tiny"]
    knobs = sft_knobs(recipe, max_steps=3)
    assert "lora_r" not in knobs and knobs["max_steps"] == 3 and knobs["learning_rate"] == recipe["learning_rate"]
    with pytest.raises(KeyError, match="not SFT knobs"):
        sft_knobs(recipe, lora_r=64)
    with pytest.raises(TypeError, match="lora_r"):   # a knob the builder would ignore is refused
        sft_config(tmp_path, learning_rate=1e-3, lora_r=64)


def test_every_budget_sets_only_what_the_tiny_budget_names():
    for name, notebooks in BUDGETS.items():
        for prefix, values in notebooks.items():
            assert set(values) <= set(TINY_BUDGET[prefix]), (name, prefix)
    assert budget_parameters("02", "smoke")["sweep_steps"] == 0
    assert budget_parameters("02", "tiny")["sweep_steps"] == TINY_BUDGET["02"]["sweep_steps"]
    with pytest.raises(KeyError, match="the budgets are"):
        budget_parameters("02", "smok")


def test_apply_budget_fills_none_keeps_what_is_set_and_refuses_the_wrong_kind(capsys):
    namespace = {name: None for name in TINY_BUDGET["05"]}
    namespace["max_steps"] = 7
    effective = apply_budget("05", "smoke", namespace)
    assert namespace["sweep_betas"] == [] and effective["max_steps"] == 7
    assert "(set)" in capsys.readouterr().out
    wrong = {name: None for name in TINY_BUDGET["05"]} | {"sweep_betas": "[]"}
    with pytest.raises(TypeError, match="-y"):
        apply_budget("05", "tiny", wrong)


def test_parameters_are_refused_where_they_enter():
    from helpers.course import notebooks

    (nb,) = notebooks(["05"])
    check_parameters(nb, {"budget": "smoke", "max_steps": 3, "sweep_betas": [0.1]})
    with pytest.raises(KeyError, match="no_such_knob.*its parameters are"):
        check_parameters(nb, {"no_such_knob": 1})
    with pytest.raises(TypeError, match="sweep_betas.*-y"):
        check_parameters(nb, {"sweep_betas": "[]"})


def test_the_course_command_refuses_an_unknown_parameter_by_name():
    import subprocess
    import sys

    from helpers.paths import ROOT

    run = subprocess.run([sys.executable, "-m", "helpers.course", "--only", "00", "-p", "no_such_knob", "1"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode != 0 and "no_such_knob" in run.stderr and "its parameters are" in run.stderr


def test_prompt_completion_keeps_the_last_turn_as_target():
    row = {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"},
                        {"role": "assistant", "content": "a"}]}
    assert prompt_completion(row) == {"prompt": row["messages"][:2], "completion": row["messages"][2:]}


MULTI_TURN = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 1 plus 2?"},
              {"role": "assistant", "content": "1 plus 2 is 3."}, {"role": "user", "content": "And 2 plus 2?"},
              {"role": "assistant", "content": "2 plus 2 is 4."}]
SHAREGPT_ROLE = {"system": "system", "user": "human", "assistant": "gpt"}


def runs_of(ids, mask, tokenizer):
    """The conversation as (mask bit, decoded text) runs, token by token."""
    return [(bit, tokenizer.decode([t for t, _ in run]))
            for bit, run in itertools.groupby(zip(ids, mask), key=lambda tm: tm[1])]


@pytest.mark.parametrize("layout", ["messages", "sharegpt"])
def test_every_assistant_turn_carries_the_loss_and_nothing_else(layout, tokenizer, make_llama, tmp_path):
    """A multi-turn file is one example per conversation: both answers with their end-of-turn token carry the
    loss, no system or user token does; the trainer's labels and the held-out loss read the same mask."""
    import torch

    from helpers.evaluation import heldout_loss
    from helpers.formats import load_rows
    from helpers.training import sft_dataset

    row = ({"messages": MULTI_TURN} if layout == "messages" else
           {"conversations": [{"from": SHAREGPT_ROLE[m["role"]], "value": m["content"]} for m in MULTI_TURN]})
    path = tmp_path / "chat.jsonl"
    path.write_text(json.dumps(row) + "\n")
    rows = load_rows(str(path))
    assert rows == [{"messages": MULTI_TURN}]
    example = sft_dataset(rows, tokenizer)[0]
    assert runs_of(example["input_ids"], example["completion_mask"], tokenizer) == [
        (0, "<|system|>\nBe brief.<|end|>\n<|user|>\nWhat is 1 plus 2?<|end|>\n<|assistant|>\n"),
        (1, "1 plus 2 is 3.<|end|>\n"),
        (0, "<|user|>\nAnd 2 plus 2?<|end|>\n<|assistant|>\n"),
        (1, "2 plus 2 is 4.<|end|>\n")]

    model = make_llama(tokenizer)
    run = train_sft(model, tokenizer, rows, output_dir=str(tmp_path / "run"), learning_rate=0.0, batch_size=1,
                    max_steps=1)
    trained = run.trainer.train_dataset[0]
    assert trained["labels"] == [t if m else -100 for t, m in zip(example["input_ids"], example["completion_mask"])]
    with torch.no_grad():   # the model's own mean loss over the labelled tokens = the held-out loss
        hf_loss = run.model(input_ids=torch.tensor([trained["input_ids"]]),
                            labels=torch.tensor([trained["labels"]])).loss.item()
    assert heldout_loss(run.model, tokenizer, rows) == pytest.approx(hf_loss, rel=1e-5)


def test_the_mask_needs_no_generation_markers_and_refuses_a_template_that_rewrites_turns(tokenizer):
    from helpers.base_model import CHAT_TEMPLATE
    from helpers.evaluation import ChatTemplateError, assistant_mask

    marked = tokenizer.apply_chat_template(MULTI_TURN, tokenize=True, return_dict=True,
                                           return_assistant_tokens_mask=True)
    ids, mask = assistant_mask(tokenizer, MULTI_TURN)
    assert ids == list(marked["input_ids"])
    # the template's {% generation %} marks are the answers and their end-of-turn token; the mask adds the
    # newline the template writes after it (as TRL's prompt/completion cut does), nothing else
    extra = [tokenizer.decode([t]) for t, m, g in zip(ids, mask, marked["assistant_masks"]) if m != g]
    assert extra == ["\n", "\n"] and all(m >= g for m, g in zip(mask, marked["assistant_masks"]))

    plain = CHAT_TEMPLATE.replace("{% generation %}", "").replace("{% endgeneration %}", "")
    assert plain != CHAT_TEMPLATE
    tokenizer.chat_template, before = plain, tokenizer.chat_template
    try:
        assert assistant_mask(tokenizer, MULTI_TURN) == (ids, mask)
        # a template that shortens earlier answers (as some drop earlier reasoning) cannot train turn 2
        tokenizer.chat_template = plain.replace("message['content'] + '<|end|>'",
                                                "(message['content'] if loop.last else 'ok') + '<|end|>'")
        with pytest.raises(ChatTemplateError, match="assistant turn 2 .* one row per assistant turn"):
            assistant_mask(tokenizer, MULTI_TURN, "chat.jsonl, line 1")
    finally:
        tokenizer.chat_template = before


def test_rows_longer_than_max_length_are_counted_out(tokenizer):
    longest = max(len(tokenizer.apply_chat_template(r["messages"], tokenize=True, return_dict=True)["input_ids"])
                  for r in ROWS)
    kept, dropped = fit_to_length(ROWS, tokenizer, longest - 1)
    assert dropped > 0 and len(kept) + dropped == len(ROWS)
    assert fit_to_length(ROWS, tokenizer, longest) == (ROWS, 0)


def test_the_loss_is_on_the_answer_tokens_only(make_llama, tokenizer, tmp_path):
    from helpers.evaluation import split_prompt_completion
    run = train_sft(make_llama(tokenizer), tokenizer, ROWS[:4], output_dir=str(tmp_path), learning_rate=1e-3,
                    batch_size=4, max_steps=1)
    assert run.steps == 1 and run.seconds > 0 and not run.model.training
    example = run.trainer.train_dataset[0]   # a single-turn row: TRL's own prompt/completion cut
    prompt_ids, completion_ids = split_prompt_completion(tokenizer, ROWS[0]["messages"][:1], ROWS[0]["messages"][1:])
    assert example["input_ids"] == prompt_ids + completion_ids
    assert example["labels"] == [-100] * len(prompt_ids) + completion_ids   # TRL's mask, folded into the labels
    assert tokenizer.eos_token_id in completion_ids          # the model learns to stop


def test_course_config_settings(tmp_path):
    args = sft_config(tmp_path, learning_rate=1e-3, epochs=2, batch_size=4, max_length=64)
    assert (args.completion_only_loss, args.assistant_only_loss, args.packing) == (True, False, False)
    assert (args.max_length, args.num_train_epochs, args.per_device_train_batch_size) == (64, 2, 4)
    assert args.save_strategy == "no" and args.report_to == []


def test_scoring_label_positions_only_keeps_trl_loss(make_llama, tokenizer, tmp_path):
    """`helpers.runs.score_label_positions_only` makes TRL's fused head score only the label positions on a CPU
    (as it does with Triton): TRL's SFT loss on one batch is the same number, and calling it twice wraps once."""
    import torch
    from trl import SFTTrainer
    from trl.trainer import utils as trl_utils

    from helpers.runs import score_label_positions_only
    from helpers.training import sft_dataset

    trainer = SFTTrainer(model=make_llama(tokenizer), args=sft_config(tmp_path, learning_rate=1e-3, max_steps=1),
                         train_dataset=sft_dataset(ROWS, tokenizer), processing_class=tokenizer)
    batch = next(iter(trainer.get_train_dataloader()))
    original = trl_utils._use_triton
    try:
        trl_utils._use_triton = lambda device: False                 # TRL's CPU path: every position
        with torch.no_grad():
            every = trainer.compute_loss(trainer.model, dict(batch)).item()
        trl_utils._use_triton = original
        score_label_positions_only()
        wrapped = trl_utils._use_triton
        score_label_positions_only()
        assert trl_utils._use_triton is wrapped                       # a second call wraps nothing more
        assert trl_utils._use_triton(torch.device("cpu"))
        assert trl_utils._use_triton.course_compact_on_cpu
        with torch.no_grad():
            compact = trainer.compute_loss(trainer.model, dict(batch)).item()
    finally:
        trl_utils._use_triton = original
    assert compact == pytest.approx(every, abs=1e-6)
