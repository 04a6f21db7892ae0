"""Measuring any model on any data: held-out loss on chat rows, log-probabilities of completions, greedy
replies side by side, exact match against reference answers, perplexity of text.

Nothing here knows the tiny world: its own measures (fact probes, the skill, the preference rule) are in
`helpers.world_measures`. All generation is greedy unless asked otherwise, so the same model gives the same
numbers. A function that needs a tokenizer's padding side sets it and puts it back.
"""
from __future__ import annotations

import contextlib
import json
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


class ChatTemplateError(ValueError):
    """A conversation this chat template cannot train as one example."""


# assistant_mask's results, by tokenizer and conversation: the same rows are tokenised once per process, not once
# per run (an ablation trains and scores tens of runs on one dataset; BENCHMARKS.md)
_MASKS: dict[tuple, tuple[tuple[int, ...], tuple[int, ...]]] = {}
_MASKS_KEPT = 200_000


def _tokenizer_key(tokenizer) -> tuple:
    """What decides a tokenizer's chat ids: its class, name, vocabulary size (added tokens included) and template."""
    return type(tokenizer).__name__, tokenizer.name_or_path, len(tokenizer), tokenizer.chat_template


def assistant_mask(tokenizer, messages: list[dict], where: str = "row") -> tuple[list[int], list[int]]:
    """(ids of the whole conversation, mask): 1 on the tokens of every assistant turn, 0 on the rest.

    SFT trains what the mask marks: each assistant turn as the template writes it after that turn's
    generation prompt, its end-of-turn token included, and no system or user token. It works for any chat
    template, with or without `{% generation %}` markers: assistant turn i spans from where the conversation
    up to turn i with the generation prompt stops agreeing with the whole one, to the end of the conversation
    rendered up to turn i. For a single-turn row this is TRL's prompt/completion cut exactly
    (`split_prompt_completion`). A template that renders earlier turns differently once more turns follow
    (some drop earlier reasoning) cannot mark them in one example: ChatTemplateError says what to do.
    Each conversation is tokenised once per tokenizer and process; later calls read the first result.
    """
    key = (_tokenizer_key(tokenizer), json.dumps(messages, sort_keys=True, ensure_ascii=False))
    if key not in _MASKS:
        if len(_MASKS) >= _MASKS_KEPT:
            _MASKS.clear()
        ids, mask = _assistant_mask(tokenizer, messages, where)
        _MASKS[key] = tuple(ids), tuple(mask)
    ids, mask = _MASKS[key]
    return list(ids), list(mask)


def _assistant_mask(tokenizer, messages: list[dict], where: str) -> tuple[list[int], list[int]]:
    ids = chat_ids(tokenizer, messages)
    mask = [0] * len(ids)
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        start = common_prefix(chat_ids(tokenizer, messages[:i], add_generation_prompt=True), ids) if i else 0
        upto = ids if i == len(messages) - 1 else chat_ids(tokenizer, messages[:i + 1])
        if ids[:len(upto)] != upto:
            raise ChatTemplateError(
                f"{where}: this chat template renders the conversation up to assistant turn {i} differently when "
                "more turns follow, so that turn's tokens cannot be marked inside the whole conversation. Split "
                "the conversation into one row per assistant turn (each row: the turns before it and that turn), "
                "or use a chat template that renders earlier turns the same way")
        for t in range(start, len(upto)):
            mask[t] = 1
    if 1 not in mask:
        raise ChatTemplateError(f"{where}: no assistant turn to train (roles: {[m['role'] for m in messages]})")
    return ids, mask


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
def masked_logps(model, sequences: list[tuple[list[int], list[int]]], pad_id: int,
                 batch_size: int = 16) -> torch.Tensor:
    """Sum of log p(token | everything before it) over the tokens a mask marks: one number per (ids, mask)."""
    out = []
    for i in range(0, len(sequences), batch_size):
        chunk = sequences[i:i + batch_size]
        width = max(len(s) for s, _ in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        attn = torch.zeros_like(ids)
        marked = torch.zeros_like(ids, dtype=torch.bool)
        for j, (s, m) in enumerate(chunk):  # right padding, as TRL's collators
            ids[j, :len(s)] = torch.tensor(s)
            attn[j, :len(s)] = 1
            marked[j, :len(s)] = torch.tensor(m, dtype=torch.bool)
        ids, attn, marked = ids.to(_device(model)), attn.to(_device(model)), marked.to(_device(model))
        out.append((token_logps(model, ids, attn) * marked[:, 1:]).sum(dim=1).cpu())
    return torch.cat(out)


def completion_logps(model, prompt_completion: list[tuple[list[int], list[int]]], pad_id: int,
                     batch_size: int = 16) -> torch.Tensor:
    """Sum over completion tokens of log p(token | everything before it): one number per sequence."""
    return masked_logps(model, [(p + c, [0] * len(p) + [1] * len(c)) for p, c in prompt_completion], pad_id,
                        batch_size)


def heldout_loss(model, tokenizer, rows: list[dict], batch_size: int = 16) -> float:
    """Mean loss (nats per token) on every assistant turn of chat rows, exactly the tokens SFT trains
    (`assistant_mask`).

    Works on any model and any chat data: the measure of SFT that needs no answer key.
    """
    sequences = [assistant_mask(tokenizer, r["messages"], f"row {i}") for i, r in enumerate(rows)]
    was_training = model.training
    model.eval()
    total = masked_logps(model, sequences, tokenizer.pad_token_id, batch_size).sum().item()
    model.train(was_training)
    return -total / sum(sum(m) for _, m in sequences)


# ---------------------------------------------------------------------------------------- generation
class Replies(list):
    """Generated texts, in order, with `stopped`: for each, whether the model ended it with its end-of-turn
    (eos) token within the token limit. A reply cut by the limit has not stopped: "my model never stops"."""

    def __init__(self, texts, stopped):
        super().__init__(texts)
        self.stopped = list(stopped)

    @property
    def stop_rate(self) -> float:
        """Share of replies that ended with the end-of-turn token within the limit."""
        return sum(self.stopped) / len(self.stopped) if self.stopped else float("nan")


@torch.no_grad()
def complete(model, tokenizer, prompts: list[str], max_new_tokens: int = 8, batch_size: int = 64,
             **generate_kwargs) -> Replies:
    """Continuations of plain-text prompts (left-padded batches): greedy unless generate_kwargs say
    otherwise (do_sample, temperature, num_return_sequences: each prompt's sequences together)."""
    generate_kwargs = {"do_sample": False, **generate_kwargs}
    texts, stopped = [], []
    with padding_side(tokenizer, "left"):   # generation continues the prompt: pads go in front
        for i in range(0, len(prompts), batch_size):
            enc = tokenizer(prompts[i:i + batch_size], return_tensors="pt", padding=True,
                            add_special_tokens=False).to(_device(model))
            gen = model.generate(**enc, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                                 eos_token_id=tokenizer.eos_token_id, **generate_kwargs)
            new = gen[:, enc["input_ids"].shape[1]:]
            texts += tokenizer.batch_decode(new, skip_special_tokens=True)
            stopped += (new == tokenizer.eos_token_id).any(dim=1).tolist()
    return Replies(texts, stopped)


def chat_prompts(tokenizer, rows: list[dict]) -> list[str]:
    """The chat template applied to every turn but the last (the answer to predict)."""
    return [tokenizer.apply_chat_template(r["messages"][:-1], tokenize=False, add_generation_prompt=True)
            for r in rows]


def generate_replies(model, tokenizer, rows: list[dict], max_new_tokens: int = 32, batch_size: int = 64,
                     **generate_kwargs) -> Replies:
    """The model's reply to each chat row's conversation minus its final assistant turn (stripped), with
    `.stopped` / `.stop_rate`: whether each ended with the end-of-turn token within max_new_tokens."""
    out = complete(model, tokenizer, chat_prompts(tokenizer, rows), max_new_tokens, batch_size, **generate_kwargs)
    return Replies([r.strip() for r in out], out.stopped)


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


def exact_match(replies: list[str], rows: list[dict]) -> float:
    """Share of replies equal to their chat row's reference answer (its last turn), after `normalize`."""
    if len(replies) != len(rows):
        raise ValueError(f"{len(replies)} replies for {len(rows)} rows")
    return sum(normalize(r) == normalize(row["messages"][-1]["content"]) for r, row in zip(replies, rows)) / len(rows)


def chat_exact_match(model, tokenizer, rows: list[dict], return_details: bool = False, max_new_tokens: int = 32):
    """Share of chat rows whose whole generated reply equals the reference answer (`exact_match`)."""
    replies = generate_replies(model, tokenizer, rows, max_new_tokens)
    acc = exact_match(replies, rows)
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


