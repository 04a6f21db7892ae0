"""Measuring any model on any data: held-out loss on chat rows, log-probabilities of completions, greedy
replies side by side, exact match against reference answers, perplexity of text.

Nothing here knows the tiny world: its own measures (fact probes, the skill, the preference rule) are in
`helpers.world_measures`. All generation is greedy unless asked otherwise, so the same model gives the same
numbers. A function that needs a tokenizer's padding side sets it and puts it back.
"""
from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F


def _device(model) -> torch.device:
    return next(model.parameters()).device


@contextlib.contextmanager
def padding_side(tokenizer, side: str):
    """The tokenizer pads on `side` inside the block and as before after it."""
    before = tokenizer.padding_side
    tokenizer.padding_side = side
    try:
        yield tokenizer
    finally:
        tokenizer.padding_side = before


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


def last_turn_split(messages: list[dict]) -> tuple[list[dict], list[dict]]:
    """A conversation cut before its last turn: (every turn but the last, [the last turn]), the target."""
    return messages[:-1], messages[-1:]


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
    pairs = [split_prompt_completion(tokenizer, *last_turn_split(r["messages"])) for r in rows]
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
    generate_kwargs = {"do_sample": False, **generate_kwargs}
    out = []
    with padding_side(tokenizer, "left"):   # generation continues the prompt: pads go in front
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


def side_by_side(rows: list[dict], replies: dict[str, list[str]], width: int = 160) -> list[dict]:
    """For each chat row: the question, the reference answer and every model's reply ({name: the replies
    `generate_replies` gave, in the rows' order}), each cut to `width` characters.

    The replies are passed in, not generated here: the table then shows the very replies a notebook scored,
    and a model that was trained in place (LoRA on the base) has no "before" left to generate from.
    """
    for name, texts in replies.items():
        if len(texts) != len(rows):
            raise ValueError(f"{len(texts)} replies of {name!r} for {len(rows)} rows")
    cut = lambda s: s if len(s) <= width else s[:width] + "…"  # noqa: E731
    return [{"question": cut(r["messages"][-2]["content"]), "reference": cut(r["messages"][-1]["content"]),
             **{name: cut(texts[i]) for name, texts in replies.items()}} for i, r in enumerate(rows)]


# ------------------------------------------------------------------------------ reply and text measures
def normalize(text: str) -> str:
    """Lower case, single spaces, no trailing punctuation: what exact match compares."""
    return " ".join(text.lower().split()).rstrip(".!? ")


def chat_exact_match(model, tokenizer, rows: list[dict], return_details: bool = False, max_new_tokens: int = 32):
    """Share of chat rows whose whole generated reply equals the reference answer (after `normalize`)."""
    replies = generate_replies(model, tokenizer, rows, max_new_tokens)
    hits = [normalize(r) == normalize(row["messages"][-1]["content"]) for r, row in zip(replies, rows)]
    acc = sum(hits) / len(hits)
    return (acc, replies) if return_details else acc


@torch.no_grad()
def perplexity(model, tokenizer, texts: list[str], batch_size: int = 32) -> float:
    """exp(mean negative log-likelihood per predicted token) over the texts."""
    total_nll, total_tokens = 0.0, 0
    with padding_side(tokenizer, "right"):
        for i in range(0, len(texts), batch_size):
            enc = tokenizer(texts[i:i + batch_size], return_tensors="pt", padding=True,
                            add_special_tokens=False).to(_device(model))
            logits = model(**enc).logits[:, :-1].float()
            targets = enc["input_ids"][:, 1:]
            mask = enc["attention_mask"][:, 1:].bool()
            nll = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
            total_nll += nll[mask].sum().item()
            total_tokens += mask.sum().item()
    return math.exp(total_nll / total_tokens)


