"""helpers.training: recipes by scale, chat rows as prompt/completion (loss on the answer only, any template),
rows too long for max_length counted out, and the course's SFTConfig."""
import pytest

from helpers.training import (SFT_RECIPES, fit_to_length, model_scale, pick_recipe, prompt_completion, sft_config,
                              train_sft)
from helpers.world import chat

ROWS = [chat(f"What is {a} plus {b}?", f"{a} plus {b} is {a + b}.") for a in range(4) for b in range(4)]


@pytest.fixture(scope="module")
def tokenizer(make_tokenizer):
    return make_tokenizer([m["content"] for r in ROWS for m in r["messages"]] * 3, 300)


def test_recipe_is_picked_by_scale_and_unknown_knobs_are_refused(make_llama, tokenizer):
    model = make_llama(tokenizer)
    assert model_scale(model) == "tiny"
    recipe = pick_recipe(SFT_RECIPES, model, learning_rate=1e-2, epochs=None)
    assert recipe["learning_rate"] == 1e-2 and recipe["epochs"] == SFT_RECIPES["tiny"]["epochs"]
    with pytest.raises(KeyError, match="learnig_rate"):
        pick_recipe(SFT_RECIPES, model, learnig_rate=1e-2)


def test_prompt_completion_keeps_the_last_turn_as_target():
    row = {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"},
                        {"role": "assistant", "content": "a"}]}
    assert prompt_completion(row) == {"prompt": row["messages"][:2], "completion": row["messages"][2:]}


def test_rows_longer_than_max_length_are_counted_out(tokenizer):
    longest = max(len(tokenizer.apply_chat_template(r["messages"], tokenize=True, return_dict=True)["input_ids"])
                  for r in ROWS)
    kept, dropped = fit_to_length(ROWS, tokenizer, longest - 1)
    assert dropped > 0 and len(kept) + dropped == len(ROWS)
    assert fit_to_length(ROWS, tokenizer, longest) == (ROWS, 0)


def test_the_loss_is_on_the_answer_tokens_only(make_llama, tokenizer, tmp_path):
    from helpers.evaluation import split_prompt_completion
    trainer = train_sft(make_llama(tokenizer), tokenizer, ROWS[:4], output_dir=str(tmp_path), learning_rate=1e-3,
                        batch_size=4, max_steps=1)
    example = trainer.train_dataset[0]
    prompt_ids, completion_ids = split_prompt_completion(tokenizer, ROWS[0]["messages"][:1], ROWS[0]["messages"][1:])
    assert example["input_ids"] == prompt_ids + completion_ids
    assert example["labels"] == [-100] * len(prompt_ids) + completion_ids   # TRL's mask, folded into the labels
    assert tokenizer.eos_token_id in completion_ids          # the model learns to stop


def test_course_config_settings(tmp_path):
    args = sft_config(tmp_path, learning_rate=1e-3, epochs=2, batch_size=4, max_length=64, lora_r=8)
    assert (args.completion_only_loss, args.assistant_only_loss, args.packing) == (True, False, False)
    assert (args.max_length, args.num_train_epochs, args.per_device_train_batch_size) == (64, 2, 4)
    assert args.save_strategy == "no" and args.report_to == []
