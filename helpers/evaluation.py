"""Measuring a model: held-out loss on any chat data, replies side by side, and the tiny world's rulers
(fact probes, chat exact match, perplexity, the skill, the preference rule).

All generation is greedy, so the same model gives the same numbers.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _device(model) -> torch.device:
    return next(model.parameters()).device


# ------------------------------------------------------------------------ tokens and log-probabilities
def chat_ids(tokenizer, messages: list[dict], add_generation_prompt: bool = False) -> list[int]:
    out = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True,
                                        add_generation_prompt=add_generation_prompt)
    return list(out["input_ids"])


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def split_prompt_completion(tokenizer, prompt: list[dict], completion: list[dict]) -> tuple[list[int], list[int]]:
    """(prompt ids, completion ids) the way TRL's SFT and DPO trainers cut a conversation: the prompt with the
    generation prompt, the completion = what prompt + completion adds after their common prefix."""
    prompt_ids = chat_ids(tokenizer, prompt, add_generation_prompt=True)
    full = chat_ids(tokenizer, prompt + completion)
    cut = common_prefix(prompt_ids, full)
    return full[:cut], full[cut:]


def token_logps(model, ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """log p(token t | tokens before t) for t = 1..T-1 of each row: shape (batch, T - 1).

    A prompt-tuned model puts its virtual tokens in front: their positions are dropped from the logits.
    """
    logits = model(input_ids=ids, attention_mask=attention_mask).logits[:, -ids.shape[1]:-1].float()
    return torch.gather(F.log_softmax(logits, dim=-1), 2, ids[:, 1:, None]).squeeze(2)


@torch.no_grad()
def completion_logps(model, prompt_completion: list[tuple[list[int], list[int]]], pad_id: int,
                     batch_size: int = 16) -> torch.Tensor:
    """Sum over completion tokens of log p(token | everything before it): one number per sequence."""
    out = []
    for i in range(0, len(prompt_completion), batch_size):
        chunk = prompt_completion[i:i + batch_size]
        seqs = [p + c for p, c in chunk]
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
        attn = torch.zeros_like(ids)
        comp = torch.zeros_like(ids, dtype=torch.bool)
        for j, ((p, c), s) in enumerate(zip(chunk, seqs)):  # right padding, as TRL's collators
            ids[j, :len(s)] = torch.tensor(s)
            attn[j, :len(s)] = 1
            comp[j, len(p):len(s)] = True
        ids, attn, comp = ids.to(_device(model)), attn.to(_device(model)), comp.to(_device(model))
        out.append((token_logps(model, ids, attn) * comp[:, 1:]).sum(dim=1).cpu())
    return torch.cat(out)


def heldout_loss(model, tokenizer, rows: list[dict], batch_size: int = 16) -> float:
    """Mean loss (nats per token) on the last assistant turn of chat rows, exactly the tokens SFT trains.

    Works on any model and any chat data: the measure of SFT that needs no answer key.
    """
    pairs = [split_prompt_completion(tokenizer, r["messages"][:-1], r["messages"][-1:]) for r in rows]
    was_training = model.training
    model.eval()
    total = completion_logps(model, pairs, tokenizer.pad_token_id, batch_size).sum().item()
    model.train(was_training)
    return -total / sum(len(c) for _, c in pairs)


# ---------------------------------------------------------------------------------------- generation
@torch.no_grad()
def complete(model, tokenizer, prompts: list[str], max_new_tokens: int = 8, batch_size: int = 64,
             **generate_kwargs) -> list[str]:
    """Continuations of plain-text prompts (left-padded batches): greedy unless generate_kwargs say
    otherwise (do_sample, temperature, num_return_sequences: each prompt's sequences together)."""
    tokenizer.padding_side = "left"
    generate_kwargs = {"do_sample": False, **generate_kwargs}
    out = []
    for i in range(0, len(prompts), batch_size):
        enc = tokenizer(prompts[i:i + batch_size], return_tensors="pt", padding=True,
                        add_special_tokens=False).to(_device(model))
        gen = model.generate(**enc, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                             eos_token_id=tokenizer.eos_token_id, **generate_kwargs)
        out += tokenizer.batch_decode(gen[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    return out


def chat_prompts(tokenizer, rows: list[dict]) -> list[str]:
    """The chat template applied to every turn but the last (the answer to predict)."""
    return [tokenizer.apply_chat_template(r["messages"][:-1], tokenize=False, add_generation_prompt=True)
            for r in rows]


def generate_replies(model, tokenizer, rows: list[dict], max_new_tokens: int = 32, batch_size: int = 64) -> list[str]:
    """The model's reply to each chat row's conversation minus its final assistant turn."""
    return [r.strip() for r in complete(model, tokenizer, chat_prompts(tokenizer, rows), max_new_tokens, batch_size)]


def side_by_side(models: dict, tokenizer, rows: list[dict], max_new_tokens: int = 48, width: int = 160) -> list[dict]:
    """For each row: the question, the reference answer and every model's greedy reply (cut to `width`)."""
    replies = {name: generate_replies(m, tokenizer, rows, max_new_tokens, batch_size=8) for name, m in models.items()}
    cut = lambda s: s if len(s) <= width else s[:width] + "…"  # noqa: E731
    return [{"question": cut(r["messages"][-2]["content"]), "reference": cut(r["messages"][-1]["content"]),
             **{name: cut(replies[name][i]) for name in models}} for i, r in enumerate(rows)]


# ------------------------------------------------------------------------------- tiny-world rulers
def normalize(text: str) -> str:
    """Lower case, single spaces, no trailing punctuation: what exact match compares."""
    return " ".join(text.lower().split()).rstrip(".!? ")


def fact_probe_accuracy(model, tokenizer, probes: list[dict], return_details: bool = False):
    """Share of cloze probes whose greedy continuation starts with the answer.

    probes: rows {"prompt": "The capital of France is", "answer": "Paris"}. They are real facts, so the
    ruler means something on any model (a real model knows many of them).
    """
    conts = complete(model, tokenizer, [p["prompt"] for p in probes], max_new_tokens=8)
    hits = [c.strip().lower().startswith(p["answer"].lower()) for p, c in zip(probes, conts)]
    acc = sum(hits) / len(hits)
    return (acc, conts) if return_details else acc


def answer_scores(replies: list[str], rows: list[dict], facts_by_id: dict[str, dict]) -> dict[str, float]:
    """Two rulers of replies to the tiny world's questions: `exact_match` (the whole reply is the reference
    sentence, the world's answer style) and `names_answer` (the reply contains the fact's answer, in any style:
    fair to a model that answers in its own words)."""
    exact = [normalize(r) == normalize(row["messages"][-1]["content"]) for r, row in zip(replies, rows)]
    named = [facts_by_id[row["fact_id"]]["answer"].lower() in r.lower() for r, row in zip(replies, rows)]
    return {"exact_match": sum(exact) / len(rows), "names_answer": sum(named) / len(rows)}


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
        nll = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
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
