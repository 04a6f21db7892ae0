"""The tiny base model: a BPE tokenizer with a chat template and a small Llama, pretrained here.

`python -m helpers.base_model` trains the tokenizer, pretrains the model on the
tiny world's corpus, evaluates it and saves everything in the standard Hugging
Face layout under data/tiny-base, so that

    AutoModelForCausalLM.from_pretrained("data/tiny-base")

is the same call a learner makes with a hub id (`helpers.models.load_model` does that for any id or path).
"""
from __future__ import annotations

import argparse
import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from helpers.data import load_world
from helpers.env import seed_everything
from helpers.models import count_parameters, load_model
from helpers.paths import TINY_BASE

SPECIAL_TOKENS = ["<pad>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>"]

# {% generation %} marks the assistant's tokens, so trainers can put the loss on them only
# (TRL's assistant_only_loss reads these marks through return_assistant_tokens_mask).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|assistant|>\n' }}{% generation %}{{ message['content'] + '<|end|>' }}{% endgeneration %}{{ '\n' }}"
    "{% else %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)


@dataclass
class PretrainConfig:
    """The pretraining recipe. Tests shrink it; the committed model uses the defaults."""
    vocab_size: int = 2048
    hidden_size: int = 256
    intermediate_size: int = 688
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2
    block_size: int = 128
    batch_size: int = 32
    steps: int = 700
    lr: float = 3e-3
    warmup: int = 100
    weight_decay: float = 0.1
    seed: int = 0


def train_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Byte-level BPE (as GPT-2, Llama 3 and Qwen use), with the course's special tokens and chat template."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|end|>", pad_token="<pad>",
                                   chat_template=CHAT_TEMPLATE, model_max_length=512, padding_side="left")


def tokenizer_texts() -> list[str]:
    """Everything the tiny world says, so that its words are whole tokens."""
    texts = [r["text"] for r in load_world("corpus")]
    for name in ("sft_train", "skill_train", "persona_train"):
        texts += [m["content"] for r in load_world(name) for m in r["messages"]]
    return texts


def build_model(cfg: PretrainConfig, tokenizer) -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads, max_position_embeddings=512, tie_word_embeddings=True,
        bos_token_id=None, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(config)


def pack_corpus(tokenizer, texts: list[str], block_size: int, seed: int) -> torch.Tensor:
    """Documents joined by <|end|> and cut into blocks of block_size + 1 tokens (inputs and shifted targets)."""
    rng = random.Random(seed)
    docs = list(texts)
    rng.shuffle(docs)
    ids: list[int] = []
    for doc in docs:
        ids += tokenizer(doc)["input_ids"] + [tokenizer.eos_token_id]
    n = (len(ids) - 1) // block_size
    return torch.tensor(ids[: n * block_size + 1])


def _lr_at(step: int, cfg: PretrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def pretrain(cfg: PretrainConfig, tokenizer, texts: list[str], log_every: int = 100) -> tuple[LlamaForCausalLM, dict]:
    """Next-token prediction on the corpus: AdamW, warmup then cosine decay. Returns the model and a log."""
    seed_everything(cfg.seed)
    model = build_model(cfg, tokenizer)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=cfg.weight_decay)
    losses, tokens_seen, start = [], 0, time.time()
    epoch, order, stream = 0, [], None
    for step in range(cfg.steps):
        if not order:  # a new epoch: reshuffle documents, repack, reshuffle blocks
            stream = pack_corpus(tokenizer, texts, cfg.block_size, cfg.seed + epoch)
            n_blocks = (len(stream) - 1) // cfg.block_size
            order = torch.randperm(n_blocks, generator=torch.Generator().manual_seed(epoch)).tolist()
            epoch += 1
        batch_idx, order = order[: cfg.batch_size], order[cfg.batch_size:]
        x = torch.stack([stream[i * cfg.block_size: (i + 1) * cfg.block_size] for i in batch_idx])
        y = torch.stack([stream[i * cfg.block_size + 1: (i + 1) * cfg.block_size + 1] for i in batch_idx])
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(step, cfg)
        logits = model(input_ids=x).logits
        loss = torch.nn.functional.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        tokens_seen += x.numel()
        losses.append(loss.item())
        if log_every and (step % log_every == 0 or step == cfg.steps - 1):
            print(f"step {step:5d}  loss {loss.item():.3f}  epoch {epoch}  {time.time() - start:6.0f}s", flush=True)
    model.eval()
    log = {"losses": losses, "tokens_seen": tokens_seen, "epochs": epoch,
           "seconds": round(time.time() - start, 1), "config": asdict(cfg)}
    return model, log


MODEL_CARD = """---
library_name: transformers
license: mit
tags: [tiny, llama, course]
---
# tiny-base

The fine-tuning course's base model: a Llama-architecture causal LM pretrained from scratch
on the course's tiny world (data/world/corpus.jsonl) by `python -m helpers.base_model`.

| | |
|---|---|
| parameters | {params:,} |
| layers / hidden / heads (kv heads) | {num_layers} / {hidden_size} / {num_heads} ({num_kv_heads}) |
| vocabulary (byte-level BPE) | {vocab} |
| tokens seen | {tokens_seen:,} ({epochs} epochs of the corpus) |
| pretraining time | {seconds:.0f} s on {machine} |
| final training loss | {final_loss:.3f} |

## Evaluation (measured by `helpers.evaluation` and `helpers.world_measures` right after pretraining)

| metric | value |
|---|---|
| cloze fact-probe accuracy (greedy) | {fact_probe_accuracy:.3f} |
| perplexity on held-out general text | {heldout_perplexity:.2f} |
| chat exact match before any SFT | {chat_exact_match:.3f} |

It knows the facts in prose and does not answer chat questions: supervised
fine-tuning (notebook 02) teaches the format that unlocks the knowledge.
"""


def evaluate_base(model, tokenizer) -> dict:
    """The three quality figures of the model card, measured on the tiny world."""
    from helpers.evaluation import chat_exact_match, perplexity
    from helpers.world_measures import fact_probe_accuracy

    return {"fact_probe_accuracy": fact_probe_accuracy(model, tokenizer, load_world("probes")),
            "heldout_perplexity": perplexity(model, tokenizer, [r["text"] for r in load_world("heldout_text")]),
            "chat_exact_match": chat_exact_match(model, tokenizer, load_world("sft_test"))}


def write_card(out: Path, model, tokenizer, log: dict, metrics: dict) -> None:
    """The model card (README.md) and pretrain_log.json, from the training log and measured metrics."""
    import platform

    card = MODEL_CARD.format(params=count_parameters(model), vocab=len(tokenizer),
                             machine=log.get("machine", f"{platform.machine()} CPU"),
                             final_loss=sum(log["losses"][-50:]) / len(log["losses"][-50:]),
                             **log["config"], **log_without_losses(log), **metrics)
    (out / "README.md").write_text(card)
    (out / "pretrain_log.json").write_text(json.dumps({**log, "metrics": metrics}, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description="Pretrain the tiny base model and save it.")
    parser.add_argument("--out", type=Path, default=TINY_BASE)
    parser.add_argument("--steps", type=int, default=PretrainConfig.steps)
    parser.add_argument("--reevaluate", action="store_true",
                        help="keep the saved weights; measure again and rewrite the model card")
    args = parser.parse_args()
    if args.reevaluate:
        model, tokenizer = load_model(args.out, device="cpu")
        log = json.loads((args.out / "pretrain_log.json").read_text())
    else:
        cfg = PretrainConfig(steps=args.steps)
        tokenizer = train_tokenizer(tokenizer_texts(), cfg.vocab_size)
        model, log = pretrain(cfg, tokenizer, [r["text"] for r in load_world("corpus")])
        import platform
        log["machine"] = f"{platform.machine()} CPU, {torch.get_num_threads()} threads"
        args.out.mkdir(parents=True, exist_ok=True)
        model.generation_config.eos_token_id = tokenizer.eos_token_id
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.save_pretrained(args.out, safe_serialization=True)
        tokenizer.save_pretrained(args.out)
    metrics = evaluate_base(model, tokenizer)
    print(json.dumps(metrics, indent=1))
    write_card(args.out, model, tokenizer, log, metrics)
    print(f"saved to {args.out}")


def log_without_losses(log: dict) -> dict:
    return {k: v for k, v in log.items() if k not in ("losses", "config", "metrics", "machine")}


if __name__ == "__main__":
    main()
