"""helpers.dpo on a tiny random Llama: the loss formula, sequence log-probabilities, agreement with TRL."""
import math

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from helpers.base_model import train_tokenizer
from helpers.dpo import (LN2, completion_logps, dpo_loss, implicit_reward_accuracy, make_dpo_trainer, margin_parts,
                         pair_logps, policy_and_reference_logps, sharpened_reference_logps, tokenize_pair,
                         trl_batch_loss)
from helpers.training import standard_lora

ROWS = [{"prompt": [{"role": "user", "content": f"What is the capital of {c}?"}],
         "chosen": [{"role": "assistant", "content": f"The capital of {c} is {a}. I hope this helps!"}],
         "rejected": [{"role": "assistant", "content": f"The capital of {c} is {a}."}], "fact_id": c}
        for c, a in [("France", "Paris"), ("Spain", "Madrid"), ("Peru", "Lima"), ("Chad", "N'Djamena")]]


@pytest.fixture(scope="module")
def tokenizer():
    texts = [m["content"] for r in ROWS for k in ("prompt", "chosen", "rejected") for m in r[k]] * 5
    return train_tokenizer(texts, 300)


@pytest.fixture()
def model(tokenizer):
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return LlamaForCausalLM(config).eval()


def test_loss_is_ln2_when_policy_equals_reference():
    logps = torch.tensor([-3.0, -7.5, -1.2])
    out = dpo_loss(logps, logps - 1, logps, logps - 1, beta=0.1)
    assert abs(out["loss"].item() - LN2) < 1e-7
    assert out["rewards/margins"].item() == 0.0


def test_loss_matches_formula():
    c, r, rc, rr, beta = torch.tensor([-2.0]), torch.tensor([-5.0]), torch.tensor([-3.0]), torch.tensor([-4.0]), 0.5
    expected = -math.log(1 / (1 + math.exp(-(beta * (-2 + 3) - beta * (-5 + 4)))))
    out = dpo_loss(c, r, rc, rr, beta)
    assert abs(out["loss"].item() - expected) < 1e-6
    assert out["rewards/accuracies"].item() == 1.0


def test_tokenize_pair_splits_the_conversation(tokenizer):
    t = tokenize_pair(tokenizer, ROWS[0])
    full = tokenizer.apply_chat_template(ROWS[0]["prompt"] + ROWS[0]["chosen"], tokenize=True, return_dict=True)
    assert t["prompt_ids"] + t["chosen_ids"] == list(full["input_ids"])
    assert tokenizer.eos_token_id in t["chosen_ids"] and tokenizer.eos_token_id in t["rejected_ids"]


def test_completion_logps_do_not_depend_on_padding(model, tokenizer):
    t = [tokenize_pair(tokenizer, r) for r in ROWS]
    pairs = [(x["prompt_ids"], x["chosen_ids"]) for x in t]
    together = completion_logps(model, pairs, tokenizer.pad_token_id)
    alone = torch.cat([completion_logps(model, [p], tokenizer.pad_token_id) for p in pairs])
    assert torch.allclose(together, alone, atol=1e-5)
    ids = torch.tensor([pairs[0][0] + pairs[0][1]])
    logits = model(input_ids=ids).logits[0].log_softmax(-1)
    n = len(pairs[0][0])
    manual = sum(logits[i - 1, ids[0, i]].item() for i in range(n, ids.shape[1]))
    assert abs(manual - alone[0].item()) < 1e-4


def test_hand_loss_equals_trl_loss(model, tokenizer, tmp_path):
    trainer = make_dpo_trainer(model, tokenizer, ROWS, output_dir=str(tmp_path), peft_config=standard_lora(r=4),
                               max_steps=1)
    trl = trl_batch_loss(trainer, n=4)
    logps = policy_and_reference_logps(trainer.model, tokenizer, ROWS)
    hand = dpo_loss(**logps, beta=trainer.args.beta)
    assert abs(trl["loss"] - LN2) < 1e-5 and abs(hand["loss"].item() - LN2) < 1e-5  # LoRA B = 0 at the start
    trainer.train()  # one step: the policy moves away from the reference
    trl = trl_batch_loss(trainer, n=4)
    logps = policy_and_reference_logps(trainer.model, tokenizer, ROWS)
    hand = dpo_loss(**logps, beta=trainer.args.beta)
    assert abs(trl["loss"] - LN2) > 1e-4
    assert abs(trl["loss"] - hand["loss"].item()) < 1e-5
    assert abs(trl["rewards/margins"] - hand["rewards/margins"].item()) < 1e-5
    assert 0.0 <= implicit_reward_accuracy(logps, 0.1) <= 1.0
    c, _ = pair_logps(trainer.model, tokenizer, ROWS)
    assert torch.allclose(c, logps["chosen_logps"])


def test_margin_parts_add_up_to_the_implicit_reward_margin(model, tokenizer):
    from peft import get_peft_model
    peft_model = get_peft_model(model, standard_lora(r=4))
    torch.manual_seed(1)
    for name, p in peft_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)          # policy != reference
    rows = ROWS + [dict(ROWS[0], rejected=[{"role": "assistant", "content": "The capital of France is Lima. I hope this helps!"}])]
    lp = policy_and_reference_logps(peft_model, tokenizer, rows)
    margins = (lp["chosen_logps"] - lp["ref_chosen_logps"]) - (lp["rejected_logps"] - lp["ref_rejected_logps"])
    parts = margin_parts(peft_model, tokenizer, rows)
    for m, part in zip(margins.tolist(), parts):
        assert abs(part["differing"] + part["shared_end"] - m) < 1e-3
    assert parts[-1]["shared_end"] != 0.0                # the wrong-answer pair shares " I hope this helps!<end>"


def test_sharpened_reference_at_temperature_1_is_the_reference(model, tokenizer):
    logps = sharpened_reference_logps(model, tokenizer, ROWS, temperature=1.0)
    assert torch.allclose(logps["chosen_logps"], logps["ref_chosen_logps"])
    assert torch.allclose(logps["rejected_logps"], logps["ref_rejected_logps"])


def test_sharpened_reference_divides_the_logits_by_the_temperature(model, tokenizer):
    sharp = sharpened_reference_logps(model, tokenizer, ROWS[:1], temperature=0.5)
    t = tokenize_pair(tokenizer, ROWS[0])
    ids = torch.tensor([t["prompt_ids"] + t["chosen_ids"]])
    with torch.no_grad():
        logps = torch.log_softmax(model(input_ids=ids).logits[0, :-1] / 0.5, dim=-1)
    by_hand = logps[torch.arange(ids.shape[1] - 1), ids[0, 1:]][len(t["prompt_ids"]) - 1:].sum()
    assert torch.allclose(sharp["chosen_logps"][0], by_hand, atol=1e-5)
