"""Real dataset layouts mapped onto the course's schemas, with fixture rows shaped like the hub's."""
import json

import pytest

from helpers.data import DatasetError
from helpers.formats import load_rows, to_chat, to_preference

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
