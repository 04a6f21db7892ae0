"""Many LoRA adapters on one base model: train one per task, score every task, count the memory.

Notebook 07 shows the peft calls that teach (load_adapter, set_adapter, disable_adapter, the routed
generate call, add_weighted_adapter, merge_and_unload); this module holds the plumbing around them.
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch

from helpers.env import seed_everything
from helpers.memory import tensor_bytes
from helpers.evaluation import chat_exact_match, chat_prompts, generate_replies, skill_accuracy
from helpers.models import load_model
from helpers.training import train_sft
from helpers.world import PIRATE

# task -> (training file, test file) in data/world
TASK_FILES = {"facts": ("sft_train", "sft_test"), "skill": ("skill_train", "skill_test"),
              "persona": ("persona_train", "persona_test")}


def train_adapter(base, train_rows: list[dict], output_dir: str | Path, peft_config, *, tokenizer=None,
                  seed: int = 0, **overrides):
    """LoRA SFT on one task's rows; the adapter is saved in output_dir.

    base: a model id or folder (a fresh copy is loaded), or a loaded model (then pass its tokenizer;
    the adapter is then trained on top of that model, e.g. a parent adapter merged in).
    Returns the trainer (adapter at `trainer.model`, wall time at `trainer.train_seconds`). The folder holds
    only adapter_config.json and adapter_model.safetensors: the base model is not copied.
    """
    seed_everything(seed)  # LoRA's A matrices are drawn when the trainer wraps the model
    if isinstance(base, (str, Path)):
        base, tokenizer = load_model(base)
    elif tokenizer is None:
        raise ValueError("train_adapter got a loaded model without its tokenizer: pass tokenizer=...")
    overrides.setdefault("seed", seed)
    trainer = train_sft(base, tokenizer, train_rows, output_dir=str(output_dir), peft_config=peft_config,
                        **overrides)
    trainer.model.save_pretrained(str(output_dir))
    return trainer


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


def adapter_bytes(peft_model, adapter_name: str) -> int:
    """Bytes of one adapter's LoRA tensors (its lora_A and lora_B matrices, and any DoRA magnitudes)."""
    return tensor_bytes([p for n, p in peft_model.named_parameters() if f".{adapter_name}." in n and "lora_" in n])


def merged_copy(peft_model, adapter_name: str):
    """A plain transformers model with one adapter merged into its weights (W <- W + scaling * B @ A).

    Works on a deep copy, so the multi-adapter model is left as it was.
    """
    twin = copy.deepcopy(peft_model)
    return twin.merge_and_unload(adapter_names=[adapter_name])


@torch.no_grad()
def prompt_logits(model, tokenizer, rows: list[dict]) -> torch.Tensor:
    """Logits (batch, tokens, vocab) of the model as it is now on the rows' chat prompts (left-padded)."""
    tokenizer.padding_side = "left"
    enc = tokenizer(chat_prompts(tokenizer, rows), return_tensors="pt", padding=True, add_special_tokens=False)
    return model(**enc.to(next(model.parameters()).device)).logits.float()


def max_logit_difference(model_a, model_b, tokenizer, rows: list[dict]) -> float:
    """Largest absolute difference of the two models' logits on the rows' chat prompts."""
    return (prompt_logits(model_a, tokenizer, rows) - prompt_logits(model_b, tokenizer, rows)).abs().max().item()
