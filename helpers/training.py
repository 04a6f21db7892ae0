"""Training plumbing shared by the notebooks: recipes, SFT rows as prompt/completion, TRL's SFTTrainer with the
course's settings, loss curves.

Notebook 02 builds `SFTConfig` and `SFTTrainer` in view, knob by knob; `sft_config` here builds the same
config (02 checks that they are equal) for the notebooks and loops that reuse it.
"""
from __future__ import annotations

import time

from datasets import Dataset
from transformers import PrinterCallback, TrainerCallback

from helpers.checkpoints import NO_CHECKPOINTS, train_resumable
from helpers.env import batch_run
from helpers.models import count_parameters
from helpers.precision import choose_precision

# One SFT recipe per model scale, with the course's parameter names. "tiny": the 3.3M-parameter tiny-base
# (tuned by measurement in notebook 02). "real": 100M-8B models, at the learning rates peers use for LoRA.
# learning_rate is LoRA's; full_learning_rate is full fine-tuning's (every weight moves: a smaller step).
SFT_RECIPES = {
    "tiny": {"learning_rate": 3e-3, "full_learning_rate": 2e-4, "epochs": 6, "batch_size": 16, "max_length": 128,
             "lora_r": 8, "warmup_steps": 0},
    "real": {"learning_rate": 2e-4, "full_learning_rate": 2e-5, "epochs": 1, "batch_size": 8, "max_length": 256,
             "lora_r": 8, "warmup_steps": 0.05},
}
TINY_MAX_PARAMETERS = 20_000_000  # below this a model gets the tiny recipes


def model_scale(model) -> str:
    """'tiny' for the course's tiny models, 'real' for everything else."""
    return "tiny" if count_parameters(model) < TINY_MAX_PARAMETERS else "real"


def pick_recipe(recipes: dict[str, dict], model, **overrides) -> dict:
    """The recipe for this model's scale, with every override that is not None applied.

    An override the recipe does not know is refused (a misspelt knob would otherwise do nothing).
    """
    recipe = dict(recipes[model_scale(model)])
    unknown = [k for k in overrides if k not in recipe]
    if unknown:
        raise KeyError(f"unknown recipe setting {unknown}; the recipe has {sorted(recipe)}")
    recipe.update({k: v for k, v in overrides.items() if v is not None})
    return recipe


def prompt_completion(row: dict) -> dict:
    """A chat row as TRL's conversational prompt/completion: every turn but the last, and the last (the target).

    With this layout TRL computes the loss on the completion only, for any chat template (it needs no
    `{% generation %}` markers): the completion is what the full conversation adds after the prompt
    rendered with the generation prompt, the end-of-turn token included.
    """
    messages = row["messages"]
    return {"prompt": messages[:-1], "completion": messages[-1:]}


def sft_dataset(rows: list[dict]) -> Dataset:
    return Dataset.from_list([prompt_completion(r) for r in rows])


def fit_to_length(rows: list[dict], tokenizer, max_length: int) -> tuple[list[dict], int]:
    """(rows whose whole conversation fits in max_length tokens, how many were left out).

    The trainer would cut longer rows silently, often through the answer; the notebooks print the count.
    """
    lengths = [len(tokenizer.apply_chat_template(r["messages"], tokenize=True, return_dict=True)["input_ids"])
               for r in rows]
    kept = [r for r, n in zip(rows, lengths) if n <= max_length]
    return kept, len(rows) - len(kept)


def sft_config(output_dir: str, *, learning_rate: float, epochs: float = 1, batch_size: int = 8,
               max_length: int = 128, max_steps: int = -1, warmup_steps: float = 0, seed: int = 0,
               eval_steps: int | None = None, logging_steps: int = 5, gradient_checkpointing: bool = False,
               lora_r: int | None = None, full_learning_rate: float | None = None, **extra):
    """The course's SFTConfig (the same knobs notebook 02 writes out). lora_r and full_learning_rate are
    accepted and ignored, so that a whole recipe can be passed; anything else goes to SFTConfig as is."""
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


class Stopwatch(TrainerCallback):
    """Wall time of training only (not of dataset preparation); 0 when nothing was trained."""
    seconds = 0.0

    def on_train_begin(self, args, state, control, **kw):
        self.start = time.perf_counter()

    def on_train_end(self, args, state, control, **kw):
        self.seconds = time.perf_counter() - self.start


def quiet(trainer):
    """No log line printed per logging step (the notebooks plot the log instead); returns the trainer."""
    trainer.remove_callback(PrinterCallback)
    return trainer


def train_sft(model, tokenizer, train_rows: list[dict], eval_rows: list[dict] | None = None, *,
              output_dir: str, peft_config=None, callbacks: list | None = None, checkpoints: dict | None = None,
              **config):
    """Supervised fine-tuning with TRL's SFTTrainer on chat rows; returns the trained trainer.

    config: `sft_config`'s keywords (a recipe: learning_rate, epochs, batch_size, max_length, ...).
    callbacks: extra TrainerCallbacks (e.g. one that measures the model every few steps).
    checkpoints: `helpers.checkpoints.checkpointing(...)`: save every N steps and resume from the last.
    """
    from trl import SFTTrainer

    if eval_rows is not None:
        config.setdefault("eval_steps", config.get("logging_steps", 5))
    checkpoints = checkpoints or NO_CHECKPOINTS
    config.update(checkpoints["save"])
    output_dir = checkpoints["output_dir"] or output_dir
    stopwatch = Stopwatch()
    trainer = quiet(SFTTrainer(model=model, args=sft_config(output_dir, **config),
                               train_dataset=sft_dataset(train_rows),
                               eval_dataset=sft_dataset(eval_rows) if eval_rows is not None else None,
                               processing_class=tokenizer, peft_config=peft_config,
                               callbacks=[stopwatch, *checkpoints["callbacks"], *(callbacks or [])]))
    train_resumable(trainer, checkpoints)
    trainer.train_seconds = checkpoints["seconds_before"] + stopwatch.seconds   # earlier sessions' included
    trainer.model.eval()
    drop_trl_forward_patch(trainer.model)
    return trainer


def drop_trl_forward_patch(model) -> None:
    """Give a model back its own `forward` after a TRL trainer is done with it.

    TRL 1.x trainers replace `forward` on the model *instance* by a closure over the original bound
    method (its fused LM head). The closure survives training: a `copy.deepcopy` of the model then
    still runs the ORIGINAL model's forward (generation included), so the copy's new adapter has no
    effect. Measured in notebook 05 before this fix: a DPO-trained copy generated exactly like the SFT model.
    Deleting the instance attribute restores the class's forward; TRL adds its patch again when a new
    trainer is built.
    """
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    for m in (model, inner):
        m.__dict__.pop("forward", None)


def loss_curves(trainer) -> dict[str, list[tuple[int, float]]]:
    """(step, loss) pairs for training and validation from the trainer's log."""
    history = trainer.state.log_history
    return {"train": [(h["step"], h["loss"]) for h in history if "loss" in h],
            "eval": [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h]}


def standard_lora(r: int = 8, target_modules="all-linear", lora_alpha: int | None = None, **kwargs):
    """A LoraConfig for a causal LM: rank r, alpha = 2r unless given, no dropout (short runs)."""
    from peft import LoraConfig

    return LoraConfig(r=r, lora_alpha=lora_alpha or 2 * r, lora_dropout=kwargs.pop("lora_dropout", 0.0),
                      target_modules=target_modules, task_type="CAUSAL_LM", **kwargs)
