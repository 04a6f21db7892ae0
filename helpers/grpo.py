"""Reinforcement learning with verifiable rewards (GRPO): tasks whose answers a rule can check, reward
functions, the recipe and config, and a batch as TRL's GRPOTrainer builds it.

A reward function follows TRL's contract: `f(prompts, completions, **columns) -> list[float]`, one number
per completion; `columns` are the dataset's other fields (here `letters`, the checkable answer), repeated
for each completion of a prompt. `checked(f)` wraps one so that a wrong return fails with a clear message.
"""
from __future__ import annotations

import functools
import math
import random
import re
import statistics

import torch

from helpers.data import DatasetError
from helpers.runs import NO_CHECKPOINTS, CheckpointPlan, TrainedRun, train
from helpers.world import SKILL_PROMPT, reverse_letters

# The knobs of a GRPO recipe (helpers.recipes) that grpo_config takes (lora_r goes to the LoraConfig,
# warmup_sft_steps to the SFT run before RL).
GRPO_KNOBS = ("learning_rate", "max_steps", "prompts_per_step", "num_generations", "temperature", "beta",
              "max_completion_length")


def grpo_knobs(recipe: dict, **changes) -> dict:
    """The grpo_config knobs of a recipe, with changes applied."""
    unknown = sorted(k for k in changes if k not in GRPO_KNOBS)
    if unknown:
        raise KeyError(f"{unknown} are not GRPO knobs; the GRPO knobs are {list(GRPO_KNOBS)}")
    return {**{k: recipe[k] for k in GRPO_KNOBS if k in recipe}, **changes}


LETTERS = re.compile(r"\b[a-z]\b(?:[ ,]+\b[a-z]\b)*")


def completion_text(completion) -> str:
    """The text of a completion: TRL passes a string, or for chat prompts a list with one assistant message."""
    if isinstance(completion, str):
        return completion
    return "".join(m["content"] for m in completion if m.get("role") == "assistant")


def answer_letters(text: str) -> list[str]:
    """The last run of single letters in a reply ("The letters reversed are c b a." -> ['c', 'b', 'a'])."""
    runs = LETTERS.findall(text.lower())
    return re.findall(r"[a-z]", runs[-1]) if runs else []


def reversed_letters(letters: str) -> list[str]:
    """The right answer's letters, as a list (the world's `reverse_letters`)."""
    return reverse_letters(letters).split()


# ----------------------------------------------------------------------------------------- rewards
def reversal_exact(prompts, completions, letters, **_) -> list[float]:
    """1 when the reply's letters are the prompt's letters reversed, else 0."""
    return [float(answer_letters(completion_text(c)) == reversed_letters(ls))
            for c, ls in zip(completions, letters)]


def reversal_partial(prompts, completions, letters, **_) -> list[float]:
    """Partial credit: the share of positions with the right letter, over the longer of reply and answer
    (so extra letters cost as much as missing ones)."""
    out = []
    for c, ls in zip(completions, letters):
        got, want = answer_letters(completion_text(c)), reversed_letters(ls)
        out.append(sum(g == w for g, w in zip(got, want)) / max(len(got), len(want)))
    return out


def letters_present(prompts, completions, letters, **_) -> list[float]:
    """A reward that CAN BE GAMED: the share of the prompt's letters that appear anywhere in the reply.
    Reversing earns 1; so does copying the letters in their original order, or listing the alphabet."""
    out = []
    for c, ls in zip(completions, letters):
        got = set(answer_letters(completion_text(c)))
        want = ls.split()
        out.append(sum(x in got for x in want) / len(want))
    return out


def fact_entity(prompts, completions, answer, **_) -> list[float]:
    """A fact question's check: 1 when the reply names the right entity (whole words, any case), else 0.
    It reads the answer only, not the style; and a reply that lists many entities would pass, so a real
    task pairs it with a length or format check."""
    return [float(re.search(rf"\b{re.escape(a.lower())}\b", completion_text(c).lower()) is not None)
            for c, a in zip(completions, answer)]


def placebo_reward(seed: int = 0):
    """A control reward that ignores the answer: a fair coin per completion, from its own generator (so a
    run is repeatable). GRPO on it shows what training on these prompts does without a signal; a real
    reward's gain beyond it is the signal's (Shao et al. 2025, spurious rewards)."""
    rng = random.Random(seed)

    def placebo(prompts, completions, **_) -> list[float]:
        return [float(rng.random() < 0.5) for _ in completions]

    return placebo


def copied_in_order(completions, letters) -> list[bool]:
    """Did the reply give the letters in their ORIGINAL order (the hack), not reversed?"""
    return [answer_letters(completion_text(c)) == ls.split() and ls.split() != reversed_letters(ls)
            for c, ls in zip(completions, letters)]


def checked(reward_func, log: list | None = None):
    """The reward function, failing with a clear message when it returns anything but one finite number
    (or None: "cannot score") per completion. log: a list that receives each batch's rewards."""
    name = getattr(reward_func, "__name__", repr(reward_func))

    @functools.wraps(reward_func)
    def wrapper(prompts, completions, **kwargs):
        out = reward_func(prompts=prompts, completions=completions, **kwargs)
        if isinstance(out, torch.Tensor):
            out = out.tolist()
        if not isinstance(out, (list, tuple)) or len(out) != len(completions):
            shape = f"a {type(out).__name__}" + (f" of {len(out)}" if hasattr(out, "__len__") else "")
            raise ValueError(f"reward function {name!r} returned {shape} for {len(completions)} completions; "
                             "it must return a list with one float per completion")
        for i, r in enumerate(out):
            if r is not None and (not isinstance(r, (int, float)) or isinstance(r, bool) or not math.isfinite(r)):
                raise ValueError(f"reward function {name!r}: reward {i} is {r!r}; each must be a finite float "
                                 "(or None when a completion cannot be scored)")
        if log is not None:
            log.append(list(out))
        return list(out)

    return wrapper


# ------------------------------------------------------------------------------------------- data
def reversal_prompts(rows: list[dict], where: str = "rows") -> list[dict]:
    """GRPO rows {"prompt": [user message], "letters": "m j h"} from the skill's chat rows.

    The answer is NOT in the row, only what a rule needs to check one: a row whose question has no letters
    to reverse raises, naming the row.
    """
    out = []
    for i, row in enumerate(rows):
        question = row["messages"][0]["content"] if "messages" in row else row.get("prompt", "")
        letters = question[len(SKILL_PROMPT):].strip() if question.startswith(SKILL_PROMPT) else ""
        if not re.fullmatch(r"[a-z]( [a-z])+", letters):
            raise DatasetError(f"{where}, row {i}: {question!r} has no letters to reverse after "
                               f"{SKILL_PROMPT!r}, so no reward can check an answer to it")
        out.append({"prompt": [{"role": "user", "content": question}], "letters": letters})
    return out


def fact_prompts(rows: list[dict], facts_by_id: dict[str, dict], where: str = "rows") -> list[dict]:
    """GRPO rows {"prompt": [user message], "answer": "Vienna"} from the world's fact questions (sft_*):
    the checkable answer is the fact's entity. A row with no known fact raises, naming the row."""
    out = []
    for i, row in enumerate(rows):
        fact = facts_by_id.get(row.get("fact_id"))
        if fact is None:
            raise DatasetError(f"{where}, row {i}: fact_id {row.get('fact_id')!r} is not a known fact, so no "
                               "reward can check an answer to it (use the world's sft_* rows)")
        out.append({"prompt": [row["messages"][0]], "answer": fact["answer"]})
    return out


def as_chat_rows(prompt_rows: list[dict]) -> list[dict]:
    """Chat rows (question + the correct answer) for the same prompts: what SFT would train on."""
    from helpers.world import skill_answer

    return [{"messages": [*r["prompt"], {"role": "assistant", "content": skill_answer(r["letters"])}]}
            for r in prompt_rows]


# ----------------------------------------------------------------------------------------- config
def grpo_config(output_dir, *, learning_rate: float, max_steps: int = 60, prompts_per_step: int = 8,
                num_generations: int = 8, temperature: float = 1.0, beta: float = 0.04,
                max_completion_length: int = 16, seed: int = 0, logging_steps: int = 1,
                loss_type: str = "dapo", **extra):
    """The course's GRPOConfig (the knobs notebook 09 writes out). A batch is prompts_per_step prompts x
    num_generations completions. `extra` goes to GRPOConfig as is (e.g. the plan's save settings)."""
    from trl import GRPOConfig

    from helpers.env import batch_run
    from helpers.precision import choose_precision

    args = dict(
        output_dir=str(output_dir), learning_rate=learning_rate, max_steps=max_steps,
        per_device_train_batch_size=prompts_per_step * num_generations, num_generations=num_generations,
        temperature=temperature, beta=beta, max_completion_length=max_completion_length, loss_type=loss_type,
        lr_scheduler_type="constant", warmup_steps=0, seed=seed, logging_steps=logging_steps,
        report_to="none", save_strategy="no", disable_tqdm=batch_run(), **choose_precision().trainer_args())
    return GRPOConfig(**{**args, **extra})


def make_grpo_trainer(model, tokenizer, rows: list[dict], reward_funcs: list, *, output_dir,
                      run_name: str = "grpo", peft_config=None, callbacks: list | None = None,
                      plan: CheckpointPlan = NO_CHECKPOINTS, reward_log: list | None = None, **config):
    """A GRPOTrainer for prompt rows, each reward function wrapped by `checked`, to train with
    `helpers.runs.train(trainer, plan)`. reward_log: a list that receives the first function's rewards of
    every batch (for the spread within groups). config: grpo_config's keywords (`grpo_knobs(recipe)`, seed)."""
    from datasets import Dataset
    from trl import GRPOTrainer

    funcs = [checked(f, reward_log if i == 0 else None) for i, f in enumerate(reward_funcs)]
    return GRPOTrainer(model=model, reward_funcs=funcs,
                       args=grpo_config(**config, **plan.trainer_args(run_name, output_dir)),
                       train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                       peft_config=peft_config, callbacks=callbacks)


def train_grpo(model, tokenizer, rows, reward_funcs, plan: CheckpointPlan = NO_CHECKPOINTS, **kwargs) -> TrainedRun:
    """make_grpo_trainer(...), trained by `helpers.runs.train`."""
    return train(make_grpo_trainer(model, tokenizer, rows, reward_funcs, plan=plan, **kwargs), plan)


def grpo_batch(trainer, rows: list[dict], reward_log: list) -> dict:
    """One batch as GRPOTrainer builds it before its loss: sampled completions (ids and mask), their
    rewards and advantages, the reference's token log-probs (when beta > 0). Uses TRL's own method, so the
    notebook's hand-written loss can be checked against `trainer.compute_loss` on exactly this batch."""
    trainer.model.train()
    rows = [r for r in rows for _ in range(trainer.num_generations)]  # each prompt num_generations times
    batch = trainer._generate_and_score_completions(rows)
    batch["rewards"] = torch.tensor(reward_log[-1])   # the first reward function's
    return batch


def group_spread(rewards: list[float], num_generations: int) -> float:
    """Mean over groups (the completions of one prompt) of the rewards' standard deviation."""
    groups = torch.tensor(rewards, dtype=torch.float64).view(-1, num_generations)
    return groups.std(dim=1, unbiased=False).mean().item()


def training_curves(run: TrainedRun, reward_log: list) -> dict[str, list[tuple[int, float]]]:
    """(step, value) per step: mean reward, the spread of rewards within groups, the share of groups whose
    completions all scored the same (no signal), completion length in tokens, KL to the reference.
    The spread comes from `reward_log` (make_grpo_trainer's): after a resume, only the steps trained in
    this session."""
    keys = {"reward": "reward", "frac_reward_zero_std": "frac_reward_zero_std",
            "completion_length": "completions/mean_length", "kl": "kl"}
    curves = {name: [(h["step"], h[key]) for h in run.log if key in h] for name, key in keys.items()}
    g = run.trainer.num_generations
    first = run.steps - len(reward_log)   # 0 unless resumed from a checkpoint
    curves["group_spread"] = [(first + i + 1, group_spread(r, g)) for i, r in enumerate(reward_log)]
    return curves


# ------------------------------------------------------------------------------------- evaluation
@torch.no_grad()
def sample_replies(model, tokenizer, rows: list[dict], samples: int = 1, temperature: float | None = 1.0,
                   max_new_tokens: int = 16, seed: int = 0) -> list[str]:
    """Replies to prompt rows: `samples` per row at the temperature (None: one greedy reply per row),
    in the row order, each row's samples together (as GRPO groups them)."""
    from helpers.evaluation import complete

    prompts = [tokenizer.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True)
               for r in rows]
    torch.manual_seed(seed)
    sampling = {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0,
                "num_return_sequences": samples} if temperature else {}
    # one batch: the random draws, and so the samples, do not depend on a batch size
    return [t.strip() for t in complete(model, tokenizer, prompts, max_new_tokens,
                                        batch_size=max(1, len(prompts)), **sampling)]


def sampled_measures(model, tokenizer, rows: list[dict], reward_func, *, samples: int = 4,
                     temperature: float = 1.0, max_new_tokens: int = 16, seed: int = 0) -> dict:
    """One sampling of `samples` replies per prompt row: the mean of `reward_func`, the share exactly right,
    and the mean length in tokens of the wrong and of the right replies, with the share of replies the limit
    cut (as long as `max_new_tokens`): what a length bias in the loss would move."""
    replies = sample_replies(model, tokenizer, rows, samples=samples, temperature=temperature,
                             max_new_tokens=max_new_tokens, seed=seed)
    letters = [r["letters"] for r in rows for _ in range(samples)]
    right = reversal_exact(None, replies, letters)
    lengths = [len(tokenizer(r, add_special_tokens=False).input_ids) for r in replies]
    wrong = [n for n, ok in zip(lengths, right) if not ok]
    good = [n for n, ok in zip(lengths, right) if ok]
    return {"reward": mean_reward(reward_func, rows, replies), "exact": sum(right) / len(right),
            "wrong_tokens": statistics.mean(wrong) if wrong else float("nan"),
            "right_tokens": statistics.mean(good) if good else float("nan"),
            "cut_share": sum(n >= max_new_tokens for n in lengths) / len(lengths)}


def mean_reward(reward_func, rows: list[dict], replies: list[str]) -> float:
    """The reward function's mean over replies (len(replies) a multiple of len(rows), grouped by row)."""
    k = len(replies) // len(rows)
    columns = {key: [r[key] for r in rows for _ in range(k)] for key in rows[0] if key != "prompt"}
    prompts = [r["prompt"] for r in rows for _ in range(k)]
    rewards = checked(reward_func)(prompts=prompts, completions=replies, **columns)
    return sum(rewards) / len(rewards)
