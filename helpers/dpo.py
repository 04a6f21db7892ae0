"""DPO plumbing: sequence log-probabilities, the DPO loss from its formula, TRL's DPOTrainer for short runs.

The notebook shows the formula and the trainer call; this module holds the parts every
preference notebook would repeat. Tokenization follows TRL 1.16's DPOTrainer: the prompt
is the chat template with the generation prompt, the completion is what the full
conversation adds after it (so the completion ends with the template's end-of-turn).
"""
from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from datasets import Dataset

from helpers.training import Stopwatch, default_precision

LN2 = math.log(2)


def preference_dataset(rows: list[dict]) -> Dataset:
    """Only prompt/chosen/rejected (extra columns such as fact_id dropped), as TRL expects."""
    return Dataset.from_list([{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in rows])


def _ids(tokenizer, messages: list[dict], add_generation_prompt: bool = False) -> list[int]:
    out = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True,
                                        add_generation_prompt=add_generation_prompt)
    return list(out["input_ids"])


def tokenize_pair(tokenizer, row: dict) -> dict[str, list[int]]:
    """prompt_ids, chosen_ids, rejected_ids the way TRL's DPOTrainer cuts them (common prefix = prompt)."""
    prompt = _ids(tokenizer, row["prompt"], add_generation_prompt=True)
    full = {k: _ids(tokenizer, row["prompt"] + row[k]) for k in ("chosen", "rejected")}

    def common(a, b):
        n = 0
        while n < min(len(a), len(b)) and a[n] == b[n]:
            n += 1
        return n
    cut = min(common(prompt, full["chosen"]), common(prompt, full["rejected"]))
    return {"prompt_ids": prompt[:cut], "chosen_ids": full["chosen"][cut:], "rejected_ids": full["rejected"][cut:]}


def token_logps(model, ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """log p(token t | tokens before t) for t = 1..T-1 of each row: shape (batch, T - 1)."""
    logits = model(input_ids=ids, attention_mask=attention_mask).logits[:, :-1].float()
    return torch.gather(F.log_softmax(logits, dim=-1), 2, ids[:, 1:, None]).squeeze(2)


@torch.no_grad()
def completion_logps(model, prompt_completion: list[tuple[list[int], list[int]]], pad_id: int,
                     batch_size: int = 64) -> torch.Tensor:
    """Sum over completion tokens of log p(token | everything before it): one number per sequence."""
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(prompt_completion), batch_size):
        chunk = prompt_completion[i:i + batch_size]
        seqs = [p + c for p, c in chunk]
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
        attn = torch.zeros_like(ids)
        comp = torch.zeros_like(ids, dtype=torch.bool)
        for j, ((p, c), s) in enumerate(zip(chunk, seqs)):  # right padding, as TRL's collator
            ids[j, :len(s)] = torch.tensor(s)
            attn[j, :len(s)] = 1
            comp[j, len(p):len(s)] = True
        ids, attn, comp = ids.to(device), attn.to(device), comp.to(device)
        out.append((token_logps(model, ids, attn) * comp[:, 1:]).sum(dim=1).cpu())
    return torch.cat(out)


def pair_logps(model, tokenizer, rows: list[dict], batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """(log π(chosen | prompt), log π(rejected | prompt)) for each preference row."""
    toks = [tokenize_pair(tokenizer, r) for r in rows]
    pad = tokenizer.pad_token_id
    chosen = completion_logps(model, [(t["prompt_ids"], t["chosen_ids"]) for t in toks], pad, batch_size)
    rejected = completion_logps(model, [(t["prompt_ids"], t["rejected_ids"]) for t in toks], pad, batch_size)
    return chosen, rejected


@contextlib.contextmanager
def reference(model):
    """The reference policy of a peft model: the same model with its adapters switched off."""
    if hasattr(model, "disable_adapter"):
        with model.disable_adapter():
            yield model
    else:
        yield model


def dpo_loss(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, beta: float) -> dict:
    """−log σ(β·(log πθ(y_w|x) − log π_ref(y_w|x)) − β·(log πθ(y_l|x) − log π_ref(y_l|x))), mean over pairs.

    Returns the loss and TRL's metric values (rewards/chosen, rewards/rejected, margins, accuracies).
    """
    chosen_rewards = beta * (chosen_logps - ref_chosen_logps)
    rejected_rewards = beta * (rejected_logps - ref_rejected_logps)
    margins = chosen_rewards - rejected_rewards
    return {"loss": -F.logsigmoid(margins).mean(), "rewards/chosen": chosen_rewards.mean(),
            "rewards/rejected": rejected_rewards.mean(), "rewards/margins": margins.mean(),
            "rewards/accuracies": (margins > 0).float().mean(), "margins": margins}


def policy_and_reference_logps(model, tokenizer, rows: list[dict], batch_size: int = 64) -> dict[str, torch.Tensor]:
    """Sequence log-probabilities of chosen and rejected under the policy and under the reference."""
    policy_c, policy_r = pair_logps(model, tokenizer, rows, batch_size)
    with reference(model):
        ref_c, ref_r = pair_logps(model, tokenizer, rows, batch_size)
    return {"chosen_logps": policy_c, "rejected_logps": policy_r,
            "ref_chosen_logps": ref_c, "ref_rejected_logps": ref_r}


class _Sharpened(torch.nn.Module):
    """A causal LM whose logits are divided by a temperature (below 1: sharper, the likely tokens more likely)."""

    def __init__(self, model, temperature: float):
        super().__init__()
        self.model, self.temperature = model, temperature

    def forward(self, **inputs):
        out = self.model(**inputs)
        out.logits = out.logits / self.temperature
        return out


def sharpened_reference_logps(model, tokenizer, rows: list[dict], temperature: float,
                              batch_size: int = 64) -> dict[str, torch.Tensor]:
    """Like policy_and_reference_logps, for a policy that only sharpens the reference: π_ref at this temperature.

    It knows nothing the reference does not: its implicit reward ranks a pair right when the reference already
    prefers the chosen tokens, i.e. what DPO would get if it generalized "be surer of what you believe".
    """
    with reference(model):
        ref_c, ref_r = pair_logps(model, tokenizer, rows, batch_size)
        sharp_c, sharp_r = pair_logps(_Sharpened(model, temperature), tokenizer, rows, batch_size)
    return {"chosen_logps": sharp_c, "rejected_logps": sharp_r, "ref_chosen_logps": ref_c, "ref_rejected_logps": ref_r}


def implicit_reward_accuracy(logps: dict[str, torch.Tensor], beta: float) -> float:
    """Share of pairs where β·(logratio chosen − logratio rejected) > 0."""
    return dpo_loss(**logps, beta=beta)["rewards/accuracies"].item()


def dpo_config(output_dir: str, **overrides):
    """A DPOConfig for short CPU runs: no checkpoints, no hub, no external loggers."""
    from trl import DPOConfig

    args = dict(output_dir=str(output_dir), beta=0.1, learning_rate=5e-3, num_train_epochs=1,
                per_device_train_batch_size=16, per_device_eval_batch_size=32, max_length=128,
                lr_scheduler_type="linear", warmup_steps=0, weight_decay=0.0, logging_steps=2,
                save_strategy="no", report_to="none", seed=0, data_seed=0, dataloader_num_workers=0,
                disable_tqdm=True, **default_precision())
    args.update(overrides)
    return DPOConfig(**args)


def make_dpo_trainer(model, tokenizer, train_rows: list[dict], *, output_dir: str, peft_config=None,
                     **config_overrides):
    """A DPOTrainer on the rows; ref_model=None so that with a peft model the reference is the adapter switched off."""
    from trl import DPOTrainer

    stopwatch = Stopwatch()
    trainer = DPOTrainer(model=model, ref_model=None, args=dpo_config(output_dir, **config_overrides),
                         train_dataset=preference_dataset(train_rows), processing_class=tokenizer,
                         peft_config=peft_config, callbacks=[stopwatch])
    trainer.stopwatch = stopwatch
    return trainer


def trl_batch_loss(trainer, n: int = 16) -> dict[str, float]:
    """TRL's own loss computation on the first n rows of its tokenized training set (collated by its collator)."""
    examples = [trainer.train_dataset[i] for i in range(n)]
    batch = trainer.data_collator(examples)
    batch = {k: v.to(trainer.accelerator.device) for k, v in batch.items()}
    was_training = trainer.model.training
    trainer.model.eval()
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, batch).item()
    trainer.model.train(was_training)
    metrics = {k: v[-1] for k, v in trainer._metrics["eval"].items() if k.startswith("rewards/")}
    trainer._metrics["eval"].clear()
    return {"loss": loss, **metrics}


def reward_curves(trainer) -> dict[str, list[tuple[int, float]]]:
    """(step, value) for rewards/chosen, rewards/rejected, rewards/margins, rewards/accuracies and loss."""
    keys = ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "loss")
    return {k: [(h["step"], h[k]) for h in trainer.state.log_history if k in h] for k in keys}


def mean_abs_logratio(logps: dict[str, torch.Tensor]) -> float:
    """Drift from the reference: mean |log πθ(y|x) − log π_ref(y|x)| over the held-out chosen answers."""
    return (logps["chosen_logps"] - logps["ref_chosen_logps"]).abs().mean().item()


def chosen_nll(model, tokenizer, rows: list[dict], batch_size: int = 64) -> float:
    """The SFT term TRL adds with loss_type "sft": −log π(token) averaged over every chosen completion token."""
    toks = [tokenize_pair(tokenizer, r) for r in rows]
    sums = completion_logps(model, [(t["prompt_ids"], t["chosen_ids"]) for t in toks], tokenizer.pad_token_id,
                            batch_size)
    return -(sums.sum() / sum(len(t["chosen_ids"]) for t in toks)).item()


def policy_ranking_accuracy(logps: dict[str, torch.Tensor]) -> float:
    """Share of pairs where the policy itself gives the chosen answer the higher log-probability."""
    return (logps["chosen_logps"] > logps["rejected_logps"]).float().mean().item()


@torch.no_grad()
def completion_changes(model, tokenizer, row: dict) -> dict[str, tuple[list[int], torch.Tensor, torch.Tensor]]:
    """Per side ("chosen", "rejected"): (completion ids, log πθ per completion token, log π_ref per completion token)."""
    t = tokenize_pair(tokenizer, row)
    device = next(model.parameters()).device
    out = {}
    for side in ("chosen", "rejected"):
        ids = torch.tensor([t["prompt_ids"] + t[f"{side}_ids"]], device=device)
        start = len(t["prompt_ids"]) - 1                 # the first completion token's prediction
        policy = token_logps(model, ids)[0, start:].cpu()
        with reference(model):
            ref = token_logps(model, ids)[0, start:].cpu()
        out[side] = (t[f"{side}_ids"], policy, ref)
    return out


def token_logps_table(model, tokenizer, row: dict) -> list[dict]:
    """Per completion token of one pair: log π_ref, log πθ and the change, for chosen and rejected."""
    out = []
    for side, (ids, policy, ref) in completion_changes(model, tokenizer, row).items():
        for tok_id, p, r in zip(ids, policy.tolist(), ref.tolist()):
            out.append({"answer": side, "token": tokenizer.decode([tok_id]), "log π_ref": round(r, 2),
                        "log πθ": round(p, 2), "change": round(p - r, 2)})
    return out


def margin_parts(model, tokenizer, rows: list[dict]) -> list[dict]:
    """Split each pair's implicit-reward margin (in nats, before β) where chosen and rejected differ and where they agree.

    Chosen and rejected completions share a prompt and often an ending (here " Tell me more!<|end|>"). For each pair:
    `differing` = Σ change (log πθ − log π_ref) over chosen's own tokens − the same over rejected's own tokens;
    `shared_end` = the same difference over the common ending, whose tokens are equal but follow different words.
    margin / β = differing + shared_end.
    """
    out = []
    for row in rows:
        sides = completion_changes(model, tokenizer, row)
        c, r = sides["chosen"][0], sides["rejected"][0]
        shared = 0
        while shared < min(len(c), len(r)) - 1 and c[-1 - shared] == r[-1 - shared]:
            shared += 1
        change = {}
        for side, (ids, policy, ref) in sides.items():
            delta = policy - ref
            change[side] = (delta[:len(ids) - shared].sum().item(), delta[len(ids) - shared:].sum().item())
        out.append({"differing": change["chosen"][0] - change["rejected"][0],
                    "shared_end": change["chosen"][1] - change["rejected"][1]})
    return out


def summarize_margin_parts(parts: list[dict], kinds: list[str]) -> dict[str, dict]:
    """Per kind of pair: how many, how many misranked (margin <= 0), and the mean size of margin_parts' two parts."""
    out = {}
    for kind in dict.fromkeys(kinds):
        ps = [p for p, k in zip(parts, kinds) if k == kind]
        out[kind] = {"pairs": len(ps), "misranked": sum(p["differing"] + p["shared_end"] <= 0 for p in ps),
                     "mean differing part": sum(p["differing"] for p in ps) / len(ps),
                     "mean |differing part|": sum(abs(p["differing"]) for p in ps) / len(ps),
                     "mean |shared ending part|": sum(abs(p["shared_end"]) for p in ps) / len(ps)}
    return out


# The course's DPO recipe on the tiny world (tuned by measurement in notebook 05; 06 reuses it for the alignment tax):
# make_dpo_trainer(merged_sft_model, tok, rows, output_dir=..., peft_config=standard_lora(), **DPO_RECIPE)
DPO_RECIPE = {"beta": 0.1, "learning_rate": 3e-3, "num_train_epochs": 3, "loss_type": ["sigmoid", "sft"],
              "loss_weights": [1.0, 1.0], "per_device_train_batch_size": 16}
