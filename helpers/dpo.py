"""DPO plumbing: pairs tokenized as TRL does, sequence log-probabilities under the policy and the reference,
TRL's DPOTrainer with the course's settings, and the measures notebook 05 reads.

The notebook writes the DPO loss from its formula (that is the lesson) and checks it against TRL;
this module holds what every preference notebook would repeat. Tokenization follows TRL 1.16's
DPOTrainer: the prompt is the chat template with the generation prompt, a completion is what
prompt + answer adds after it (so it ends with the template's end-of-turn tokens).
"""
from __future__ import annotations

import contextlib
import math

import torch
from datasets import Dataset

from helpers.env import batch_run
from helpers.evaluation import chat_ids, common_prefix, completion_logps, token_logps
from helpers.precision import choose_precision
from helpers.runs import NO_CHECKPOINTS, CheckpointPlan, trl_forward

LN2 = math.log(2)

# The knobs of a DPO recipe (helpers.recipes) that dpo_config takes (lora_r goes to the LoraConfig).
DPO_KNOBS = ("learning_rate", "epochs", "batch_size", "max_length", "beta", "sft_weight", "max_steps")


def dpo_knobs(recipe: dict, **changes) -> dict:
    """The dpo_config knobs of a recipe (those it has), with changes applied."""
    unknown = sorted(k for k in changes if k not in DPO_KNOBS)
    if unknown:
        raise KeyError(f"{unknown} are not DPO knobs; the DPO knobs are {list(DPO_KNOBS)}")
    return {**{k: recipe[k] for k in DPO_KNOBS if k in recipe}, **changes}


def preference_dataset(rows: list[dict]) -> Dataset:
    """Only prompt/chosen/rejected (extra columns such as fact_id dropped), as TRL expects."""
    return Dataset.from_list([{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in rows])


def tokenize_pair(tokenizer, row: dict) -> dict[str, list[int]]:
    """prompt_ids, chosen_ids, rejected_ids the way TRL's DPOTrainer cuts them (common prefix = prompt)."""
    prompt = chat_ids(tokenizer, row["prompt"], add_generation_prompt=True)
    full = {k: chat_ids(tokenizer, row["prompt"] + row[k]) for k in ("chosen", "rejected")}
    cut = min(common_prefix(prompt, full["chosen"]), common_prefix(prompt, full["rejected"]))
    return {"prompt_ids": prompt[:cut], "chosen_ids": full["chosen"][cut:], "rejected_ids": full["rejected"][cut:]}


def fit_pairs_to_length(rows: list[dict], tokenizer, max_length: int) -> tuple[list[dict], int]:
    """(pairs whose prompt + longer answer fit in max_length tokens, how many were left out).

    TRL cuts a longer sequence at max_length (through the answer) and drops a pair whose prompt alone fills
    it; a loss computed by hand on the whole pair then differs from TRL's. The notebooks print the count.
    """
    def fits(row):
        t = tokenize_pair(tokenizer, row)
        return len(t["prompt_ids"]) + max(len(t["chosen_ids"]), len(t["rejected_ids"])) <= max_length
    kept = [r for r in rows if fits(r)]
    return kept, len(rows) - len(kept)


def pair_logps(model, tokenizer, rows: list[dict], batch_size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """(log π(chosen | prompt), log π(rejected | prompt)) for each preference row: sums over completion tokens."""
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


def policy_and_reference_logps(model, tokenizer, rows: list[dict], batch_size: int = 16) -> dict[str, torch.Tensor]:
    """Sequence log-probabilities of chosen and rejected under the policy and under the reference."""
    policy_c, policy_r = pair_logps(model, tokenizer, rows, batch_size)
    with reference(model):
        ref_c, ref_r = pair_logps(model, tokenizer, rows, batch_size)
    return {"chosen_logps": policy_c, "rejected_logps": policy_r,
            "ref_chosen_logps": ref_c, "ref_rejected_logps": ref_r}


def implicit_reward_margins(logps: dict[str, torch.Tensor], beta: float) -> torch.Tensor:
    """β·(log πθ/π_ref of chosen − log πθ/π_ref of rejected), one per pair: DPO's implicit reward margin."""
    return beta * ((logps["chosen_logps"] - logps["ref_chosen_logps"])
                   - (logps["rejected_logps"] - logps["ref_rejected_logps"]))


def implicit_reward_accuracy(logps: dict[str, torch.Tensor], beta: float) -> float:
    """Share of pairs whose implicit reward margin is positive (the chosen answer gained on the rejected one)."""
    return (implicit_reward_margins(logps, beta) > 0).float().mean().item()


def policy_ranking_accuracy(logps: dict[str, torch.Tensor], ref: bool = False) -> float:
    """Share of pairs where the policy (or, ref=True, the reference) gives the chosen answer the higher log-prob."""
    prefix = "ref_" if ref else ""
    return (logps[f"{prefix}chosen_logps"] > logps[f"{prefix}rejected_logps"]).float().mean().item()


def logp_margin(logps: dict[str, torch.Tensor], ref: bool = False) -> float:
    """Mean log π(chosen) − log π(rejected) over the pairs (nats), of the policy or of the reference."""
    prefix = "ref_" if ref else ""
    return (logps[f"{prefix}chosen_logps"] - logps[f"{prefix}rejected_logps"]).mean().item()


def mean_abs_logratio(logps: dict[str, torch.Tensor]) -> float:
    """Drift from the reference: mean |log πθ(y|x) − log π_ref(y|x)| over the chosen answers (nats)."""
    return (logps["chosen_logps"] - logps["ref_chosen_logps"]).abs().mean().item()


def chosen_nll(model, tokenizer, rows: list[dict], batch_size: int = 16) -> float:
    """The SFT term TRL adds with loss_type "sft": −log π(token) averaged over every chosen completion token."""
    toks = [tokenize_pair(tokenizer, r) for r in rows]
    sums = completion_logps(model, [(t["prompt_ids"], t["chosen_ids"]) for t in toks], tokenizer.pad_token_id,
                            batch_size)
    return -(sums.sum() / sum(len(t["chosen_ids"]) for t in toks)).item()


def dpo_config(output_dir: str, *, learning_rate: float, epochs: float = 1, batch_size: int = 8,
               max_length: int = 128, beta: float = 0.1, sft_weight: float = 0.0, max_steps: int = -1,
               seed: int = 0, logging_steps: int = 2, **extra):
    """The course's DPOConfig (notebook 05 writes the same knobs out). sft_weight > 0: DPO + NLL on the chosen
    answers (RPO). `extra` goes to DPOConfig as is."""
    from trl import DPOConfig

    args = dict(output_dir=str(output_dir), beta=beta, learning_rate=learning_rate, num_train_epochs=epochs,
                max_steps=max_steps, per_device_train_batch_size=batch_size, per_device_eval_batch_size=batch_size,
                max_length=max_length, loss_type=["sigmoid", "sft"] if sft_weight else ["sigmoid"],
                loss_weights=[1.0, sft_weight] if sft_weight else None,
                lr_scheduler_type="linear", warmup_steps=0, weight_decay=0.0, logging_steps=logging_steps,
                save_strategy="no", report_to="none", seed=seed, data_seed=seed, dataloader_num_workers=0,
                disable_tqdm=batch_run(), **choose_precision().trainer_args())
    args.update(extra)
    return DPOConfig(**args)


def make_dpo_trainer(model, tokenizer, train_rows: list[dict], *, output_dir: str, run_name: str = "dpo",
                     peft_config=None, callbacks: list | None = None, plan: CheckpointPlan = NO_CHECKPOINTS,
                     **config):
    """A DPOTrainer on the rows, to train with `helpers.runs.train(trainer, plan)`; ref_model=None so that with
    a peft model the reference is the adapter switched off. config: dpo_config's keywords
    (`dpo_knobs(recipe)`, seed, ...); the run checkpoints into its sub-folder `run_name` of the plan."""
    from trl import DPOTrainer

    args = dpo_config(**config, **plan.trainer_args(run_name, output_dir))
    return DPOTrainer(model=model, ref_model=None, args=args, train_dataset=preference_dataset(train_rows),
                      processing_class=tokenizer, peft_config=peft_config, callbacks=callbacks)


def trl_batch_loss(trainer, n: int = 16) -> dict[str, float]:
    """TRL's own loss computation on the first n rows of its tokenized training set (collated by its collator)."""
    examples = [trainer.train_dataset[i] for i in range(n)]
    batch = trainer.data_collator(examples)
    batch = {k: v.to(trainer.accelerator.device) for k, v in batch.items()}
    was_training = trainer.model.training
    trainer.model.eval()
    with torch.no_grad(), trl_forward(trainer):      # TRL's loss runs on TRL's patched forward
        loss = trainer.compute_loss(trainer.model, batch).item()
    trainer.model.train(was_training)
    metrics = {k: v[-1] for k, v in trainer._metrics["eval"].items() if k.startswith("rewards/")}
    trainer._metrics["eval"].clear()
    return {"loss": loss, **metrics}


def reward_curves(trainer) -> dict[str, list[tuple[int, float]]]:
    """(step, value) for rewards/chosen, rewards/rejected, rewards/margins, rewards/accuracies and loss."""
    keys = ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "loss")
    return {k: [(h["step"], h[k]) for h in trainer.state.log_history if k in h] for k in keys}


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
