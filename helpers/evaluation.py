"""Measuring a model: fact probes, chat exact match, perplexity, preference rate.

All generation is greedy, so the same model gives the same numbers.
"""
from __future__ import annotations

import math

import torch


def _device(model) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def complete(model, tokenizer, prompts: list[str], max_new_tokens: int = 8, batch_size: int = 64) -> list[str]:
    """Greedy continuations of plain-text prompts (left-padded batches)."""
    tokenizer.padding_side = "left"
    out = []
    for i in range(0, len(prompts), batch_size):
        enc = tokenizer(prompts[i:i + batch_size], return_tensors="pt", padding=True,
                        add_special_tokens=False).to(_device(model))
        gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        out += tokenizer.batch_decode(gen[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    return out


def chat_prompts(tokenizer, rows: list[dict]) -> list[str]:
    """The chat template applied to every turn but the last (the answer to predict)."""
    return [tokenizer.apply_chat_template(r["messages"][:-1], tokenize=False, add_generation_prompt=True)
            for r in rows]


def generate_replies(model, tokenizer, rows: list[dict], max_new_tokens: int = 32, batch_size: int = 64) -> list[str]:
    """The model's reply to each chat row's conversation minus its final assistant turn."""
    return [r.strip() for r in complete(model, tokenizer, chat_prompts(tokenizer, rows), max_new_tokens, batch_size)]


def normalize(text: str) -> str:
    """Lower case, single spaces, no trailing punctuation: what exact match compares."""
    return " ".join(text.lower().split()).rstrip(".!? ")


def fact_probe_accuracy(model, tokenizer, probes: list[dict], return_details: bool = False):
    """Share of cloze probes whose greedy continuation starts with the answer.

    probes: rows {"prompt": "The capital of France is", "answer": "Paris"}.
    """
    conts = complete(model, tokenizer, [p["prompt"] for p in probes], max_new_tokens=8)
    hits = [c.strip().lower().startswith(p["answer"].lower()) for p, c in zip(probes, conts)]
    acc = sum(hits) / len(hits)
    return (acc, conts) if return_details else acc


def chat_exact_match(model, tokenizer, rows: list[dict], return_details: bool = False, max_new_tokens: int = 32):
    """Share of chat rows whose whole generated reply equals the reference answer (after `normalize`)."""
    replies = generate_replies(model, tokenizer, rows, max_new_tokens)
    hits = [normalize(r) == normalize(row["messages"][-1]["content"]) for r, row in zip(replies, rows)]
    acc = sum(hits) / len(hits)
    return (acc, replies) if return_details else acc


@torch.no_grad()
def perplexity(model, tokenizer, texts: list[str], batch_size: int = 32) -> float:
    """exp(mean negative log-likelihood per predicted token) over the texts."""
    tokenizer.padding_side = "right"
    total_nll, total_tokens = 0.0, 0
    for i in range(0, len(texts), batch_size):
        enc = tokenizer(texts[i:i + batch_size], return_tensors="pt", padding=True,
                        add_special_tokens=False).to(_device(model))
        logits = model(**enc).logits[:, :-1].float()
        targets = enc["input_ids"][:, 1:]
        mask = enc["attention_mask"][:, 1:].bool()
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
        total_nll += nll[mask].sum().item()
        total_tokens += mask.sum().item()
    tokenizer.padding_side = "left"
    return math.exp(total_nll / total_tokens)


def skill_accuracy(model, tokenizer, rows: list[dict]) -> float:
    """Exact match on the narrow skill (reversing letters): the same measure as chat exact match."""
    return chat_exact_match(model, tokenizer, rows, max_new_tokens=16)


def preferred_rate(model, tokenizer, pairs: list[dict], facts_by_id: dict[str, dict], rule) -> tuple[float, list[str]]:
    """Share of generations to the pairs' prompts that the preference rule accepts."""
    rows = [{"messages": p["prompt"] + p["chosen"]} for p in pairs]
    replies = generate_replies(model, tokenizer, rows, max_new_tokens=40)
    rate = sum(rule(r, facts_by_id[p["fact_id"]]) for r, p in zip(replies, pairs)) / len(pairs)
    return rate, replies
