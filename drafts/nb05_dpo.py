# %% [markdown]
# # 05 · DPO: aligning the SFT model with preference data, measured
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](x)
#
# **Goals.** By the end of this notebook you can
# 1. read preference data (`prompt`, `chosen`, `rejected`) and say where it comes from;
# 2. compute the DPO loss from its formula on a batch, and check it equals what TRL's `DPOTrainer` computes;
# 3. train a LoRA adapter with DPO on top of an SFT model whose reference is *the same model with the adapter switched off*;
# 4. read the training curves (rewards/chosen, rewards/rejected, rewards/margins, rewards/accuracies);
# 5. measure whether behaviour changed (preferred rate), whether knowledge survived (fact probes), and what β trades;
# 6. place DPO next to PPO-style RLHF, ORPO, KTO and GRPO.
#
# Every number printed below is measured in this run (CPU, about two minutes).

# %%
# written by `python -m helpers.course --sync`

# %% tags=["parameters"]
model = "data/tiny-base"          # a local folder or a hub id
world_dir = "data/world"          # the tiny world's datasets
dataset = ""                      # "" = the tiny world's dpo_train; or a hub id / local JSON(L) path with prompt/chosen/rejected
seed = 0
beta = 0.1                        # DPO's β: how strongly the policy is tied to the reference
dpo_learning_rate = 5e-3
dpo_epochs = 2
sweep_betas = [0.05, 0.1, 0.5]
output_dir = "../outputs/05_dpo"
metrics_path = "../outputs/05_dpo/metrics.json"

# %%
import copy
import math
import time

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from helpers.base_model import load_model
from helpers.data import load_world
from helpers.dpo import (make_dpo_trainer, mean_abs_logratio, policy_and_reference_logps, reward_curves,
                         implicit_reward_accuracy, trl_batch_loss)
from helpers.env import describe_machine, seed_everything
from helpers.evaluation import fact_probe_accuracy, preferred_rate
from helpers.formats import load_rows
from helpers.paths import resolve
from helpers.plots import save_metrics, table
from helpers.training import SFT_RECIPE, standard_lora, train_sft
from helpers.world import SIGN_OFF, is_preferred

seed_everything(seed)
world_dir = resolve(world_dir)
started = time.perf_counter()
describe_machine()

# %% [markdown]
# ## 1. The data: a prompt, a chosen answer, a rejected answer
#
# Preference data records which of two answers to the same prompt people liked better. In practice it comes
# from a deployed model: users rate answers (thumbs up/down), or an A/B test shows two answers and asks which is
# better, or annotators rank samples. Each row is `<prompt, chosen, rejected>`, here in TRL's *conversational*
# layout (message lists). The tiny world's rule says which answer is preferred: **the right answer, closed with
# the sign-off** `"I hope this helps!"`. Half the rejected answers are the plain right answer (what SFT teaches),
# half are a wrong answer with the sign-off, so the rule needs both parts.

# %%
facts_by_id = {f["id"]: f for f in load_world("facts", world_dir)}
world_train, dpo_test = load_world("dpo_train", world_dir), load_world("dpo_test", world_dir)
train_rows = load_rows(dataset, split="train", kind="preference") if dataset else world_train
probes = load_world("probes", world_dir)
print(f"{len(train_rows)} training pairs, {len(dpo_test)} held-out pairs (facts never seen in SFT), {len(probes)} probes")
table([{"prompt": r["prompt"][0]["content"], "chosen": r["chosen"][0]["content"],
        "rejected": r["rejected"][0]["content"]} for r in world_train[:4]])

# %%
rule_check = {
    "chosen preferred by the rule": sum(is_preferred(r["chosen"][0]["content"], facts_by_id[r["fact_id"]]) for r in world_train),
    "rejected preferred by the rule": sum(is_preferred(r["rejected"][0]["content"], facts_by_id[r["fact_id"]]) for r in world_train),
    "rejected = plain right answer": sum(not r["rejected"][0]["content"].endswith(SIGN_OFF) for r in world_train),
    "pairs": len(world_train)}
table([rule_check])

# %% [markdown]
# ## 2. The starting point: an SFT model
#
# DPO starts from a model that already follows the chat format. We train the course's standard LoRA SFT adapter
# on the world's questions (notebook 02's recipe), then **merge** it into the weights: that merged model is the
# SFT model, and it will be DPO's *reference policy* π_ref.

# %%
base, tok = load_model(model)
sft_trainer = train_sft(base, tok, load_world("sft_train", world_dir), output_dir=f"{output_dir}/sft",
                        peft_config=standard_lora(), **SFT_RECIPE)
sft_model = sft_trainer.model.merge_and_unload().eval()
print(f"SFT: {sft_trainer.state.global_step} steps in {sft_trainer.train_seconds:.1f} s, adapter merged")

# %%
rate_before, replies_before = preferred_rate(sft_model, tok, dpo_test, facts_by_id, is_preferred)
fact_before = fact_probe_accuracy(sft_model, tok, probes)
print(f"SFT model: preferred rate on held-out prompts {rate_before:.2f}, fact probe accuracy {fact_before:.2f}")
table([{"prompt": p["prompt"][0]["content"], "SFT reply": r, "preferred": is_preferred(r, facts_by_id[p["fact_id"]])}
       for p, r in zip(dpo_test[:4], replies_before)])

# %% [markdown]
# ## 3. DPO with LoRA; the reference is the adapter switched off
#
# `DPOTrainer` with a `peft_config` wraps the SFT model in a new LoRA adapter and takes `ref_model=None`.
# To get π_ref it runs the same forward pass inside `use_adapter(model, None)`, i.e. `model.disable_adapter()`:
# with the adapter off the model *is* the SFT model, so no second copy of the weights is kept in memory.
# TRL tokenizes the prompt with the chat template's generation prompt and takes as completion what
# `prompt + chosen` adds after it (the answer and `<|end|>`); a sequence's log-probability is the **sum** over
# completion tokens of log π(token | everything before it).

# %%
policy = copy.deepcopy(sft_model)  # keep sft_model untouched for the β sweep
trainer = make_dpo_trainer(
    policy, tok, train_rows, output_dir=f"{output_dir}/dpo",
    peft_config=standard_lora(r=8),                 # a fresh adapter on top of the merged SFT weights
    beta=beta, learning_rate=dpo_learning_rate, num_train_epochs=dpo_epochs,
    per_device_train_batch_size=16, logging_steps=2, seed=seed)
print(type(trainer.model).__name__, "| ref_model:", trainer.ref_model, "| beta:", trainer.args.beta,
      "| loss_type:", trainer.args.loss_type)

# %% [markdown]
# ## 4. The loss from its formula, on one batch, against TRL
#
# $$\mathcal{L}_{DPO} = -\log \sigma\Big(\beta\,[\log \pi_\theta(y_w|x) - \log \pi_{ref}(y_w|x)] - \beta\,[\log \pi_\theta(y_l|x) - \log \pi_{ref}(y_l|x)]\Big)$$
#
# $y_w$ is the chosen answer, $y_l$ the rejected one; $\beta\,[\log \pi_\theta - \log \pi_{ref}]$ is the *implicit
# reward*. Before training the new adapter's B matrices are zero, so policy = reference, both log-ratios are 0, and
# the loss is $-\log\sigma(0) = \ln 2$. We compute it by hand from sequence log-probabilities and ask TRL for its loss
# on the same 16 pairs (its own collator and `compute_loss`).

# %%
def hand_dpo(model_, rows, beta_):
    lp = policy_and_reference_logps(model_, tok, rows)          # sums of completion-token log-probs
    chosen_rewards = beta_ * (lp["chosen_logps"] - lp["ref_chosen_logps"])
    rejected_rewards = beta_ * (lp["rejected_logps"] - lp["ref_rejected_logps"])
    margins = chosen_rewards - rejected_rewards
    return {"loss": -F.logsigmoid(margins).mean().item(), "rewards/margins": margins.mean().item(),
            "rewards/chosen": chosen_rewards.mean().item(), "rewards/rejected": rejected_rewards.mean().item()}

n_batch = 16
hand_start, trl_start = hand_dpo(trainer.model, train_rows[:n_batch], beta), trl_batch_loss(trainer, n_batch)
initial_loss = trl_start["loss"]
print(f"ln 2 = {math.log(2):.6f}")
table([dict(source="by hand", **hand_start), dict(source="TRL compute_loss", **trl_start)]).set_index("source")

# %% [markdown]
# ## 5. Training

# %%
trainer.train()
trainer.model.eval()
print(f"DPO: {trainer.state.global_step} steps in {trainer.stopwatch.seconds:.1f} s")
hand_end, trl_end = hand_dpo(trainer.model, train_rows[:n_batch], beta), trl_batch_loss(trainer, n_batch)
hand_vs_trl = max(abs(hand_start["loss"] - trl_start["loss"]), abs(hand_end["loss"] - trl_end["loss"]))
print(f"after training, same batch: hand {hand_end['loss']:.6f}, TRL {trl_end['loss']:.6f}; "
      f"largest |hand - TRL| (start, end) = {hand_vs_trl:.2e}")

# %%
curves = reward_curves(trainer)
fig, axes = plt.subplots(1, 4, figsize=(16, 3.2))
for ax, key in zip(axes, ["rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"]):
    ax.plot(*zip(*curves[key]), marker="o")
    ax.axhline(0, color="grey", lw=0.5)
    ax.set(title=key, xlabel="step")
plt.tight_layout()
plt.show()

# %% [markdown]
# * **rewards/chosen**: β·(log πθ − log π_ref) of the chosen answers, averaged over the batch: how much more (or less)
#   likely the policy makes the preferred answers than the reference does.
# * **rewards/rejected**: the same for the rejected answers; DPO pushes it down.
# * **rewards/margins**: chosen minus rejected reward; the loss is −log σ(margin), so it falls as the margin grows.
# * **rewards/accuracies**: the share of pairs in the batch where the chosen reward beats the rejected one.
#
# Note that DPO only needs the *margin* to grow: both rewards may fall (the chosen answer made less likely, the
# rejected much less), a known DPO behaviour; look at the left two panels to see which happened here.

# %% [markdown]
# ## 6. Did behaviour change?
#
# Three measures on the 58 held-out prompts (facts the SFT data never asked about) and on all 284 fact probes:
# the implicit reward accuracy (does the policy rank chosen above rejected, without generating?), the rate of
# greedy generations the rule prefers, and fact probe accuracy (alignment must not break knowledge).

# %%
heldout_logps = policy_and_reference_logps(trainer.model, tok, dpo_test)
heldout_accuracy = implicit_reward_accuracy(heldout_logps, beta)
rate_after, replies_after = preferred_rate(trainer.model, tok, dpo_test, facts_by_id, is_preferred)
fact_after = fact_probe_accuracy(trainer.model, tok, probes)
ranked_before = (heldout_logps["ref_chosen_logps"] > heldout_logps["ref_rejected_logps"]).float().mean().item()
table([{"measure": "held-out pairs ranked right*", "SFT (before)": ranked_before, "after DPO": heldout_accuracy},
       {"measure": "preferred rate (greedy)", "SFT (before)": rate_before, "after DPO": rate_after},
       {"measure": "fact probe accuracy", "SFT (before)": fact_before, "after DPO": fact_after}]).set_index("measure")

# %% [markdown]
# \* After DPO: the implicit reward accuracy, β·(log-ratio chosen − log-ratio rejected) > 0. Before DPO the policy *is*
# the reference, so every implicit reward is 0; we show instead how often the SFT model itself gives the chosen answer
# a higher log-probability than the rejected one.

# %%
table([{"prompt": p["prompt"][0]["content"], "SFT": b, "after DPO": a, "preferred": is_preferred(a, facts_by_id[p["fact_id"]])}
       for p, b, a in zip(dpo_test[:6], replies_before, replies_after)])

# %% [markdown]
# ## 7. A small β sweep: preference gained vs drift from the reference
#
# β scales the log-ratios inside the sigmoid. A small β needs large log-ratios to reach the same margin, so the
# policy moves far from the reference; a large β is satisfied by small moves. We train one adapter per β (the same
# recipe, one epoch to keep it cheap) and measure the preferred rate and the drift: the mean |log πθ(y|x) −
# log π_ref(y|x)| over the held-out chosen answers (in nats per answer).

# %%
sweep = []
for b in sweep_betas:
    t = make_dpo_trainer(copy.deepcopy(sft_model), tok, train_rows, output_dir=f"{output_dir}/sweep_{b}",
                         peft_config=standard_lora(r=8), beta=b, learning_rate=dpo_learning_rate,
                         num_train_epochs=1, logging_steps=100, seed=seed)
    t.train()
    t.model.eval()
    lp = policy_and_reference_logps(t.model, tok, dpo_test)
    sweep.append({"beta": b, "preferred_rate": preferred_rate(t.model, tok, dpo_test, facts_by_id, is_preferred)[0],
                  "heldout_accuracy": implicit_reward_accuracy(lp, b), "drift_mean_abs_logratio": mean_abs_logratio(lp),
                  "final_train_loss": t.state.log_history[-1]["train_loss"]})
table(sweep).set_index("beta")

# %%
fig, ax = plt.subplots(figsize=(5, 3.2))
ax.plot([s["drift_mean_abs_logratio"] for s in sweep], [s["preferred_rate"] for s in sweep], marker="o")
for s in sweep:
    ax.annotate(f"β={s['beta']}", (s["drift_mean_abs_logratio"], s["preferred_rate"]))
ax.set(xlabel="drift: mean |log πθ − log π_ref| on held-out chosen (nats)", ylabel="preferred rate")
plt.show()

# %% [markdown]
# ## 8. DPO among the other alignment methods (not trained here)
#
# | method | needs | how it learns |
# |---|---|---|
# | **PPO-style RLHF** | preference pairs → a separate *reward model*; a policy, a frozen reference, a value model | generates answers, scores them with the reward model, and maximizes reward − β·KL(policy ‖ reference) with PPO. Four models in memory, sampling in the loop, many hyper-parameters. |
# | **DPO** | preference pairs, a frozen reference (here: adapter off) | shows that the optimum of that same KL-regularized objective has a closed form, so the reward is β·log(πθ/π_ref) and the objective becomes a classification loss on pairs. No reward model, no sampling. |
# | **ORPO** | preference pairs, *no* reference | SFT loss on the chosen answer plus a log-odds-ratio penalty for the rejected one: SFT and alignment in one stage, from the base model. |
# | **KTO** | single answers labelled good or bad (no pairs), a reference | a loss from prospect theory on each answer's implicit reward relative to a baseline; fits thumbs-up/down data. |
# | **GRPO** | prompts and a reward *function* (e.g. a checker of the answer) | online RL like PPO, but the baseline is the mean reward of a group of samples for the same prompt, so no value model; used for reasoning with verifiable rewards. |
#
# Our rule (`is_preferred`) is itself a verifiable reward function, so GRPO could use it directly; DPO instead
# learns from pairs that the rule labelled, which is how human-labelled data is usually used.

# %%
metrics = {
    "initial_loss": initial_loss, "hand_vs_trl_loss_abs_diff": hand_vs_trl,
    "heldout_preference_accuracy": heldout_accuracy,
    "preferred_rate_before": rate_before, "preferred_rate_after": rate_after,
    "fact_accuracy_before": fact_before, "fact_accuracy_after": fact_after,
    "beta_sweep": sweep, "dpo_train_seconds": trainer.stopwatch.seconds,
    "notebook_seconds": time.perf_counter() - started}
save_metrics(metrics, metrics_path)
table({k: v for k, v in metrics.items() if k != "beta_sweep"})

# %% [markdown]
# ## What we measured
#
# (filled in after the run)
#
# ## Exercises
# 1. Set `beta = 0.5` and `0.05` for the main run: how do the reward curves' scales change, and why (the rewards are β·log-ratios)?
# 2. Make the rejected answers all "wrong answer + sign-off" (edit a copy of the data): does the model still learn to add the sign-off? Explain with the loss.
# 3. Compute the mean KL(πθ ‖ π_ref) over next-token distributions on the held-out prompts and compare with the |log-ratio| drift used above.
# 4. On Colab, set `model` to a small instruct model and `dataset` to a binarized preference dataset (e.g. a hub id with `prompt`/`chosen`/`rejected`); what do the curves look like?
