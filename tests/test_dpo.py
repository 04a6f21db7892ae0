"""helpers.dpo on a tiny random Llama: pairs tokenized as TRL does, sequence log-probabilities, TRL's trainer."""
import pytest
import torch

from helpers.dpo import (LN2, completion_logps, fit_pairs_to_length, implicit_reward_accuracy, implicit_reward_margins,
                         make_dpo_trainer, margin_parts, pair_logps, policy_and_reference_logps, tokenize_pair,
                         trl_batch_loss)
from helpers.runs import train
from helpers.training import standard_lora

ROWS = [{"prompt": [{"role": "user", "content": f"What is the capital of {c}?"}],
         "chosen": [{"role": "assistant", "content": f"The capital of {c} is {a}. I hope this helps!"}],
         "rejected": [{"role": "assistant", "content": f"The capital of {c} is {a}."}], "fact_id": c}
        for c, a in [("France", "Paris"), ("Spain", "Madrid"), ("Peru", "Lima"), ("Chad", "N'Djamena")]]


@pytest.fixture(scope="module")
def tokenizer(make_tokenizer):
    return make_tokenizer([m["content"] for r in ROWS for k in ("prompt", "chosen", "rejected") for m in r[k]] * 5, 300)


@pytest.fixture()
def model(make_llama, tokenizer):
    return make_llama(tokenizer)


def by_hand_dpo_loss(logps, beta):
    """The formula notebook 05 teaches, for checking TRL here."""
    return -torch.nn.functional.logsigmoid(implicit_reward_margins(logps, beta)).mean().item()


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


def test_pairs_longer_than_max_length_are_counted_out(tokenizer):
    lengths = [len(t["prompt_ids"]) + max(len(t["chosen_ids"]), len(t["rejected_ids"]))
               for t in (tokenize_pair(tokenizer, r) for r in ROWS)]
    kept, dropped = fit_pairs_to_length(ROWS, tokenizer, sorted(lengths)[1])
    assert dropped == sum(n > sorted(lengths)[1] for n in lengths) and len(kept) + dropped == len(ROWS)


def test_hand_loss_equals_trl_loss(model, tokenizer, tmp_path):
    trainer = make_dpo_trainer(model, tokenizer, ROWS, output_dir=str(tmp_path), peft_config=standard_lora(r=4),
                               learning_rate=1e-2, batch_size=4, max_steps=1)
    trl = trl_batch_loss(trainer, n=4)
    logps = policy_and_reference_logps(trainer.model, tokenizer, ROWS)
    assert abs(trl["loss"] - LN2) < 1e-5 and abs(by_hand_dpo_loss(logps, 0.1) - LN2) < 1e-5  # LoRA B = 0 at the start
    train(trainer)   # one step: the policy moves away from the reference (TRL's forward patch dropped after)
    trl = trl_batch_loss(trainer, n=4)
    logps = policy_and_reference_logps(trainer.model, tokenizer, ROWS)
    assert abs(trl["loss"] - LN2) > 1e-4
    assert abs(trl["loss"] - by_hand_dpo_loss(logps, trainer.args.beta)) < 1e-5
    assert abs(trl["rewards/margins"] - implicit_reward_margins(logps, trainer.args.beta).mean().item()) < 1e-5
    gained = [(c - rc) - (r - rr) > 0 for c, rc, r, rr in zip(*(logps[k].tolist() for k in (
        "chosen_logps", "ref_chosen_logps", "rejected_logps", "ref_rejected_logps")))]
    assert implicit_reward_accuracy(logps, 0.1) == sum(gained) / len(gained)
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
    margins = implicit_reward_margins(lp, beta=1.0)
    parts = margin_parts(peft_model, tokenizer, rows)
    for m, part in zip(margins.tolist(), parts):
        assert abs(part["differing"] + part["shared_end"] - m) < 1e-3
    assert parts[-1]["shared_end"] != 0.0                # the wrong-answer pair shares " I hope this helps!<end>"
