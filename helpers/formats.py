"""Real datasets onto the course's two schemas, so a notebook's `dataset` parameter can be any common layout.

Chat (SFT) rows accepted, mapped onto {"messages": [...]}:
  - {"messages": [{"role", "content"}, ...]}                       (TRL conversational, the tiny world)
  - {"conversations": [{"from": "human"|"gpt", "value"}, ...]}    (ShareGPT)
  - {"instruction", "input"?, "output"}                           (Alpaca)
  - {"prompt", "completion"} as strings or message lists          (TRL prompt-completion)
Preference (DPO) rows accepted, mapped onto {"prompt", "chosen", "rejected"} as message lists:
  - prompt/chosen/rejected as strings, or as message lists; chosen/rejected may repeat the
    prompt's turns (UltraFeedback-binarized style), which are then cut off;
  - chosen/rejected as whole transcripts with no prompt ("\\n\\nHuman: ...\\n\\nAssistant: ...",
    Anthropic HH): the shared beginning is the prompt, the last assistant turns are the answers.
Files: .json (a list), .jsonl, .jsonl.gz; or a hub id (online), whose split names are matched
("train" finds "train_sft"/"train_prefs", "test" finds "test_sft"/"test_prefs"/"validation").
"""
from __future__ import annotations

import json
import random
import re
from pathlib import Path

from helpers.data import DatasetError, check_chat_row, check_messages, check_preference_row, read_jsonl
from helpers.paths import ROOT, WORLD_DIR, resolve

SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "system": "system"}
HH_TURN = re.compile(r"\n\n(Human|Assistant): ")
LOCAL_SUFFIXES = (".json", ".jsonl", ".jsonl.gz", ".gz")  # a name ending so is a file, never a hub id
SPLIT_ALIASES = {"train": ["train_sft", "train_prefs", "train_gen"], "test": ["test_sft", "test_prefs", "validation",
                                                                             "valid", "test_gen"]}


def _as_messages(value, role: str, where: str, field: str) -> list[dict]:
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    check_messages(value, where, field)
    return [{"role": m["role"], "content": m["content"]} for m in value]


def parse_transcript(text: str, where: str, field: str) -> list[dict]:
    """'\\n\\nHuman: hi\\n\\nAssistant: hello' -> user/assistant messages (Anthropic HH's layout)."""
    parts = HH_TURN.split(text)
    if len(parts) < 3 or parts[0].strip():
        raise DatasetError(f"{where}: field '{field}' is not a transcript of '\\n\\nHuman: ' / '\\n\\nAssistant: ' turns")
    return [{"role": "user" if who == "Human" else "assistant", "content": said.strip()}
            for who, said in zip(parts[1::2], parts[2::2])]


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


def _answer(value, prompt: list[dict], where: str, field: str) -> list[dict]:
    """chosen/rejected as messages, the prompt's turns cut off when it repeats them."""
    if isinstance(value, str) and HH_TURN.match(value) and prompt:
        value = parse_transcript(value, where, field)
    answer = _as_messages(value, "assistant", where, field)
    if answer[:len(prompt)] == prompt and len(answer) > len(prompt):
        answer = answer[len(prompt):]
    return answer


def to_preference(row: dict, where: str = "row") -> dict:
    """One preference row as {"prompt", "chosen", "rejected"} message lists; DatasetError names row and field."""
    for field in ("chosen", "rejected"):
        if field not in row:
            raise DatasetError(f"{where}: missing field '{field}' (preference rows need chosen and rejected, "
                               "and a prompt unless both are whole transcripts)")
    if "prompt" in row:
        prompt = _as_messages(row["prompt"], "user", where, "prompt")
    else:  # an implicit prompt: the turns chosen and rejected share before their last one (HH, UltraFeedback)
        sides = {}
        for field in ("chosen", "rejected"):
            value = row[field]
            sides[field] = (parse_transcript(value, where, field) if isinstance(value, str)
                            else _as_messages(value, "assistant", where, field))
        prompt = sides["chosen"][:-1]
        if sides["rejected"][:-1] != prompt or not prompt:
            raise DatasetError(f"{where}: no field 'prompt', and 'chosen'/'rejected' do not share every turn but "
                               "their last, so the prompt cannot be cut from them")
    out = {"prompt": prompt, "chosen": _answer(row["chosen"], prompt, where, "chosen"),
           "rejected": _answer(row["rejected"], prompt, where, "rejected")}
    check_preference_row(out, where)
    for field in ("chosen", "rejected"):
        if out[field][-1]["role"] != "assistant":
            raise DatasetError(f"{where}: field '{field}' must end with an assistant turn")
    return out


def _hub_split(dataset: str, split: str):
    from datasets import get_dataset_split_names, load_dataset  # a hub id: only reached online (Colab)

    names = get_dataset_split_names(dataset)
    if split not in names:
        match = next((s for s in SPLIT_ALIASES.get(split, []) if s in names), None)
        if match is None:
            raise DatasetError(f"{dataset} has no split {split!r} (nor {SPLIT_ALIASES.get(split, [])}); its splits "
                               f"are {names}. Pass split=... with one of them.")
        split = match
    return split, load_dataset(dataset, split=split)


def load_rows(dataset: str, split: str = "train", kind: str = "chat", limit: int | None = None) -> list[dict]:
    """Rows of a local file (.json, .jsonl, .jsonl.gz) or a hub dataset, mapped onto the course schema.

    kind: "chat" or "preference". limit: read at most this many rows (None: all). A local file's errors
    name its line; a hub dataset's name its split and row. A local file has no splits: `split` is ignored.
    """
    if kind not in ("chat", "preference"):
        raise ValueError(f"kind must be 'chat' or 'preference', got {kind!r}")
    convert = {"chat": to_chat, "preference": to_preference}[kind]
    path = Path(resolve(dataset))
    if path.exists():
        if path.suffix == ".json":
            raw = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(raw, list):
                raise DatasetError(f"{path}: a .json dataset must be a list of rows")
            items = [(f"{path}, item {i}", r) for i, r in enumerate(raw, start=1)]
        else:
            items = [(f"{path}, line {line}", r) for line, r in read_jsonl(path, with_lines=True)]
    elif str(dataset).endswith(LOCAL_SUFFIXES) or str(dataset).startswith((".", "/", "~")):
        raise DatasetError(f"{dataset}: no such file (looked in {Path.cwd()} and {ROOT}). Give a path that "
                           "exists, or a hub dataset id such as 'tatsu-lab/alpaca'")
    else:
        split, data = _hub_split(dataset, split)
        items = ((f"{dataset}[{split}], row {i}", r) for i, r in enumerate(data))
    out = []
    for where, r in items:
        if limit is not None and len(out) >= limit:
            break
        out.append(convert(r, where))
    return out


def split_rows(rows: list[dict], n_eval: int, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """(train, held out): a seeded shuffle, the last n_eval rows held out. For datasets without a test split."""
    if not 0 < n_eval < len(rows):
        raise ValueError(f"cannot hold out {n_eval} of {len(rows)} rows; ask for fewer held-out rows")
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    return [rows[i] for i in order[:-n_eval]], [rows[i] for i in order[-n_eval:]]


def is_world_dataset(dataset: str) -> bool:
    """Whether a dataset parameter names a file of the tiny world (whose answers the world's rulers can check)."""
    path = Path(resolve(dataset))
    return path.exists() and path.resolve().parent == WORLD_DIR.resolve()


def sft_splits(dataset: str, world_dir: str | Path = WORLD_DIR, *, max_train_rows: int | None = None,
               max_eval_rows: int | None = None, seed: int = 0) -> dict:
    """Training, validation and test chat rows for an SFT notebook, from any dataset.

    The tiny world's file: its own sft_val and sft_test (facts held out of SFT). Any other dataset: held out
    from the file itself (seeded shuffle), max_eval_rows each for validation and test (64 if None).
    max_train_rows limits the training rows, max_eval_rows the validation and test rows (None: all).
    Returns {"train", "validation", "test": rows, "tiny_world": whether the tiny world's rulers apply}.
    """
    from helpers.data import load_world

    rows = load_rows(dataset)
    if is_world_dataset(dataset):
        out = {"train": rows, "validation": load_world("sft_val", world_dir), "test": load_world("sft_test", world_dir),
               "tiny_world": True}
    else:
        n_eval = max_eval_rows or 64
        rest, test = split_rows(rows, n_eval, seed)
        train, validation = split_rows(rest, n_eval, seed)
        out = {"train": train, "validation": validation, "test": test, "tiny_world": False}
    out["train"] = out["train"][:max_train_rows]
    for split in ("validation", "test"):
        out[split] = out[split][:max_eval_rows]
    return out
