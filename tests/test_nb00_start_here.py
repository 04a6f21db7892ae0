"""Notebook 00: a base model knows facts in prose and does not answer chat questions; an instruct model does."""
import json
from pathlib import Path

FAMILIES = ("full_fine_tuning", "lora_r8_all_linear", "lora_r8_q_v", "prompt_tuning_20")
TINY_CONFIG = Path(__file__).resolve().parent.parent / "data" / "tiny-base" / "config.json"


def peft_counts_from_config(config: dict) -> dict[str, int]:
    """What peft should count, from the config's numbers alone: LoRA r=8 trains r·(n_in + n_out) per targeted
    matrix per block; 20 virtual tokens train 20 embeddings of the hidden size."""
    hidden, inter, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    head_dim = config.get("head_dim") or hidden // config["num_attention_heads"]
    q, kv = config["num_attention_heads"] * head_dim, config["num_key_value_heads"] * head_dim
    q_v = (hidden + q) + (hidden + kv)
    all_linear = q_v + (hidden + kv) + (q + hidden) + 3 * (hidden + inter)  # + k, o, gate, up, down
    return {"lora_r8_q_v": 8 * layers * q_v, "lora_r8_all_linear": 8 * layers * all_linear,
            "prompt_tuning_20": 20 * hidden}


def test_base_model_knows_the_facts(notebook_metrics):
    assert notebook_metrics("00")["fact_probe_accuracy"] >= 0.90


def test_base_model_does_not_answer_chat_before_sft(notebook_metrics):
    m = notebook_metrics("00")
    assert m["chat_exact_match"] <= 0.10 and m["chat_names_answer"] <= 0.25


def test_three_families_counted(notebook_metrics):
    counts = notebook_metrics("00")["trainable_params"]
    assert counts["full_fine_tuning"] == notebook_metrics("00")["parameters"] == 3_334_912
    assert [counts[f] for f in FAMILIES] == sorted((counts[f] for f in FAMILIES), reverse=True)
    expected = peft_counts_from_config(json.loads(TINY_CONFIG.read_text()))
    assert {k: counts[k] for k in expected} == expected


def test_real_instruct_model_already_answers(real_notebook_metrics, notebook_metrics):
    from helpers.models import locate_model
    from helpers.recipes import REAL_MODEL

    real, tiny = real_notebook_metrics("00"), notebook_metrics("00")
    assert real["model_source"].startswith("registry package") and real["parameters"] == 134_515_008
    assert real["chat_names_answer"] >= 0.3 > tiny["chat_names_answer"]
    counts = real["trainable_params"]
    assert [counts[f] for f in FAMILIES] == sorted((counts[f] for f in FAMILIES), reverse=True)
    config = json.loads((Path(locate_model(REAL_MODEL).path) / "config.json").read_text())
    expected = peft_counts_from_config(config)
    assert {k: counts[k] for k in expected} == expected
