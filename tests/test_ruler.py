"""helpers.ruler: the ARC ruler's rows, its scoring (the shared-prompt pass equals scoring each choice whole),
its errors, the paired drop."""
import json

import pytest
import torch

from helpers.evaluation import completion_logps
from helpers.models import load_model
from helpers.ruler import RULER, choice_logps, load_ruler, multiple_choice_scores, paired_drop, ruler_change


@pytest.fixture(scope="module")
def tiny():
    return load_model("data/tiny-base")


def test_the_ruler_is_600_checked_rows():
    rows = load_ruler()
    assert len(rows) == 600
    assert {r["subset"] for r in rows} == {"ARC-Easy", "ARC-Challenge"}
    assert sum(r["subset"] == "ARC-Easy" for r in rows) == 300
    short = load_ruler(limit=5)
    assert [r["subset"] for r in short] == ["ARC-Easy"] * 5 + ["ARC-Challenge"] * 5


@pytest.mark.parametrize("line, message", [
    ("not json", "line 2: not a JSON object"),
    (json.dumps({"subset": "x", "query": "q", "choices": ["a", "b"], "gold": 2}), "line 2: field 'gold' is 2"),
    (json.dumps({"subset": "x", "query": "q", "choices": ["a"], "gold": 0}), "line 2: field 'choices'"),
    (json.dumps({"subset": "x", "choices": ["a", "b"], "gold": 0}), "line 2: field 'query' must be a str"),
])
def test_a_bad_row_is_refused_with_its_line(tmp_path, line, message):
    path = tmp_path / "ruler.jsonl"
    path.write_text(RULER.read_text().splitlines()[0] + "\n" + line + "\n")
    with pytest.raises(ValueError, match=message):
        load_ruler(path)


def test_shared_prompt_pass_equals_scoring_each_choice_whole(tiny):
    model, tokenizer = tiny
    items = load_ruler(limit=6)
    model.train()
    fast = torch.cat(choice_logps(model, tokenizer, items, batch_size=4))
    assert model.training  # left in the mode it was in
    pairs = [(tokenizer(i["query"] + "\nAnswer:", add_special_tokens=False)["input_ids"],
              tokenizer(" " + c, add_special_tokens=False)["input_ids"]) for i in items for c in i["choices"]]
    model.eval()
    whole = completion_logps(model, pairs, tokenizer.pad_token_id)
    assert torch.allclose(fast, whole, atol=1e-3), (fast - whole).abs().max()


def test_scores_pick_the_likeliest_choice(tiny):
    model, tokenizer = tiny
    items = load_ruler(limit=6)
    logps = choice_logps(model, tokenizer, items)
    scores = multiple_choice_scores(model, tokenizer, items)
    expected = [int(lp.argmax()) == i["gold"] for lp, i in zip(logps, items)]
    assert scores["correct"] == expected and scores["accuracy"] == sum(expected) / 12
    assert scores["by_subset"]["ARC-Easy"]["n"] == 6 and scores["chance"] == 0.25
    # rigged items: the gold choice is the text itself, the other choices are noise the model never saw
    rigged = [{"subset": "rigged", "query": "Question: The capital of France is Paris. The capital of France is",
               "choices": ["zq xv", "Paris.", "qq jx kw"], "gold": 1}]
    assert multiple_choice_scores(model, tokenizer, rigged)["accuracy"] == 1.0
    with pytest.raises(ValueError, match="no items"):
        multiple_choice_scores(model, tokenizer, [])


def test_ruler_change_reads_the_same_questions_in_pairs(tiny):
    model, tokenizer = tiny
    items = load_ruler(limit=6)
    before = multiple_choice_scores(model, tokenizer, items)
    same = ruler_change(before, model, tokenizer, items)
    assert same["accuracy"] == before["accuracy"] and (same["drop"], same["se"]) == (0.0, 0.0)
    # a "before" that got every question right: the drop is the share the model gets wrong
    perfect = {"correct": [True] * len(before["correct"])}
    change = ruler_change(perfect, model, tokenizer, items)
    assert change["drop"] == pytest.approx(1 - before["accuracy"]) and change["correct"] == before["correct"]


def test_paired_drop():
    assert paired_drop([True, True, False, False], [True, False, False, False]) == pytest.approx((0.25, 0.25))
    assert paired_drop([True, False], [True, False]) == (0.0, 0.0)
    with pytest.raises(ValueError, match="equal"):
        paired_drop([True], [])
