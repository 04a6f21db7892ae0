"""Many LoRA adapters on one base model: the tasks, a score for every task, the memory, merged copies.

Notebook 07 shows the peft calls that teach (load_adapter, set_adapter, disable_adapter, the routed
generate call, add_weighted_adapter, merge_and_unload) and trains one adapter per task with
`helpers.training.train_sft`; this module holds the plumbing around them.
"""
from __future__ import annotations

import copy

import torch

from helpers.memory import tensor_bytes
from helpers.evaluation import chat_exact_match, chat_prompts, generate_replies, heldout_loss, padding_side
from helpers.world_measures import skill_accuracy
from helpers.world import PIRATE

# task -> (training file, test file) in data/world
TASK_FILES = {"facts": ("sft_train", "sft_test"), "skill": ("skill_train", "skill_test"),
              "persona": ("persona_train", "persona_test")}


def persona_rate(model, tokenizer, rows: list[dict], facts_by_id: dict[str, dict],
                 return_details: bool = False):
    """Share of replies that speak like the persona (start with PIRATE) and contain the right answer."""
    replies = generate_replies(model, tokenizer, rows, max_new_tokens=32)
    hits = [r.startswith(PIRATE) and facts_by_id[row["fact_id"]]["answer"].lower() in r.lower()
            for r, row in zip(replies, rows)]
    rate = sum(hits) / len(hits)
    return (rate, replies) if return_details else rate


def task_scores(model, tokenizer, test_sets: dict[str, list[dict]], facts_by_id: dict[str, dict]) -> dict[str, float]:
    """{task: accuracy} of the model as it is now (whatever adapters are active), on each task's test rows.

    facts: chat exact match; skill: exact match of the reversed letters; persona: `persona_rate`.
    """
    scorers = {"facts": lambda rows: chat_exact_match(model, tokenizer, rows),
               "skill": lambda rows: skill_accuracy(model, tokenizer, rows),
               "persona": lambda rows: persona_rate(model, tokenizer, rows, facts_by_id)}
    return {task: scorers[task](rows) for task, rows in test_sets.items()}


def task_losses(model, tokenizer, test_sets: dict[str, list[dict]]) -> dict[str, float]:
    """{task: held-out loss} of the model as it is now (whatever adapters are active) on each task's reference
    replies: a continuous measure beside `task_scores`, so that a combination that loses a task's exact match
    still shows how far it moved from the adapter alone and from the base model."""
    return {task: heldout_loss(model, tokenizer, rows) for task, rows in test_sets.items()}


def adapter_bytes(peft_model, adapter_name: str) -> int:
    """Bytes of one adapter's LoRA tensors (its lora_A and lora_B matrices, and any DoRA magnitudes)."""
    return tensor_bytes([p for n, p in peft_model.named_parameters() if f".{adapter_name}." in n and "lora_" in n])


def merged_copy(peft_model, adapter_name: str):
    """A plain transformers model with one adapter merged into its weights (W <- W + scaling * B @ A).

    Works on a deep copy, so the multi-adapter model is left as it was.
    """
    merged = copy.deepcopy(peft_model)
    return merged.merge_and_unload(adapter_names=[adapter_name])


@torch.no_grad()
def prompt_logits(model, tokenizer, rows: list[dict]) -> torch.Tensor:
    """Logits (batch, tokens, vocab) of the model as it is now on the rows' chat prompts (left-padded)."""
    with padding_side(tokenizer, "left"):
        enc = tokenizer(chat_prompts(tokenizer, rows), return_tensors="pt", padding=True, add_special_tokens=False)
    return model(**enc.to(next(model.parameters()).device)).logits.float()


def max_logit_difference(model_a, model_b, tokenizer, rows: list[dict]) -> float:
    """Largest absolute difference of the two models' logits on the rows' chat prompts."""
    return (prompt_logits(model_a, tokenizer, rows) - prompt_logits(model_b, tokenizer, rows)).abs().max().item()
