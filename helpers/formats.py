"""Real datasets onto the course's two schemas, so a notebook's `dataset` parameter can be a hub id.

Chat (SFT) rows accepted, mapped onto {"messages": [...]}:
  - {"messages": [{"role", "content"}, ...]}                       (TRL conversational, the tiny world)
  - {"conversations": [{"from": "human"|"gpt", "value"}, ...]}    (ShareGPT)
  - {"instruction", "input"?, "output"}                           (Alpaca)
  - {"prompt", "completion"} as strings or message lists          (TRL prompt-completion)
Preference (DPO) rows accepted, mapped onto {"prompt", "chosen", "rejected"} as message lists:
  - prompt/chosen/rejected as strings, or as message lists; chosen/rejected may repeat the
    prompt's turns (UltraFeedback-binarized style), which are then cut off.
"""
from __future__ import annotations

from pathlib import Path

from helpers.data import DatasetError, check_chat_row, check_messages, check_preference_row, read_jsonl
from helpers.paths import resolve

SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "system": "system"}


def _as_messages(value, role: str, where: str, field: str) -> list[dict]:
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    check_messages(value, where, field)
    return [{"role": m["role"], "content": m["content"]} for m in value]


def to_chat(row: dict, where: str = "row") -> dict:
    """One row of a common instruction format as {"messages": [...]}; DatasetError names the problem."""
    if "messages" in row:
        messages = _as_messages(row["messages"], "user", where, "messages")
    elif "conversations" in row:
        turns = row["conversations"]
        if not isinstance(turns, list):
            raise DatasetError(f"{where}: field 'conversations' must be a list of {{'from', 'value'}} turns")
        messages = []
        for i, t in enumerate(turns):
            if not isinstance(t, dict) or t.get("from") not in SHAREGPT_ROLES or not isinstance(t.get("value"), str):
                raise DatasetError(f"{where}: field 'conversations[{i}]' needs 'from' in {sorted(SHAREGPT_ROLES)} "
                                   "and a string 'value'")
            messages.append({"role": SHAREGPT_ROLES[t["from"]], "content": t["value"]})
    elif "instruction" in row and "output" in row:
        for field in ("instruction", "output"):
            if not isinstance(row[field], str):
                raise DatasetError(f"{where}: field '{field}' must be a string")
        user = row["instruction"] + (f"\n\n{row['input']}" if row.get("input") else "")
        messages = [{"role": "user", "content": user}, {"role": "assistant", "content": row["output"]}]
    elif "prompt" in row and "completion" in row:
        messages = (_as_messages(row["prompt"], "user", where, "prompt")
                    + _as_messages(row["completion"], "assistant", where, "completion"))
    else:
        raise DatasetError(f"{where}: unknown chat format with fields {sorted(row)}; expected 'messages', "
                           "'conversations', 'instruction'+'output' or 'prompt'+'completion'")
    out = {"messages": messages}
    check_chat_row(out, where)
    return out


def to_preference(row: dict, where: str = "row") -> dict:
    """One preference row as {"prompt", "chosen", "rejected"} message lists."""
    for field in ("chosen", "rejected"):
        if field not in row:
            raise DatasetError(f"{where}: missing field '{field}' (preference rows need prompt, chosen, rejected)")
    chosen = _as_messages(row["chosen"], "assistant", where, "chosen")
    rejected = _as_messages(row["rejected"], "assistant", where, "rejected")
    if "prompt" in row:
        prompt = _as_messages(row["prompt"], "user", where, "prompt")
    else:  # an implicit prompt: the turns chosen and rejected share before the last one
        prompt = chosen[:-1]
        if rejected[:-1] != prompt or not prompt:
            raise DatasetError(f"{where}: missing field 'prompt', and chosen/rejected do not share a prompt to cut")
    for name, answer in (("chosen", chosen), ("rejected", rejected)):
        if answer[: len(prompt)] == prompt and len(answer) > len(prompt):
            answer[:] = answer[len(prompt):]
    out = {"prompt": prompt, "chosen": chosen, "rejected": rejected}
    check_preference_row(out, where)
    return out


def load_rows(dataset: str, split: str = "train", kind: str = "chat", limit: int | None = None) -> list[dict]:
    """Rows of a local JSON/JSONL file or a hub dataset, mapped onto the course schema.

    kind: "chat" or "preference". A local file's errors name its line; a hub dataset's name its row.
    """
    convert = {"chat": to_chat, "preference": to_preference}[kind]
    path = Path(resolve(dataset))
    if path.exists():
        if path.suffix == ".json":
            import json
            raw = json.loads(path.read_text(encoding="utf-8"))
            items = [(f"{path}, item {i}", r) for i, r in enumerate(raw, start=1)]
        else:
            items = [(f"{path}, line {line}", r) for line, r in read_jsonl(path, with_lines=True)]
    else:
        from datasets import load_dataset  # a hub id: only reached online (Colab)
        data = load_dataset(dataset, split=split)
        items = [(f"{dataset}[{split}], row {i}", r) for i, r in enumerate(data)]
    if limit:
        items = items[:limit]
    return [convert(r, where) for where, r in items]
