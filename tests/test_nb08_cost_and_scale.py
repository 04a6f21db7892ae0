"""Notebook 08: the memory estimator equals measurement, will-it-fit is sane, throughput measured, DDP in sync."""
import pytest


@pytest.fixture(scope="module")
def m(notebook_metrics):
    return notebook_metrics("08")


def test_estimator_equals_measured_bytes_exactly(m):
    settings = m["estimate_vs_measured"]
    for method in ("full", "lora"):
        for part in ("weights", "optimizer_states", "gradients"):
            pair = settings[f"{method}/{part}"]
            assert pair["estimated"] == pair["measured"] > 0, (method, part, pair)
    # AdamW keeps two moments per trainable parameter: the state is about twice the trained weights
    assert settings["full/optimizer_states"]["measured"] >= 2 * settings["full/weights"]["measured"]
    assert settings["lora/optimizer_states"]["measured"] < 0.2 * settings["full/optimizer_states"]["measured"]


def test_will_it_fit_table(m):
    rows = {(r["model"], r["method"]): r for r in m["will_it_fit"]}
    assert len(rows) == 18
    assert rows[("7B (Qwen2.5-7B)", "full (fp32, AdamW)")]["80 GB (A100 / H100)"] == "no"
    assert rows[("7B (Qwen2.5-7B)", "QLoRA (NF4 base)")]["16 GB (Colab T4)"] == "yes"
    assert rows[("0.5B (Qwen2.5-0.5B)", "full (fp32, AdamW)")]["80 GB (A100 / H100)"] == "yes"


def test_peak_check_is_measured_on_gpu_or_marked_missing(m):
    rows = m["peak_estimate_vs_cuda"]
    assert len(rows) == 4
    if m["machine"]["device"] == "cuda":
        measured = [r for r in rows if r["measured peak GiB"] is not None]
        assert measured and all(abs(r["error"]) <= 0.15 for r in measured), rows
    else:
        assert all(r["measured peak GiB"] is None for r in rows)


def test_tokens_per_second_measured(m):
    tps = m["tokens_per_second"]
    assert tps["train_cpu"] > 100 and tps["generate_cpu"] > 10


def test_cost_estimate_adds_up(m):
    usd = m["cost_estimate_usd"]
    assert set(usd) == {"training GPU", "people", "data (labels)", "inference (GPU)"}
    assert all(v > 0 for v in usd.values())


def test_data_parallel_replicas_in_sync(m):
    ddp = m["ddp"]
    assert ddp["ranks"] == [0, 1] and ddp["steps"][0] == ddp["steps"][1] > 0
    assert ddp["replicas_equal"] and ddp["adapter_changed"]
