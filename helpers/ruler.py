"""A general-ability ruler: a public multiple-choice benchmark scored 0-shot by the log-likelihood of each choice.

Forgetting needs a ruler of what the model could do before, on a scale wider than the tiny world's fact
probes. `data/real/arc_600.jsonl` holds 300 questions of ARC-Easy and 300 of ARC-Challenge (grade-school
science, four choices; its README gives source and license). Each question is scored the way the
evaluation harnesses score a base model: the prompt "Question: ...\\nAnswer:", each choice appended as
" <choice>", and the choice with the highest log-likelihood is the model's answer ("accuracy"); the same
divided by the choice's length in bytes ("accuracy_norm", which stops long choices from losing for being
long). No chat template, no generation: a model that forgot how to follow a format can still be measured.

    items = load_ruler()                                   # 600 rows, checked
    scores = multiple_choice_scores(model, tokenizer, items)
    scores["accuracy"], scores["accuracy_se"], scores["by_subset"]
"""
from __future__ import annotations

import copy
import json
import math
import time
from pathlib import Path

import torch

from helpers.evaluation import _device

RULER = Path(__file__).resolve().parent.parent / "data" / "real" / "arc_600.jsonl"

# What SmolLM2's model card publishes (lighteval, 0-shot): "ARC (Average)", the mean of ARC-Easy and
# ARC-Challenge. The instruct model's and the base model's.
PUBLISHED = {"SmolLM2-135M-Instruct": {"arc_average": 0.373}, "SmolLM2-135M": {"arc_average": 0.439}}


def load_ruler(path: str | Path = RULER, limit: int | None = None, subset: str | None = None) -> list[dict]:
    """The ruler's rows {"subset", "query", "choices", "gold"}, each checked (a bad row is refused with its
    file, line and field). `limit` keeps the first `limit` rows of each subset, so a short run still
    measures both; `subset` ("ARC-Easy") keeps one."""
    path = Path(path)
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        where = f"{path}, line {n}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{where}: not a JSON object ({err.msg})") from None
        for field, kind in (("subset", str), ("query", str), ("choices", list), ("gold", int)):
            if not isinstance(row.get(field), kind):
                raise ValueError(f"{where}: field {field!r} must be a {kind.__name__}, got {row.get(field)!r}")
        if len(row["choices"]) < 2 or not all(isinstance(c, str) and c.strip() for c in row["choices"]):
            raise ValueError(f"{where}: field 'choices' needs two or more non-empty strings")
        if not 0 <= row["gold"] < len(row["choices"]):
            raise ValueError(f"{where}: field 'gold' is {row['gold']}, outside choices 0..{len(row['choices']) - 1}")
        rows.append(row)
    if subset is not None:
        names = sorted({r["subset"] for r in rows})
        rows = [r for r in rows if r["subset"] == subset]
        if not rows:
            raise ValueError(f"{path} has no subset {subset!r}; its subsets are {names}")
    if limit is not None:
        seen: dict[str, int] = {}
        kept = []
        for row in rows:
            seen[row["subset"]] = seen.get(row["subset"], 0) + 1
            if seen[row["subset"]] <= limit:
                kept.append(row)
        rows = kept
    return rows


def _share(hits: list[bool]) -> tuple[float, float]:
    """A share and its standard error (binomial, sqrt(p(1-p)/n))."""
    p = sum(hits) / len(hits)
    return p, math.sqrt(p * (1 - p) / len(hits))


def _chunks(items: list[dict], size: int):
    """Items in chunks of `size`, each chunk's prompts of similar length (sorted), so little is padding."""
    order = sorted(range(len(items)), key=lambda i: len(items[i]["query"]))
    for start in range(0, len(order), size):
        yield order[start:start + size]


def _after_prompt(model, prompt_cache, next_logps, prompt_mask, choices: list[list[int]], owner: torch.Tensor,
                  pad: int) -> torch.Tensor:
    """Summed log-likelihood of each choice (token ids) after its prompt (row `owner` of the prompt cache)."""
    device = next_logps.device
    owner = owner.to(device)
    cache = copy.deepcopy(prompt_cache)
    cache.reorder_cache(owner)
    width = max(map(len, choices))
    ids = torch.full((len(choices), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for k, c in enumerate(choices):  # right padding: pads come after every real token
        ids[k, :len(c)], mask[k, :len(c)] = torch.tensor(c), 1
    ids, mask = ids.to(device), mask.to(device)
    attention = torch.cat([prompt_mask.to(device)[owner], mask], dim=1)
    logits = model(input_ids=ids, attention_mask=attention, past_key_values=cache).logits
    rest = torch.gather(torch.log_softmax(logits[:, :-1].float(), dim=-1), 2, ids[:, 1:, None]).squeeze(2)
    return (next_logps[owner, ids[:, 0]] + (rest * mask[:, 1:]).sum(1)).cpu()


@torch.no_grad()
def choice_logps(model, tokenizer, items: list[dict], batch_size: int = 16) -> list[torch.Tensor]:
    """For each item, the summed log-likelihood of each choice after its prompt: one tensor an item.

    The prompt is read once for all its choices: a chunk of prompts runs left-padded with the key/value
    cache kept, the cache is repeated for each choice, and the choices run after it, right-padded. (Left
    padding shifts a row's positions, which rotary attention does not see: it depends only on distances.)
    The same numbers as scoring each "prompt + choice" whole (`helpers.evaluation.completion_logps`), to
    float precision (tested), in about 60% of the time on ARC. The model is left in the mode it was in;
    the tokenizer needs a pad token (`helpers.models.load_model` gives every tokenizer one).
    """
    was_training = model.training
    model.eval()
    device, pad = _device(model), tokenizer.pad_token_id
    out: list[torch.Tensor | None] = [None] * len(items)
    for chunk in _chunks(items, batch_size):
        prompts = [tokenizer(items[i]["query"] + "\nAnswer:", add_special_tokens=False)["input_ids"]
                   for i in chunk]
        width = max(map(len, prompts))
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for j, p in enumerate(prompts):  # left padding: every prompt ends in the last column
            ids[j, width - len(p):], mask[j, width - len(p):] = torch.tensor(p), 1
        first = model(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=True, logits_to_keep=1)
        next_logps = torch.log_softmax(first.logits[:, -1].float(), dim=-1)
        choices, owner = [], []
        for j, i in enumerate(chunk):
            for c in items[i]["choices"]:
                choices.append(tokenizer(" " + c, add_special_tokens=False)["input_ids"])
                owner.append(j)
        total = torch.empty(len(choices))
        by_length = sorted(range(len(choices)), key=lambda k: len(choices[k]))
        for start in range(0, len(by_length), 2 * batch_size):  # choices of similar length run together
            rows = by_length[start:start + 2 * batch_size]
            total[rows] = _after_prompt(model, first.past_key_values, next_logps, mask, [choices[k] for k in rows],
                                        torch.tensor([owner[k] for k in rows]), pad)
        k = 0
        for i in chunk:
            n = len(items[i]["choices"])
            out[i], k = total[k:k + n], k + n
    model.train(was_training)
    return out


def multiple_choice_scores(model, tokenizer, items: list[dict], batch_size: int = 16) -> dict:
    """Each item's answer is its choice of highest log-likelihood ("accuracy"), or of highest log-likelihood a
    byte of the choice ("accuracy_norm").

    Returns {"accuracy", "accuracy_se", "accuracy_norm", "accuracy_norm_se", "n", "chance", "by_subset":
    {subset: {"accuracy", "accuracy_norm", "n"}}, "correct", "correct_norm"} (the last two one bool an item).
    """
    if not items:
        raise ValueError("no items to score: load_ruler() gives the ruler's rows")
    correct, correct_norm = [], []
    for item, lp in zip(items, choice_logps(model, tokenizer, items, batch_size), strict=True):
        lengths = torch.tensor([len((" " + c).encode("utf-8")) for c in item["choices"]], dtype=torch.float)
        correct.append(int(lp.argmax()) == item["gold"])
        correct_norm.append(int((lp / lengths).argmax()) == item["gold"])
    acc, acc_se = _share(correct)
    norm, norm_se = _share(correct_norm)
    by_subset = {}
    for subset in dict.fromkeys(item["subset"] for item in items):
        idx = [i for i, item in enumerate(items) if item["subset"] == subset]
        by_subset[subset] = {"accuracy": sum(correct[i] for i in idx) / len(idx),
                             "accuracy_norm": sum(correct_norm[i] for i in idx) / len(idx), "n": len(idx)}
    chance = sum(1 / len(item["choices"]) for item in items) / len(items)
    return {"accuracy": acc, "accuracy_se": acc_se, "accuracy_norm": norm, "accuracy_norm_se": norm_se,
            "n": len(items), "chance": chance, "by_subset": by_subset, "correct": correct,
            "correct_norm": correct_norm}


def paired_drop(before: list[bool], after: list[bool]) -> tuple[float, float]:
    """The drop in accuracy from `before` to `after` on the same items, and its standard error from the items
    that changed (paired: the items both runs get right or wrong add no noise). Positive = forgot."""
    if len(before) != len(after) or not before:
        raise ValueError(f"paired_drop needs two equal, non-empty lists of hits, got {len(before)} and {len(after)}")
    d = [int(b) - int(a) for b, a in zip(before, after)]
    mean = sum(d) / len(d)
    var = sum((x - mean) ** 2 for x in d) / max(len(d) - 1, 1)
    return mean, math.sqrt(var / len(d))


def ruler_change(before: dict, model, tokenizer, items: list[dict]) -> dict:
    """`model` (after training) on the questions `before` scored (`multiple_choice_scores` of the model before),
    read in pairs: {"accuracy", "drop", "se", "correct"}, the drop and its standard error from `paired_drop`
    (only the questions whose answer changed carry them; positive = forgot)."""
    after = multiple_choice_scores(model, tokenizer, items)
    drop, se = paired_drop(before["correct"], after["correct"])
    return {"accuracy": after["accuracy"], "drop": drop, "se": se, "correct": after["correct"]}


def main(argv: list[str] | None = None) -> None:
    """`python -m helpers.ruler`: a model's score on the ruler, beside what its model card publishes, written to
    outputs/ruler/<label>.json."""
    import argparse

    from helpers.models import load_model
    from helpers.paths import ROOT
    from helpers.recipes import REAL_MODEL

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--model", default=REAL_MODEL)
    parser.add_argument("--limit", type=int, default=None, help="the first N items of each subset")
    parser.add_argument("--label", default="smollm2_135m_instruct")
    args = parser.parse_args(argv)
    model, tokenizer = load_model(args.model)
    items = load_ruler(limit=args.limit)
    start = time.perf_counter()
    scores = multiple_choice_scores(model, tokenizer, items)
    seconds = time.perf_counter() - start
    average = sum(s["accuracy_norm"] for s in scores["by_subset"].values()) / len(scores["by_subset"])
    published = PUBLISHED.get(Path(str(args.model)).name, {}).get("arc_average")
    print(f"{args.model}: {scores['n']} items in {seconds:.0f} s; accuracy {scores['accuracy']:.3f} "
          f"± {scores['accuracy_se']:.3f}, length-normalised {scores['accuracy_norm']:.3f} "
          f"± {scores['accuracy_norm_se']:.3f} (chance {scores['chance']:.2f}); " + ", ".join(
              f"{k} {v['accuracy']:.3f} / {v['accuracy_norm']:.3f}" for k, v in scores["by_subset"].items())
          + (f"; the model card's ARC (Average): {published:.3f}" if published is not None else ""))
    out = ROOT / "outputs" / "ruler"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.label}.json").write_text(json.dumps(
        {"args": vars(args), "seconds": round(seconds, 1), "published_arc_average": published,
         "mean_of_subsets_norm": average, **scores}, indent=1))


if __name__ == "__main__":
    main()
