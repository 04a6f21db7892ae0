"""Real dataset layouts mapped onto the course's schemas, with fixture rows shaped like the hub's."""
import json

import pytest

from helpers.data import DatasetError
from helpers.formats import is_world_dataset, load_rows, split_rows, to_chat, to_preference

USER, ASSISTANT = {"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue."}


@pytest.mark.parametrize("row", [
    {"messages": [USER, ASSISTANT]},                                                     # TRL / tiny world
    {"conversations": [{"from": "human", "value": "Name a colour."}, {"from": "gpt", "value": "Blue."}]},  # ShareGPT
    {"instruction": "Name a colour.", "input": "", "output": "Blue."},                   # Alpaca
    {"prompt": "Name a colour.", "completion": "Blue."},                                # prompt-completion
    {"prompt": [USER], "completion": [ASSISTANT]},                                      # conversational p-c
])
def test_instruction_formats_map_onto_messages(row):
    assert to_chat(row) == {"messages": [USER, ASSISTANT]}


def test_alpaca_input_is_appended_to_the_instruction():
    row = {"instruction": "Translate.", "input": "chat", "output": "cat"}
    assert to_chat(row)["messages"][0]["content"] == "Translate.\n\nchat"


def test_unknown_format_lists_what_is_accepted():
    with pytest.raises(DatasetError, match="expected 'messages', 'conversations'"):
        to_chat({"question": "q", "answer": "a"}, "file.jsonl, line 7")


PREF = {"prompt": [USER], "chosen": [ASSISTANT], "rejected": [{"role": "assistant", "content": "Seven."}]}


@pytest.mark.parametrize("row", [
    PREF,
    {"prompt": "Name a colour.", "chosen": "Blue.", "rejected": "Seven."},                            # strings
    {"prompt": "Name a colour.", "chosen": [USER, ASSISTANT],                                         # UltraFeedback
     "rejected": [USER, {"role": "assistant", "content": "Seven."}]},
    {"chosen": [USER, ASSISTANT], "rejected": [USER, {"role": "assistant", "content": "Seven."}]},    # implicit prompt
])
def test_preference_formats_map_onto_prompt_chosen_rejected(row):
    assert to_preference(row) == PREF


def test_local_jsonl_errors_name_the_line(tmp_path):
    path = tmp_path / "alpaca.jsonl"
    rows = [{"instruction": "a", "output": "b"}, {"instruction": "c", "output": 3}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(DatasetError, match=r"alpaca.jsonl, line 2: field 'output' must be a string"):
        load_rows(str(path))


def test_local_json_and_limit(tmp_path):
    path = tmp_path / "prefs.json"
    path.write_text(json.dumps([{"prompt": "p", "chosen": "a", "rejected": "b"}] * 5))
    rows = load_rows(str(path), kind="preference", limit=2)
    assert len(rows) == 2 and rows[0]["chosen"] == [{"role": "assistant", "content": "a"}]


def test_tiny_world_file_by_repository_relative_path():
    assert len(load_rows("data/world/sft_val.jsonl")) == 29


HH = {"chosen": "\n\nHuman: Name a colour.\n\nAssistant: Blue.",
      "rejected": "\n\nHuman: Name a colour.\n\nAssistant: Seven."}


def test_anthropic_hh_transcripts_are_split_into_prompt_and_answers():
    assert to_preference(HH) == PREF
    two_turns = {k: "\n\nHuman: Hi.\n\nAssistant: Hello!" + v for k, v in HH.items()}
    row = to_preference(two_turns)
    assert [m["role"] for m in row["prompt"]] == ["user", "assistant", "user"] and row["chosen"] == PREF["chosen"]


def test_transcripts_that_do_not_share_a_prompt_name_the_row():
    bad = {"chosen": HH["chosen"], "rejected": "\n\nHuman: Something else.\n\nAssistant: Seven."}
    with pytest.raises(DatasetError, match="hh.jsonl, line 3: .*do not share"):
        to_preference(bad, "hh.jsonl, line 3")
    with pytest.raises(DatasetError, match="not a transcript"):
        to_preference({"chosen": "Blue.", "rejected": "Seven."}, "row 1")


def test_gzipped_jsonl_with_a_row_limit(tmp_path):
    import gzip
    path = tmp_path / "prefs.jsonl.gz"
    with gzip.open(path, "wt") as f:
        f.write("\n".join(json.dumps(HH) for _ in range(5)) + "\n")
    assert load_rows(str(path), kind="preference", limit=3) == [PREF] * 3


def test_hub_split_names_are_matched_and_a_missing_split_lists_the_real_ones(monkeypatch):
    import datasets
    monkeypatch.setattr(datasets, "get_dataset_split_names", lambda name: ["train_prefs", "test_prefs"])
    monkeypatch.setattr(datasets, "load_dataset", lambda name, split: [dict(PREF, split=split)] * 2)
    rows = load_rows("someone/binarized", split="test", kind="preference")
    assert len(rows) == 2 and rows[0]["chosen"] == PREF["chosen"]
    with pytest.raises(DatasetError, match=r"no split 'eval'.*\['train_prefs', 'test_prefs'\]"):
        load_rows("someone/binarized", split="eval", kind="preference")


def test_split_rows_is_seeded_and_refuses_impossible_sizes():
    rows = [{"i": i} for i in range(10)]
    train, held_out = split_rows(rows, 3, seed=1)
    assert len(train) == 7 and len(held_out) == 3 and split_rows(rows, 3, seed=1) == (train, held_out)
    assert sorted(r["i"] for r in train + held_out) == list(range(10))
    with pytest.raises(ValueError, match="cannot hold out 10 of 10"):
        split_rows(rows, 10)


def test_world_datasets_are_recognised():
    assert is_world_dataset("data/world/sft_train.jsonl")
    assert not is_world_dataset("data/real/alpaca_5000.json")


def test_a_missing_local_file_is_named_not_looked_up_on_the_hub():
    with pytest.raises(DatasetError, match="no such file"):
        load_rows("../data/real/no_such_file.json")
