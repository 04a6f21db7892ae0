"""The tiny world's own measures, beside the world (helpers.world): fact probes, answers to its questions, the
skill, the preference rule. They also run on a real model (the facts are real), labelled as the tiny
world's rulers; the measures that mean something on any data are in `helpers.evaluation`.
"""
from __future__ import annotations

import re

from helpers.evaluation import chat_exact_match, complete, exact_match, generate_replies


def fact_hit(continuation: str, answer: str) -> bool:
    """The fact-probe rule: the continuation starts with the answer (any case, leading spaces ignored)."""
    return continuation.strip().lower().startswith(answer.lower())


def fact_hits(model, tokenizer, probes: list[dict]) -> tuple[list[bool], list[str]]:
    """(for each cloze probe: does the greedy continuation start with the answer?, the continuations)."""
    conts = complete(model, tokenizer, [p["prompt"] for p in probes], max_new_tokens=8)
    return [fact_hit(c, p["answer"]) for p, c in zip(probes, conts)], conts


def fact_probe_accuracy(model, tokenizer, probes: list[dict], return_details: bool = False):
    """Share of cloze probes whose greedy continuation starts with the answer.

    probes: rows {"prompt": "The capital of France is", "answer": "Paris"}. They are real facts, so the
    ruler means something on any model (a real model knows many of them).
    """
    hits, conts = fact_hits(model, tokenizer, probes)
    acc = sum(hits) / len(hits)
    return (acc, conts) if return_details else acc


def _names(text: str, name: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(name.lower())}(?!\w)", text.lower()) is not None


def answer_scores(replies: list[str], rows: list[dict], facts_by_id: dict[str, dict]) -> dict[str, float]:
    """Two rulers of replies to the tiny world's questions: `exact_match` (the whole reply is the reference
    sentence, the world's answer style) and `names_answer` (the reply names the fact's answer, as a whole word,
    and no other subject of the world: fair to a model that answers in its own words, and "The colour of a
    strawberry is red" asked about a tomato does not count)."""
    subjects = {f["subject"] for f in facts_by_id.values()}
    named = []
    for reply, row in zip(replies, rows):
        fact = facts_by_id[row["fact_id"]]
        others = [s for s in subjects if s != fact["subject"] and not _names(fact["subject"], s)]
        named.append(_names(reply, fact["answer"]) and not any(_names(reply, s) for s in others))
    return {"exact_match": exact_match(replies, rows), "names_answer": sum(named) / len(rows)}


def skill_accuracy(model, tokenizer, rows: list[dict]) -> float:
    """Exact match on the narrow skill (reversing letters): the same measure as chat exact match."""
    return chat_exact_match(model, tokenizer, rows, max_new_tokens=16)


def preferred_rate(model, tokenizer, pairs: list[dict], facts_by_id: dict[str, dict], rule) -> tuple[float, list[str]]:
    """Share of generations to the pairs' prompts that the preference rule accepts."""
    rows = [{"messages": p["prompt"] + p["chosen"]} for p in pairs]
    replies = generate_replies(model, tokenizer, rows, max_new_tokens=40)
    rate = sum(rule(r, facts_by_id[p["fact_id"]]) for r, p in zip(replies, pairs)) / len(pairs)
    return rate, replies
