"""The ablations of notebook 02, written once so that any model and budget can run them: a run per setting and
seed from a fresh model, scored on held-out rows; LoRA at a parameter budget; AdaLoRA's rank allocation
driven from the trainer.

A setting is a peft config (LoRA, rsLoRA, AdaLoRA) or None for full fine-tuning; the notebook builds the
configs in view and hands them to `score_setting`.
"""
from __future__ import annotations

import copy
import math
import re

import torch
from transformers import TrainerCallback

from helpers.arch import block_linear_shapes, decoder_layers
from helpers.env import seed_everything
from helpers.evaluation import generate_replies, heldout_loss
from helpers.lora import lora_parameter_count
from helpers.models import count_parameters, load_model
from helpers.runs import NO_CHECKPOINTS, CheckpointPlan
from helpers.training import sft_knobs, train_sft


def target_shapes(model, targets) -> list[tuple[int, int]]:
    """(n_out, n_in) of every linear layer LoRA would adapt for `targets` (short names, or "all-linear": every
    linear layer of the blocks), in every block: one block's shapes (`helpers.arch.block_linear_shapes`) times
    the number of blocks."""
    shapes = block_linear_shapes(model)
    names = list(shapes) if targets == "all-linear" else [t for t in targets if t in shapes]
    if not names:
        raise ValueError(f"no linear layer of the model is named by {targets!r}")
    return [shapes[n] for n in names] * len(decoder_layers(model))


def lora_trainable(model, targets, r: int) -> int:
    """Parameters LoRA of rank r trains on `targets` (`helpers.lora.lora_parameter_count` per adapted layer)."""
    return sum(lora_parameter_count(n_out, n_in, r) for n_out, n_in in target_shapes(model, targets))


def rank_for_budget(model, targets, budget: int) -> int:
    """The rank whose LoRA on `targets` trains closest to `budget` parameters (at least 1): how the LoRA paper
    compares placements at a fixed number of trainable parameters (its Table 5)."""
    return max(1, round(budget / lora_trainable(model, targets, 1)))


def full_rank(model, targets) -> int:
    """The largest rank any adapted layer can hold: min(n_out, n_in) of the widest one. At this rank B·A can
    be any matrix of the layer's shape, as full fine-tuning's update can."""
    return max(min(shape) for shape in target_shapes(model, targets))


class RankAllocation(TrainerCallback):
    """AdaLoRA's budget step, which the trainer does not call: after each optimizer step, before the
    gradients are cleared, peft scores every rank-one component of every adapted matrix by its importance
    and prunes the least important towards the target budget (`update_and_allocate`)."""

    def on_optimizer_step(self, args, state, control, model=None, **kwargs):
        model.base_model.update_and_allocate(state.global_step)


def kept_ranks(model) -> dict[str, int]:
    """AdaLoRA's final rank per adapted matrix (how many components its rank pattern keeps)."""
    pattern = model.peft_config["default"].rank_pattern or {}   # keys: <module>.lora_E.<adapter>
    return {name.split(".lora_E")[0]: int(sum(bool(x) for x in keep)) for name, keep in pattern.items()}


def adalora_trainable(model) -> int:
    """Parameters AdaLoRA's final adapter keeps: rank·(n_in + n_out + 1) per matrix (A's rows, B's columns and
    the singular values E), with the rank its pattern kept."""
    ranks = kept_ranks(model)
    total = 0
    for name, module in model.named_modules():
        key = next((k for k in ranks if name.endswith(k)), None)
        if key is not None and hasattr(module, "lora_E"):
            n_out, n_in = module.base_layer.weight.shape
            total += ranks[key] * (n_out + n_in + 1)
    return total


def score_setting(model_name, tokenizer, train_rows: list[dict], test_rows: list[dict], peft_config, *,
                  recipe: dict, learning_rate: float, steps: int, seed: int, output_dir, run_name: str,
                  plan: CheckpointPlan = NO_CHECKPOINTS, score_replies=None) -> dict:
    """One ablation run: a fresh model, `steps` steps of SFT with `peft_config` (None: full fine-tuning, in
    fp32), scored by held-out loss on `test_rows` and, given `score_replies(replies) -> dict`, by what it
    says of the greedy replies. Returns those scores and the trainable parameters (AdaLoRA: those its final
    ranks keep, and `kept_ranks`, its final rank per matrix)."""
    from peft import AdaLoraConfig

    # peft writes into its config (AdaLoRA its rank pattern): each run gets its own copy, so that no seed
    # starts from another's state
    peft_config = copy.deepcopy(peft_config)
    seed_everything(seed)
    fresh = load_model(model_name, dtype=torch.float32 if peft_config is None else None)[0]
    adaptive = isinstance(peft_config, AdaLoraConfig)
    if adaptive and peft_config.total_step != steps:
        raise ValueError(f"AdaLoRA's total_step ({peft_config.total_step}) must be the run's steps ({steps}): "
                         "its schedule prunes ranks by it")
    # a folder name per setting: "α/√r r=4" -> "α_sqrtr_r=4", distinct from "α/r r=4" -> "α_r_r=4"
    run_name = re.sub(r"[^\w.=+-]+", "_", run_name.replace("√", "sqrt").replace("×", "x"))
    run = train_sft(fresh, tokenizer, train_rows, output_dir=str(output_dir), run_name=run_name,
                    peft_config=peft_config, plan=plan, seed=seed,
                    callbacks=[RankAllocation()] if adaptive else None,
                    **sft_knobs(recipe, learning_rate=learning_rate, max_steps=steps))
    loss = heldout_loss(run.model, tokenizer, test_rows)
    score = {"heldout_loss": loss if math.isfinite(loss) else float("inf")}
    if score_replies is not None:
        score |= score_replies(generate_replies(run.model, tokenizer, test_rows))
    if not adaptive:
        return {"trainable": count_parameters(run.model, trainable_only=True), **score}
    return {"trainable": adalora_trainable(run.model), **score, "kept_ranks": kept_ranks(run.model)}


def learning_rate_sweep(model_name: str, tokenizer, train_rows: list[dict], test_rows: list[dict],
                        rates: dict[str, list[float]], *, recipe: dict, steps: int, seed: int = 0,
                        output_dir) -> list[dict]:
    """The learning rate chosen by measurement: for each method ("lora": LoRA of the recipe's rank on every
    linear layer; "full": full fine-tuning) and each rate of its grid, one run of `steps` steps from a fresh
    model (`score_setting`), scored by held-out loss and by the exact match of its greedy replies. One seed
    a point, as a sweep is: the best point and its neighbours are what to read, not a single gap."""
    import time

    from helpers.evaluation import exact_match
    from helpers.training import standard_lora

    def exact(replies):
        return {"exact_match": exact_match(replies, test_rows)}

    found = []
    for method, grid in rates.items():
        if method not in ("lora", "full"):
            raise ValueError(f"method {method!r}: the sweep knows 'lora' and 'full'")
        for rate in grid:
            start = time.perf_counter()
            config = standard_lora(recipe["lora_r"]) if method == "lora" else None
            score = score_setting(model_name, tokenizer, train_rows, test_rows, config, recipe=recipe,
                                  learning_rate=rate, steps=steps, seed=seed, output_dir=output_dir,
                                  run_name=f"{method}_lr{rate:g}", score_replies=exact)
            found.append({"method": method, "learning_rate": rate, **score,
                          "seconds": round(time.perf_counter() - start, 1)})
            print(found[-1], flush=True)
    return found


def main(argv: list[str] | None = None) -> None:
    """`python -m helpers.sweeps`: the learning-rate sweep of a model on the tiny world's letter reversal
    (notebook 06's skill: short, learnable in tens of steps), written to outputs/rate_sweep/<label>.json."""
    import argparse
    import json

    from helpers.data import evenly_spaced, load_world
    from helpers.paths import ROOT
    from helpers.recipes import REAL_MODEL, recipe_of
    from helpers.training import fit_to_length

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--model", default=REAL_MODEL)
    parser.add_argument("--scale", default="real", help="the recipe scale whose knobs the runs use")
    parser.add_argument("--steps", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--test-rows", type=int, default=32)
    parser.add_argument("--lora", type=float, nargs="*", default=[2e-4, 6e-4, 2e-3, 6e-3])
    parser.add_argument("--full", type=float, nargs="*", default=[2e-5, 6e-5, 2e-4, 6e-4])
    parser.add_argument("--label", default="real")
    args = parser.parse_args(argv)
    recipe = {**recipe_of("sft", args.scale), "batch_size": args.batch_size, "max_length": args.max_length}
    tokenizer = load_model(args.model)[1]
    train_rows, dropped = fit_to_length(load_world("skill_train"), tokenizer, args.max_length)
    test_rows = evenly_spaced(load_world("skill_test"), args.test_rows)
    out = ROOT / "outputs" / "rate_sweep"
    print(f"{len(train_rows)} training rows ({dropped} longer than {args.max_length} tokens left out), "
          f"{len(test_rows)} held out; {args.steps} steps of {args.batch_size}")
    rows = learning_rate_sweep(args.model, tokenizer, train_rows, test_rows, {"lora": args.lora, "full": args.full},
                               recipe=recipe, steps=args.steps, output_dir=out / args.label)
    (out / f"{args.label}.json").write_text(json.dumps({"args": vars(args), "runs": rows}, indent=1))


if __name__ == "__main__":
    main()
