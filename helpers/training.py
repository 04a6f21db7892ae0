"""SFT plumbing shared by the notebooks: chat rows as prompt/completion, TRL's SFTTrainer with the course's
settings, trained by the one routine (`helpers.runs.train`).

Notebook 02 builds `SFTConfig` and `SFTTrainer` in view, knob by knob; `sft_config` here builds the same
config (02 checks that they are equal) for the notebooks and loops that reuse it. The recipes live in
`helpers.recipes`.
"""
from __future__ import annotations

from datasets import Dataset

from helpers.env import batch_run
from helpers.evaluation import assistant_mask, chat_ids, last_turn_split
from helpers.precision import choose_precision
from helpers.runs import NO_CHECKPOINTS, CheckpointPlan, TrainedRun, train

# The knobs of an SFT recipe that SFTConfig takes (lora_r goes to the LoraConfig, full_learning_rate
# replaces learning_rate for full fine-tuning).
SFT_KNOBS = ("learning_rate", "epochs", "batch_size", "max_length", "warmup_steps", "max_steps")


def sft_knobs(recipe: dict, **changes) -> dict:
    """The SFTConfig knobs of a recipe (those it has), with changes applied: `sft_config(..., **sft_knobs(r))`."""
    unknown = sorted(k for k in changes if k not in SFT_KNOBS)
    if unknown:
        raise KeyError(f"{unknown} are not SFT knobs; the SFT knobs are {list(SFT_KNOBS)}")
    return {**{k: recipe[k] for k in SFT_KNOBS if k in recipe}, **changes}


def prompt_completion(row: dict) -> dict:
    """A chat row as TRL's conversational prompt/completion (`helpers.evaluation.last_turn_split`): the last
    turn only. DPO's layout; SFT uses `sft_example`, which trains every assistant turn."""
    prompt, completion = last_turn_split(row["messages"])
    return {"prompt": prompt, "completion": completion}


def sft_example(tokenizer, row: dict, where: str = "row") -> dict:
    """A chat row as one tokenised SFT example: the whole conversation's `input_ids` and a `completion_mask`
    that puts the loss on every assistant turn, its end-of-turn token included, and on no system or user
    token (`helpers.evaluation.assistant_mask`; any chat template, no `{% generation %}` markers needed).

    A multi-turn conversation stays one example: cut into its last turn only, it would lose the supervision
    of every earlier answer. For a single-turn row the ids and the mask are TRL's own prompt/completion cut.
    """
    ids, mask = assistant_mask(tokenizer, row["messages"], where)
    return {"input_ids": ids, "completion_mask": mask}


def sft_dataset(rows: list[dict], tokenizer) -> Dataset:
    """Chat rows as SFTTrainer's tokenised dataset (`sft_example` each); TRL builds the labels from the mask."""
    return Dataset.from_list([sft_example(tokenizer, r, f"row {i}") for i, r in enumerate(rows)])


def fit_to_length(rows: list[dict], tokenizer, max_length: int) -> tuple[list[dict], int]:
    """(rows whose whole conversation fits in max_length tokens, how many were left out).

    The trainer would cut longer rows silently, often through the answer; the notebooks print the count.
    """
    lengths = [len(chat_ids(tokenizer, r["messages"])) for r in rows]
    kept = [r for r, n in zip(rows, lengths) if n <= max_length]
    return kept, len(rows) - len(kept)


def sft_config(output_dir: str, *, learning_rate: float, epochs: float = 1, batch_size: int = 8,
               max_length: int = 128, max_steps: int = -1, warmup_steps: float = 0, seed: int = 0,
               eval_steps: int | None = None, logging_steps: int = 5, gradient_checkpointing: bool = False,
               **extra):
    """The course's SFTConfig (the same knobs notebook 02 writes out); `extra` goes to SFTConfig as is
    (an argument SFTConfig does not have is refused by it)."""
    from trl import SFTConfig

    args = dict(output_dir=str(output_dir), completion_only_loss=True, max_length=max_length, packing=False,
                learning_rate=learning_rate, num_train_epochs=epochs, max_steps=max_steps,
                per_device_train_batch_size=batch_size, per_device_eval_batch_size=batch_size,
                lr_scheduler_type="linear", warmup_steps=warmup_steps, weight_decay=0.0,
                logging_steps=logging_steps, save_strategy="no", report_to="none", seed=seed, data_seed=seed,
                dataloader_num_workers=0, disable_tqdm=batch_run(),
                **choose_precision().trainer_args(gradient_checkpointing))
    if eval_steps:
        args.update(eval_strategy="steps", eval_steps=eval_steps)
    args.update(extra)
    return SFTConfig(**args)


def train_sft(model, tokenizer, train_rows: list[dict], eval_rows: list[dict] | None = None, *,
              output_dir: str, run_name: str = "sft", peft_config=None, callbacks: list | None = None,
              plan: CheckpointPlan = NO_CHECKPOINTS, **config) -> TrainedRun:
    """Supervised fine-tuning with TRL's SFTTrainer on chat rows, trained by `helpers.runs.train`.

    config: `sft_config`'s keywords (`sft_knobs(recipe)`, seed, ...). callbacks: extra TrainerCallbacks
    (e.g. one that measures the model every few steps). plan: the notebook's CheckpointPlan; this run
    checkpoints into its sub-folder `run_name`.
    """
    from trl import SFTTrainer

    if eval_rows is not None:
        config.setdefault("eval_steps", config.get("logging_steps", 5))
    saving = sorted(k for k in config if k.startswith("save_") or k == "load_best_model_at_end")
    if plan.checkpoint_dir and saving:
        raise ValueError(f"{saving} and a checkpoint_dir: the plan decides how this run saves; leave them out")
    config = {**plan.trainer_args(run_name, output_dir), **config}   # no plan: the caller's save settings win
    eval_dataset = sft_dataset(eval_rows, tokenizer) if eval_rows is not None else None
    trainer = SFTTrainer(model=model, args=sft_config(**config), train_dataset=sft_dataset(train_rows, tokenizer),
                         eval_dataset=eval_dataset,
                         processing_class=tokenizer, peft_config=peft_config, callbacks=callbacks)
    return train(trainer, plan)


def standard_lora(r: int = 8, target_modules="all-linear", lora_alpha: int | None = None, **kwargs):
    """A LoraConfig for a causal LM: rank r, alpha = 2r unless given, no dropout (short runs)."""
    from peft import LoraConfig

    return LoraConfig(r=r, lora_alpha=lora_alpha or 2 * r, lora_dropout=kwargs.pop("lora_dropout", 0.0),
                      target_modules=target_modules, task_type="CAUSAL_LM", **kwargs)
