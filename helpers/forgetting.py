"""Catastrophic forgetting: the two rulers, one fine-tuning variant at a time, freezing layers, where an update went.

Notebook 06 trains one variant at a time from the same base model on a narrow new skill (reversing
letters) and measures, before and after, learning (skill accuracy) and forgetting (the drop in fact-probe
accuracy). This module holds the plumbing; the notebook writes the remedies it teaches (the replay mix,
the L2 pull) and the calls.
"""
from __future__ import annotations

import copy
import statistics

import torch
from transformers import TrainerCallback

from helpers.arch import ROLES, decoder_layers
from helpers.evaluation import fact_probe_accuracy, skill_accuracy
from helpers.lora import effective_rank
from helpers.models import count_parameters, load_model
from helpers.training import train_sft


def fact_hits(model, tokenizer, probes: list[dict]) -> list[bool]:
    """For each cloze probe: does the greedy continuation start with the answer?"""
    _, conts = fact_probe_accuracy(model, tokenizer, probes, return_details=True)
    return [c.strip().lower().startswith(p["answer"].lower()) for p, c in zip(probes, conts)]


def rulers(model, tokenizer, world: dict) -> dict:
    """The two rulers. world: {"skill_test": chat rows, "probes": cloze rows}.

    Returns {"skill_accuracy", "fact_probe" (shares in [0, 1]), "fact_hits" (one bool per probe)}.
    """
    was_training = model.training
    model.eval()
    hits = fact_hits(model, tokenizer, world["probes"])
    out = {"skill_accuracy": skill_accuracy(model, tokenizer, world["skill_test"]),
           "fact_probe": sum(hits) / len(hits), "fact_hits": hits}
    model.train(was_training)
    return out


def freeze_all_but_last(model, k: int = 1) -> None:
    """Train only the last k transformer blocks (embeddings, earlier blocks, final norm frozen)."""
    for p in model.parameters():
        p.requires_grad = False
    for block in decoder_layers(model)[-k:]:
        for p in block.parameters():
            p.requires_grad = True


class MeasureEvery(TrainerCallback):
    """Fact-probe accuracy every `every` optimizer steps: forgetting over training."""

    def __init__(self, tokenizer, world: dict, every: int):
        self.tokenizer, self.world, self.every, self.history = tokenizer, world, every, []

    def on_step_end(self, args, state, control, model=None, **kw):
        if state.global_step % self.every == 0:
            was_training = model.training
            model.eval()
            self.history.append({"step": state.global_step,
                                 "fact_probe": fact_probe_accuracy(model, self.tokenizer, self.world["probes"])})
            model.train(was_training)


def run_variant(name: str, model_path: str, world: dict, train_rows: list[dict], before: dict, *,
                output_dir: str, peft_config=None, prepare=None, callbacks=None, return_model: bool = False,
                plan=None, **train_overrides):
    """Fine-tune a fresh copy of the base model one way and measure it with the two rulers.

    prepare(model): optional change before training (freeze layers, add the L2 pull).
    before: the base model's rulers (same for every run). plan: `functools.partial(checkpointing, ...)` of
    the notebook, or None: each run checkpoints to its sub-folder "<name>_seed<seed>" and, with resume,
    continues from its last complete checkpoint. Returns one row of the results table (its
    "fact_hits" lists every probe after training), and with return_model=True also the trained model.
    """
    model, tokenizer = load_model(model_path, dtype=torch.float32 if peft_config is None else None)
    if prepare is not None:
        prepare(model)
    seed = train_overrides.get("seed", 0)
    checkpoints = plan(run_name=f"{name}_seed{seed}", rows=len(train_rows), **train_overrides) if plan else None
    trainer = train_sft(model, tokenizer, train_rows, output_dir=f"{output_dir}/{name}",
                        peft_config=peft_config, callbacks=callbacks, checkpoints=checkpoints, **train_overrides)
    after = rulers(trainer.model, tokenizer, world)
    row = {"name": name, "seed": seed,
           "skill_before": before["skill_accuracy"], "skill_accuracy": after["skill_accuracy"],
           "fact_probe_before": before["fact_probe"], "fact_probe_after": after["fact_probe"],
           "fact_drop": before["fact_probe"] - after["fact_probe"], "fact_hits": after["fact_hits"],
           "trainable": count_parameters(trainer.model, trainable_only=True),
           "train_seconds": round(trainer.train_seconds, 1)}
    return (row, trainer.model) if return_model else row


def drop_on(before_hits: list[bool], after_hits: list[bool], which: list[bool]) -> float:
    """Fact-probe accuracy drop on the probes where `which` is True (e.g. those replay showed verbatim)."""
    pairs = [(b, a) for b, a, w in zip(before_hits, after_hits, which) if w]
    return (sum(b for b, _ in pairs) - sum(a for _, a in pairs)) / len(pairs) if pairs else float("nan")


def mean_and_spread(rows: list[dict], key: str) -> dict:
    """{"mean", "min", "max", "spread"} of one number over runs (seeds)."""
    values = [r[key] for r in rows]
    return {"mean": statistics.mean(values), "min": min(values), "max": max(values),
            "spread": max(values) - min(values)}


# Parts of a decoder, by the roles of their layers (helpers.arch.ROLES): where an update went.
PARTS = {"attention q, k": ROLES["query"] + ROLES["key"], "attention v, o": ROLES["value"] + ROLES["attention output"],
         "MLP": ROLES["MLP"], "embeddings, LM head": ROLES["embeddings"]}


def plain_weights(model) -> dict[str, torch.Tensor]:
    """The model's weights as a plain (non-peft) state dict: a LoRA model's ΔW = B·A merged into a copy."""
    if hasattr(model, "merge_and_unload"):
        model = copy.deepcopy(model).merge_and_unload()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _in_part(key: str, names) -> bool:
    """'model.layers.0.self_attn.q_proj.weight' is in a part whose names include 'q_proj'."""
    return key.endswith(".weight") and key.split(".")[-2] in names


def relative_change(tuned: dict, start: dict, parts: dict = PARTS) -> dict[str, float]:
    """Per part: ||W_tuned − W_start|| / ||W_start|| (Frobenius, over all the part's weight matrices)."""
    out = {}
    for part, names in parts.items():
        keys = [k for k in start if _in_part(k, names)]
        if not keys:
            raise ValueError(f"no weight of {part} ({', '.join(names)}) in this model; parts are matched by name")
        num = sum(((tuned[k] - start[k]) ** 2).sum().item() for k in keys)
        out[part] = (num / sum((start[k] ** 2).sum().item() for k in keys)) ** 0.5
    return out


def median_update_rank(tuned: dict, start: dict, names, energy: float = 0.9) -> int:
    """The median effective_rank of the update over the weight matrices of one part."""
    ranks = sorted(effective_rank(tuned[k] - start[k], energy)
                   for k in start if _in_part(k, names) and start[k].dim() == 2)
    return ranks[len(ranks) // 2]


@torch.no_grad()
def revert_part(model_path: str, tuned: dict, start: dict, names) -> torch.nn.Module:
    """A fresh model with the tuned weights, except the part named by `names`, which is put back to `start`."""
    model, _ = load_model(model_path, dtype=torch.float32)
    weights = {k: (start[k] if _in_part(k, names) else v) for k, v in tuned.items()}
    model.load_state_dict(weights)
    return model.eval()


# The recipe for learning the skill, per model scale (the same names as the SFT recipes). "tiny": measured
# in notebook 06 (the full learning rate is matched to LoRA r=4's skill accuracy).
SKILL_RECIPES = {
    "tiny": {"learning_rate": 3e-3, "full_learning_rate": 3e-4, "freeze_learning_rate": 1e-3,
             "max_steps": 200, "batch_size": 16},
    "real": {"learning_rate": 2e-4, "full_learning_rate": 2e-5, "freeze_learning_rate": 1e-4,
             "max_steps": 100, "batch_size": 8},
}
