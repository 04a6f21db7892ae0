"""Catastrophic forgetting: the two rulers, replay mixing, an L2 pull to the start weights, freezing layers.

Notebook 06 trains one variant at a time from the same base model on the narrow skill (reversing
letters) and measures, before and after, learning (skill accuracy) and forgetting (fact-probe
accuracy drop, held-out perplexity rise). This module holds the plumbing; the notebook shows the
configs and the calls.
"""
from __future__ import annotations

import copy
import random

import torch
from transformers import TrainerCallback

from helpers.base_model import load_model
from helpers.evaluation import fact_probe_accuracy, perplexity, skill_accuracy
from helpers.training import train_sft, trainable_parameters


def rulers(model, tokenizer, world: dict) -> dict:
    """The two rulers. world: {"skill_test": chat rows, "probes": cloze rows, "heldout_text": [str]}.

    Returns {"skill_accuracy", "fact_probe", "perplexity"} (shares in [0, 1]; perplexity per token).
    """
    was_training = model.training
    model.eval()
    out = {"skill_accuracy": skill_accuracy(model, tokenizer, world["skill_test"]),
           "fact_probe": fact_probe_accuracy(model, tokenizer, world["probes"]),
           "perplexity": perplexity(model, tokenizer, world["heldout_text"])}
    model.train(was_training)
    return out


def replay_rows(texts: list[str]) -> list[dict]:
    """General text as chat rows: an empty user turn, the text as the assistant turn.

    TRL's SFTTrainer takes one format per dataset, so plain text is wrapped this way to sit in the
    same (assistant-only loss) dataset as the skill rows: the model is still trained to predict every
    token of the general text, only after a short fixed chat prefix instead of from the very start.
    """
    return [{"messages": [{"role": "user", "content": ""}, {"role": "assistant", "content": t}]} for t in texts]


def mix_replay(skill_rows: list[dict], general_texts: list[str], ratio: float, seed: int = 0) -> list[dict]:
    """The same number of rows as skill_rows, a share `ratio` of them general text (replay), shuffled.

    Same length keeps the budget (steps x batch) equal: replay replaces skill rows, it does not add rows.
    """
    if not 0 <= ratio < 1:
        raise ValueError(f"replay ratio must be in [0, 1), got {ratio}")
    rng = random.Random(seed)
    n_general = round(ratio * len(skill_rows))
    general = replay_rows(rng.sample(general_texts, min(n_general, len(general_texts))))
    rows = rng.sample(skill_rows, len(skill_rows) - len(general)) + general
    rng.shuffle(rows)
    return rows


def l2_pull_to_start(model, strength: float) -> list:
    """Add the gradient of  strength * sum_i (theta_i - theta0_i)^2  to every trainable parameter.

    The penalty is applied as a gradient hook (d/dtheta = 2 * strength * (theta - theta0)), so the
    trainer's own loss code stays untouched. Returns the hook handles (call .remove() on each to undo).
    """
    handles = []
    for p in model.parameters():
        if p.requires_grad:
            start = p.detach().clone()
            handles.append(p.register_hook(lambda grad, p=p, start=start: grad + 2 * strength * (p.detach() - start)))
    return handles


def freeze_all_but_last(model, k: int = 1) -> None:
    """Train only the last k transformer blocks (embeddings, earlier blocks, final norm frozen)."""
    for p in model.parameters():
        p.requires_grad = False
    for block in model.model.layers[-k:]:
        for p in block.parameters():
            p.requires_grad = True


class MeasureEvery(TrainerCallback):
    """Fact-probe accuracy and held-out perplexity every `every` optimizer steps: forgetting over training."""

    def __init__(self, tokenizer, world: dict, every: int):
        self.tokenizer, self.world, self.every, self.history = tokenizer, world, every, []

    def on_step_end(self, args, state, control, model=None, **kw):
        if state.global_step % self.every == 0:
            was_training = model.training
            model.eval()
            self.history.append({"step": state.global_step,
                                 "fact_probe": fact_probe_accuracy(model, self.tokenizer, self.world["probes"]),
                                 "perplexity": perplexity(model, self.tokenizer, self.world["heldout_text"])})
            model.train(was_training)


def run_variant(name: str, model_path: str, world: dict, train_rows: list[dict], before: dict, *,
                output_dir: str, peft_config=None, prepare=None, callbacks=None, return_model: bool = False,
                **train_overrides):
    """Fine-tune a fresh copy of the base model one way and measure it with the two rulers.

    prepare(model): optional change before training (freeze layers, add the L2 pull).
    before: the base model's rulers (same for every run). Returns one row of the results table, and
    with return_model=True also the trained model: (row, model).
    """
    model, tokenizer = load_model(model_path)
    if prepare is not None:
        prepare(model)
    trainer = train_sft(model, tokenizer, train_rows, output_dir=f"{output_dir}/{name}",
                        peft_config=peft_config, callbacks=callbacks, **train_overrides)
    after = rulers(trainer.model, tokenizer, world)
    trainable, total = trainable_parameters(trainer.model)
    row = {"name": name, "skill_before": before["skill_accuracy"], "skill_accuracy": after["skill_accuracy"],
           "fact_probe_before": before["fact_probe"], "fact_probe_after": after["fact_probe"],
           "fact_drop": before["fact_probe"] - after["fact_probe"],
           "perplexity_before": before["perplexity"], "perplexity_after": after["perplexity"],
           "perplexity_rise": after["perplexity"] - before["perplexity"],
           "trainable": trainable, "train_seconds": round(trainer.train_seconds, 1)}
    return (row, trainer.model) if return_model else row


# Parts of a Llama-style block, by the substrings of their weight names: where an update went.
PARTS = {"attention q, k": ("q_proj", "k_proj"), "attention v, o": ("v_proj", "o_proj"),
         "MLP": ("gate_proj", "up_proj", "down_proj"), "embeddings, LM head": ("embed_tokens", "lm_head")}


def plain_weights(model) -> dict[str, torch.Tensor]:
    """The model's weights as a plain (non-peft) state dict: a LoRA model's ΔW = B·A merged into a copy."""
    if hasattr(model, "merge_and_unload"):
        model = copy.deepcopy(model).merge_and_unload()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _in_part(key: str, names) -> bool:
    return key.endswith(".weight") and any(n in key for n in names)


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


def effective_rank(delta: torch.Tensor, energy: float = 0.9) -> int:
    """The fewest singular directions of a weight update that hold `energy` of its squared norm."""
    s2 = torch.linalg.svdvals(delta.float()) ** 2
    return int((s2.cumsum(0) / s2.sum() < energy).sum().item()) + 1


def median_update_rank(tuned: dict, start: dict, names, energy: float = 0.9) -> int:
    """The median effective_rank of the update over the weight matrices of one part."""
    ranks = sorted(effective_rank(tuned[k] - start[k], energy)
                   for k in start if _in_part(k, names) and start[k].dim() == 2)
    return ranks[len(ranks) // 2]


@torch.no_grad()
def revert_part(model_path: str, tuned: dict, start: dict, names) -> torch.nn.Module:
    """A fresh model with the tuned weights, except the part named by `names`, which is put back to `start`."""
    model, _ = load_model(model_path)
    weights = {k: (start[k] if _in_part(k, names) else v) for k, v in tuned.items()}
    model.load_state_dict(weights)
    return model.eval()
