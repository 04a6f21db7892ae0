"""Datasets on disk: load with validation, and map real datasets' rows onto the course's schemas.

Chat rows: {"messages": [{"role": "user"|"assistant"|"system", "content": str}, ...]}.
Preference rows: {"prompt": [...messages], "chosen": [...messages], "rejected": [...messages]}.
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Callable

from helpers.paths import WORLD_DIR, resolve

ROLES = ("system", "user", "assistant")


class DatasetError(ValueError):
    """A row that does not fit its schema: the message names file, line and field."""


def _where(path, line: int) -> str:
    return f"{path}, line {line}"


def check_messages(messages, where: str, field: str = "messages") -> None:
    if not isinstance(messages, list) or not messages:
        raise DatasetError(f"{where}: field '{field}' must be a non-empty list of "
                           f"{{'role', 'content'}} dicts, got {type(messages).__name__}")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise DatasetError(f"{where}: field '{field}[{i}].role' must be one of {ROLES}, "
                               f"got {m.get('role') if isinstance(m, dict) else m!r}")
        if not isinstance(m.get("content"), str):
            raise DatasetError(f"{where}: field '{field}[{i}].content' must be a string")


def check_chat_row(row: dict, where: str) -> None:
    check_messages(row.get("messages"), where)
    if row["messages"][-1]["role"] != "assistant":
        raise DatasetError(f"{where}: field 'messages' must end with an assistant turn (the target)")


def check_preference_row(row: dict, where: str) -> None:
    for field in ("prompt", "chosen", "rejected"):
        if field not in row:
            raise DatasetError(f"{where}: missing field '{field}' (preference rows need prompt, chosen, rejected)")
        check_messages(row[field], where, field)


def check_text_row(row: dict, where: str) -> None:
    if not isinstance(row.get("text"), str) or not row["text"].strip():
        raise DatasetError(f"{where}: field 'text' must be a non-empty string")


def check_probe_row(row: dict, where: str) -> None:
    for field in ("prompt", "answer"):
        if not isinstance(row.get(field), str) or not row[field]:
            raise DatasetError(f"{where}: field '{field}' must be a non-empty string")


def check_fact_row(row: dict, where: str) -> None:
    for field in ("id", "relation", "subject", "answer", "split"):
        if not isinstance(row.get(field), str) or not row[field]:
            raise DatasetError(f"{where}: field '{field}' must be a non-empty string")


# Which check applies to which tiny-world file, by name prefix.
CHECKS: dict[str, Callable[[dict, str], None]] = {
    "facts": check_fact_row, "corpus": check_text_row, "heldout_text": check_text_row,
    "probes": check_probe_row, "sft": check_chat_row, "skill": check_chat_row,
    "persona": check_chat_row, "dpo": check_preference_row,
}


def read_jsonl(path: str | Path, check: Callable[[dict, str], None] | None = None,
               with_lines: bool = False) -> list:
    """Read a JSON-lines file (.jsonl, or .jsonl.gz); every row is parsed and checked, errors name the line.

    with_lines=True returns (line number, row) pairs, for callers that check rows themselves.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: check the path (relative paths are read from "
                                f"{Path.cwd()}).")
    rows = []
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DatasetError(f"{_where(path, line_no)}: not valid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise DatasetError(f"{_where(path, line_no)}: a row must be a JSON object")
            if check:
                check(row, _where(path, line_no))
            rows.append((line_no, row) if with_lines else row)
    return rows


def load_world(name: str, world_dir: str | Path = WORLD_DIR) -> list[dict]:
    """Load one tiny-world file by short name ("sft_train", "probes", ...), validated."""
    check = next((c for prefix, c in CHECKS.items() if name.startswith(prefix)), None)
    path = Path(resolve(world_dir)) / f"{name}.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: the tiny world has no {name!r} there. Regenerate it "
                                "with `python -m helpers.world`, or check world_dir.")
    return read_jsonl(path, check)


def evenly_spaced(rows: list, n: int | None) -> list:
    """At most n rows taken evenly across the list (every k-th), so that a small sample still covers every
    kind of row in a sorted file; n=None: all of them."""
    if n is None or n >= len(rows):
        return rows
    step = len(rows) / n
    return [rows[int(i * step)] for i in range(n)]
