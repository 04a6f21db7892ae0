"""Catastrophic forgetting: learning and forgetting measured, one fine-tuning variant at a time, freezing layers,
where an update went.

Notebook 06 trains one variant at a time from the same base model on a narrow new skill (reversing
letters) and measures, before and after, learning (skill accuracy) and forgetting (the drop in fact-probe
accuracy). This module holds the plumbing; the notebook writes the remedies it teaches (the replay mix,
the L2 pull) and the calls.
"""
from __future__ import annotations

import copy

import torch
from transformers import TrainerCallback

from helpers.arch import ROLES, decoder_layers
from helpers.lora import deltas_between, effective_rank, module_type
from helpers.models import count_parameters, load_model
from helpers.ruler import multiple_choice_scores, paired_drop
from helpers.runs import NO_CHECKPOINTS, CheckpointPlan
from helpers.training import train_sft
from helpers.world_measures import fact_hits, fact_probe_accuracy, skill_accuracy


def learning_and_forgetting(model, tokenizer, skill_test: list[dict], probes: list[dict],
                            ruler: list[dict] | None = None) -> dict:
    """Learning (skill accuracy on held-out skill rows) and forgetting's rulers (fact-probe accuracy; with
    `ruler`, multiple-choice questions of `helpers.ruler`, a general ability wider than the facts).

    Returns {"skill_accuracy", "fact_probe" (shares in [0, 1]), "fact_hits" (one bool per probe)}, and with a
    ruler "ruler_accuracy" and "ruler_hits" (one bool per question).
    """
    was_training = model.training
    model.eval()
    hits, _ = fact_hits(model, tokenizer, probes)
    out = {"skill_accuracy": skill_accuracy(model, tokenizer, skill_test),
           "fact_probe": sum(hits) / len(hits), "fact_hits": hits}
    if ruler:
        scores = multiple_choice_scores(model, tokenizer, ruler)
        out.update(ruler_accuracy=scores["accuracy"], ruler_hits=scores["correct"])
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

    def __init__(self, tokenizer, probes: list[dict], every: int):
        self.tokenizer, self.probes, self.every, self.history = tokenizer, probes, every, []

    def on_step_end(self, args, state, control, model=None, **kw):
        if state.global_step % self.every == 0:
            was_training = model.training
            model.eval()
            self.history.append({"step": state.global_step,
                                 "fact_probe": fact_probe_accuracy(model, self.tokenizer, self.probes)})
            model.train(was_training)


def run_variant(name: str, model_path: str, skill_test: list[dict], probes: list[dict], train_rows: list[dict],
                before: dict, *, output_dir: str, peft_config=None, prepare=None, callbacks=None,
                return_model: bool = False, plan: CheckpointPlan = NO_CHECKPOINTS, ruler: list[dict] | None = None,
                **config):
    """Fine-tune a fresh copy of the base model one way and measure learning and forgetting.

    prepare(model): optional change before training (freeze layers, add the L2 pull).
    before: the base model's `learning_and_forgetting` (same for every run). plan: the notebook's
    CheckpointPlan; each run checkpoints to its sub-folder "<name>_seed<seed>". config: train_sft's
    keywords (`sft_knobs(recipe)`, seed). ruler: the general-ability questions, measured after training too
    (`before` must hold them): the row gains "ruler_after", "ruler_drop" and its paired standard error.
    Returns one row of the results table (its "fact_hits" lists every probe after training), and with
    return_model=True also the trained model.
    """
    if ruler and "ruler_hits" not in before:   # refused before training, not after it
        raise ValueError("run_variant(ruler=...) needs the base model measured on the same ruler: "
                         "before = learning_and_forgetting(base, tokenizer, skill_test, probes, ruler)")
    model, tokenizer = load_model(model_path, dtype=torch.float32 if peft_config is None else None)
    if prepare is not None:
        prepare(model)
    seed = config.get("seed", 0)
    run = train_sft(model, tokenizer, train_rows, output_dir=output_dir, run_name=f"{name}_seed{seed}",
                    peft_config=peft_config, callbacks=callbacks, plan=plan, **config)
    after = learning_and_forgetting(run.model, tokenizer, skill_test, probes, ruler)
    row = {"name": name, "seed": seed,
           "skill_before": before["skill_accuracy"], "skill_accuracy": after["skill_accuracy"],
           "fact_probe_before": before["fact_probe"], "fact_probe_after": after["fact_probe"],
           "fact_drop": before["fact_probe"] - after["fact_probe"], "fact_hits": after["fact_hits"],
           "trainable": count_parameters(run.model, trainable_only=True),
           "train_seconds": round(run.seconds, 1)}
    if ruler:
        drop, se = paired_drop(before["ruler_hits"], after["ruler_hits"])
        row.update(ruler_before=before["ruler_accuracy"], ruler_after=after["ruler_accuracy"],
                   ruler_drop=drop, ruler_drop_se=se)
    return (row, run.model) if return_model else row


def drop_on(before_hits: list[bool], after_hits: list[bool], which: list[bool]) -> float:
    """Fact-probe accuracy drop on the probes where `which` is True (e.g. those replay showed verbatim)."""
    pairs = [(b, a) for b, a, w in zip(before_hits, after_hits, which) if w]
    return (sum(b for b, _ in pairs) - sum(a for _, a in pairs)) / len(pairs) if pairs else float("nan")


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
    return key.endswith(".weight") and module_type(key) in names


def relative_change(tuned: dict, start: dict, parts: dict = PARTS) -> dict[str, float]:
    """Per part: ||W_tuned − W_start|| / ||W_start|| (Frobenius, over all the part's weight matrices)."""
    out = {}
    for part, names in parts.items():
        keys = [k for k in start if _in_part(k, names)]
        if not keys:
            raise ValueError(f"no weight of {part} ({', '.join(names)}) in this model; parts are matched by name")
        num = sum((delta ** 2).sum().item() for delta in deltas_between(start, tuned, set(keys)).values())
        out[part] = (num / sum((start[k] ** 2).sum().item() for k in keys)) ** 0.5
    return out


def median_update_rank(tuned: dict, start: dict, names, energy: float = 0.9) -> int:
    """The median effective_rank of the update over the weight matrices of one part."""
    keys = {k for k in start if _in_part(k, names) and start[k].dim() == 2}
    ranks = sorted(effective_rank(delta, energy) for delta in deltas_between(start, tuned, keys).values())
    return ranks[len(ranks) // 2]


@torch.no_grad()
def revert_part(model_path: str, tuned: dict, start: dict, names) -> torch.nn.Module:
    """A fresh model with the tuned weights, except the part named by `names`, which is put back to `start`."""
    model, _ = load_model(model_path, dtype=torch.float32)
    weights = {k: (start[k] if _in_part(k, names) else v) for k, v in tuned.items()}
    model.load_state_dict(weights)
    return model.eval()
