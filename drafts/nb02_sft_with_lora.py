# %% [markdown]
# # 02 · Supervised fine-tuning with LoRA
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](x)
#
# **Goals.** By the end of this notebook you can
# 1. turn `<input, output>` pairs into chat `messages`, render them with the chat template, and say which tokens carry the loss;
# 2. find a model's linear layers by name and write the `LoraConfig` that targets them;
# 3. run supervised fine-tuning (SFT) with TRL's `SFTTrainer`, read train and validation loss curves, and pick the best checkpoint of a run that overfits;
# 4. measure what SFT changed (chat exact match on facts seen in SFT and on facts held out of it);
# 5. run the LoRA paper's two ablations (rank, target modules) at small scale;
# 6. save the adapter, load it back, and merge it into the base model.
#
# Every number printed below is measured in this run, on whatever machine runs it.

# %%
# written by `python -m helpers.course --sync`

# %% tags=["parameters"]
model = "data/tiny-base"                     # a local folder or a hub id of any causal LM
dataset = "data/world/sft_train.jsonl"       # a local JSON/JSONL file or a hub id (Alpaca, messages, prompt/completion)
world_dir = "data/world"                     # validation and test sets of the tiny world
learning_rate = None                         # None: the course recipe, helpers.training.SFT_RECIPE
epochs = None                                # None: the course recipe
lora_r = 8
sweep_steps = 12                             # the fixed budget of every ablation run (optimizer steps)
seed = 0
output_dir = "../outputs/02_sft_with_lora"
metrics_path = "../outputs/02_sft_with_lora/metrics.json"

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from peft import LoraConfig, PeftModel, get_peft_model

from helpers.base_model import count_parameters, folder_bytes, load_model
from helpers.data import load_world
from helpers.env import describe_machine, seed_everything
from helpers.evaluation import chat_exact_match, generate_replies
from helpers.formats import load_rows
from helpers.paths import resolve
from helpers.plots import plot_loss_curves, save_metrics, table
from helpers.training import (SFT_RECIPE, attention_targets, check_target_modules, linear_module_names,
                              loss_curves, train_sft, trainable_parameters)

seed_everything(seed)
learning_rate = learning_rate or SFT_RECIPE["learning_rate"]
epochs = epochs or SFT_RECIPE["num_train_epochs"]
batch_size = SFT_RECIPE["per_device_train_batch_size"]
out = Path(output_dir); out.mkdir(parents=True, exist_ok=True)
world_dir = resolve(world_dir)
describe_machine()
print(f"recipe: learning rate {learning_rate}, {epochs} epochs, batch size {batch_size}, LoRA rank {lora_r}")

# %% [markdown]
# ## 1. The data: `<input, output>` pairs as chat messages
#
# SFT data is a list of `<input, output>` pairs. Chat models take them as `messages`: a user turn (the input)
# and an assistant turn (the output). `helpers.formats.load_rows` reads the common layouts (Alpaca's
# `instruction`/`input`/`output`, `messages`, `prompt`/`completion`) from a local file or a hub id and maps
# them onto `messages`. Three evaluation sets:
# - **validation** (`sft_val`): questions about other facts, for the validation loss;
# - **seen**: one question per fact from the SFT training set;
# - **held out** (`sft_test`): facts that never appear in SFT. The base model read them in pretraining; SFT only
#   has to teach it to *answer*. This is the test that matters.

# %%
train_rows = load_rows(dataset)
val_rows = load_world("sft_val", world_dir)
heldout_rows = load_world("sft_test", world_dir)
first_variants = train_rows[::3]                                  # one question per fact (three phrasings each)
seen_rows = first_variants[::max(1, len(first_variants) // len(heldout_rows))][:len(heldout_rows)]
print(f"train {len(train_rows)} rows, validation {len(val_rows)}, seen sample {len(seen_rows)}, held out {len(heldout_rows)}")
train_rows[0]["messages"]

# %% [markdown]
# The **chat template** (对话模板) turns the messages into the one string the model reads. It is stored with
# the tokenizer, so every library renders it the same way:

# %%
base, tok = load_model(model)
print(tok.apply_chat_template(train_rows[0]["messages"], tokenize=False))

# %% [markdown]
# **Which tokens carry the loss.** SFT is next-token prediction, but the loss is averaged only over the
# assistant's tokens: $\mathcal{L} = -\frac{1}{|A|}\sum_{t \in A} \log p_\theta(x_t \mid x_{<t})$, with $A$ the
# assistant tokens. The model is not trained to predict the user's question. TRL's `assistant_only_loss=True`
# gets $A$ from the template's `{% generation %}` markers, as this mask:

# %%
enc = tok.apply_chat_template(train_rows[0]["messages"], return_dict=True, return_assistant_tokens_mask=True)
tokens = tok.convert_ids_to_tokens(enc["input_ids"])
mask_table = table([{"token": t, "carries loss": bool(m)} for t, m in zip(tokens, enc["assistant_masks"])])
print(f"{sum(enc['assistant_masks'])} of {len(tokens)} tokens carry the loss")
mask_table.T

# %% [markdown]
# ## 2. Where LoRA goes
#
# LoRA adds a low-rank update $\Delta W = \frac{\alpha}{r} B A$ next to chosen linear layers and trains only
# $A$ and $B$. `target_modules` names those layers by their short names, which differ between architectures
# (Llama/Qwen `q_proj`, GPT-2 `c_attn`, ...). List them first:

# %%
print("linear layers:", linear_module_names(base))
print("query/value projections by this model's names:", attention_targets(base))

# %%
lora_config = LoraConfig(
    r=lora_r,                       # rank of the update
    lora_alpha=2 * lora_r,          # scale alpha / r = 2
    lora_dropout=0.0,               # short runs: no dropout
    target_modules="all-linear",    # every linear layer in the blocks (attention and MLP)
    task_type="CAUSAL_LM",
)
before_heldout, before_replies = chat_exact_match(base, tok, heldout_rows, return_details=True)
before_seen = chat_exact_match(base, tok, seen_rows)
lora_model = get_peft_model(base, lora_config)
trainable, total = trainable_parameters(lora_model)
print(f"exact match before SFT: seen {before_seen:.0%}, held out {before_heldout:.0%}")
print(f"trainable parameters: {trainable:,} of {total:,} ({trainable / total:.2%})")

# %% [markdown]
# ## 3. Training: SFT with TRL
#
# `train_sft` builds TRL's `SFTConfig` (assistant-only loss, no checkpoints, no external loggers) and
# `SFTTrainer`, and evaluates the validation loss every few steps.

# %%
trainer = train_sft(lora_model, tok, train_rows, val_rows, output_dir=str(out / "run"),
                    learning_rate=learning_rate, num_train_epochs=epochs,
                    per_device_train_batch_size=batch_size, logging_steps=5, eval_steps=15, seed=seed)
curves = loss_curves(trainer)
plot_loss_curves(curves, title=f"SFT with LoRA r={lora_r}: {trainer.state.global_step} steps")
plt.show()
print(f"trained in {trainer.train_seconds:.1f} s; final validation loss {curves['eval'][-1][1]:.3f}")

# %% [markdown]
# **Overfitting and picking the checkpoint.** Train longer than needed and the validation loss turns up:
# the adapter starts to memorise its training questions. To show it cheaply we train on a small subset
# (8 facts) at a higher learning rate for many epochs. The trainer saves a checkpoint at each
# evaluation and, with `load_best_model_at_end=True` and `metric_for_best_model="eval_loss"`, reloads the one
# with the lowest validation loss when training ends.

# %%
small_rows = train_rows[:24]
base_small, _ = load_model(model)
overfit = train_sft(base_small, tok, small_rows, val_rows, output_dir=str(out / "overfit"),
                    peft_config=lora_config, learning_rate=2.5 * learning_rate, num_train_epochs=16,
                    per_device_train_batch_size=8, logging_steps=3, eval_steps=6,
                    save_strategy="steps", save_steps=6, save_total_limit=2,
                    load_best_model_at_end=True, metric_for_best_model="eval_loss", seed=seed)
overfit_curves = loss_curves(overfit)
ax = plot_loss_curves(overfit_curves, title="a run that overfits (8 facts, many epochs)")
best_step = int(overfit.state.best_model_checkpoint.rsplit("-", 1)[1])
ax.axvline(best_step, color="gray", ls="--", label="best checkpoint"); ax.legend(); plt.show()
final_val = overfit_curves["eval"][-1][1]
print(f"lowest validation loss {overfit.state.best_metric:.3f} at step {best_step}; at the end {final_val:.3f}")
print(f"validation loss of the model the trainer kept: {overfit.evaluate()['eval_loss']:.3f}")

# %% [markdown]
# ## 4. Did it work? Exact match before and after
#
# A reply counts when it equals the reference answer (ignoring case and final punctuation), greedy decoding.

# %%
after_seen = chat_exact_match(trainer.model, tok, seen_rows)
after_heldout, after_replies = chat_exact_match(trainer.model, tok, heldout_rows, return_details=True)
table([{"facts": "seen in SFT", "before": before_seen, "after": after_seen},
       {"facts": "held out of SFT", "before": before_heldout, "after": after_heldout}], index="facts")

# %%
pd_rows = [{"question": r["messages"][0]["content"], "reference": r["messages"][-1]["content"],
            "before SFT": b, "after SFT": a}
           for r, b, a in list(zip(heldout_rows, before_replies, after_replies))[:8]]
table(pd_rows)

# %% [markdown]
# ## 5. Ablations under a fixed budget (LoRA paper, Tables 5 and 6)
#
# Each run: a fresh base model, `sweep_steps` optimizer steps at twice the recipe's learning rate, score = held-out exact
# match. The paper fixes the number of trainable parameters; we fix the training compute and show the
# trainable count alongside. First the **rank** (all linear layers), then the **target modules** (rank `lora_r`).

# %%
def ablation_run(name: str, lora: LoraConfig) -> dict:
    seed_everything(seed)
    fresh, _ = load_model(model)
    check_target_modules(fresh, lora.target_modules)    # a clear error if a name is not in this model
    run = train_sft(fresh, tok, train_rows, output_dir=str(out / "sweep" / name), peft_config=lora,
                    learning_rate=2 * learning_rate, max_steps=sweep_steps,
                    per_device_train_batch_size=batch_size, seed=seed)
    return {"setting": name, "trainable params": trainable_parameters(run.model)[0],
            "held-out exact match": chat_exact_match(run.model, tok, heldout_rows),
            "final train loss": loss_curves(run)["train"][-1][1]}


rank_results = [ablation_run(f"r={r}", LoraConfig(r=r, lora_alpha=2 * r, target_modules="all-linear",
                                                  task_type="CAUSAL_LM")) for r in (1, 2, 4, 8, 16, 64)]
table(rank_results, index="setting")

# %%
attn = {"q": "q_proj", "k": "k_proj", "v": "v_proj", "o": "o_proj"}
target_settings = {"q": ["q"], "k": ["k"], "v": ["v"], "o": ["o"], "q+v": ["q", "v"],
                   "q+k+v+o": ["q", "k", "v", "o"], "all-linear": "all-linear"}
target_results = []
for name, roles in target_settings.items():
    targets = roles if roles == "all-linear" else [attn[x] for x in roles]
    target_results.append(ablation_run(name, LoraConfig(r=lora_r, lora_alpha=2 * lora_r,
                                                        target_modules=targets, task_type="CAUSAL_LM")))
table(target_results, index="setting")

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
axes[0].plot([r["setting"] for r in rank_results], [r["held-out exact match"] for r in rank_results], marker="o")
axes[0].set(title="rank (all linear layers)", ylabel="held-out exact match", ylim=(0, 1))
axes[1].bar([r["setting"] for r in target_results], [r["held-out exact match"] for r in target_results])
axes[1].set(title=f"target modules (r={lora_r})", ylim=(0, 1))
for ax in axes:
    ax.grid(alpha=0.3)
plt.show()

# %% [markdown]
# ## 6. Saving, loading back, merging
#
# `save_pretrained` on a peft model writes only the adapter: its config and the $A$, $B$ matrices.

# %%
adapter_dir = out / "adapter"
trainer.model.save_pretrained(adapter_dir)
base_dir = out / "base_copy"                       # the base model saved the same way, for a fair size
load_model(model)[0].save_pretrained(base_dir)
adapter_bytes, base_model_bytes = folder_bytes(adapter_dir), folder_bytes(base_dir)
for f in sorted(adapter_dir.iterdir()):
    print(f"{f.name:32s} {f.stat().st_size:>12,} bytes")
print(f"adapter {adapter_bytes:,} bytes = {adapter_bytes / base_model_bytes:.1%} of the base model's {base_model_bytes:,}")

# %%
reloaded = PeftModel.from_pretrained(load_model(model)[0], adapter_dir).eval()
reloaded_replies = generate_replies(reloaded, tok, heldout_rows)
merged = reloaded.merge_and_unload()               # W <- W + (alpha / r) B A, a plain model again
merged_replies = generate_replies(merged, tok, heldout_rows)
reload_equal = reloaded_replies == [r.strip() for r in after_replies]
merged_generations_equal = merged_replies == reloaded_replies
print(f"reloaded adapter gives the trained model's replies: {reload_equal}")
print(f"merged model gives the same replies as the adapter: {merged_generations_equal}")
print(f"merged model: {type(merged).__name__}, {count_parameters(merged):,} parameters (no LoRA layers left)")

# %%
metrics = {
    "exact_match_before": before_heldout, "exact_match_before_seen": before_seen,
    "exact_match_after_seen": after_seen, "exact_match_after_heldout": after_heldout,
    "trainable_params": trainable, "train_seconds": trainer.train_seconds,
    "overfit": {"best_step": best_step, "best_eval_loss": overfit.state.best_metric, "final_eval_loss": final_val},
    "rank_sweep": {r["setting"]: r["held-out exact match"] for r in rank_results},
    "target_sweep": {r["setting"]: r["held-out exact match"] for r in target_results},
    "adapter_bytes": adapter_bytes, "base_model_bytes": base_model_bytes,
    "reloaded_generations_equal": reload_equal, "merged_generations_equal": merged_generations_equal,
}
save_metrics(metrics, metrics_path)
metrics
