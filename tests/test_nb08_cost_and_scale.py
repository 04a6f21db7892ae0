"""Notebook 08: the memory estimator against measurement (bytes exactly, peaks closely), will-it-fit,
throughput with the adapter and merged, the cost arithmetic, and two-process runs equal to one process."""
import pytest


@pytest.fixture(params=["tiny", "real"])
def metrics(request, notebook_metrics, real_notebook_metrics):
    return notebook_metrics("08") if request.param == "tiny" else real_notebook_metrics("08")


def test_estimator_equals_measured_bytes_exactly(metrics):
    settings = metrics["estimate_vs_measured"]
    assert set(settings) == {"full", "lora", "qlora"}
    for method, parts in settings.items():
        assert set(parts) == {"weights", "gradients", "optimizer_states"}
        for part, pair in parts.items():
            assert pair["estimated"] == pair["measured"] > 0, (method, part, pair)
    measured = {m: {part: pair["measured"] for part, pair in parts.items()} for m, parts in settings.items()}
    # AdamW keeps two moments per trainable parameter: the state is twice the trained weights and more
    assert measured["full"]["optimizer_states"] >= 2 * measured["full"]["weights"]
    assert measured["lora"]["optimizer_states"] < 0.2 * measured["full"]["optimizer_states"]
    assert measured["qlora"]["weights"] < 0.5 * measured["lora"]["weights"]


def test_estimated_peak_is_close_to_the_measured_peak(metrics):
    rows = metrics["peak_vs_estimate"]
    assert {(r["method"], r["checkpointing"]) for r in rows} == {
        (m, c) for m in ("full", "lora", "qlora") for c in (False, True)}
    assert all(abs(r["error"]) <= 0.15 for r in rows), rows
    peak = {(r["method"], r["checkpointing"]): r["measured_bytes"] for r in rows}
    for method in ("full", "lora", "qlora"):  # checkpointing never costs memory; QLoRA holds the least
        assert peak[(method, True)] <= peak[(method, False)]
    assert peak[("qlora", False)] < peak[("lora", False)] < peak[("full", False)]


def test_will_it_fit_table(metrics):
    rows = {(r["model"], r["method"]): r["fits_on"] for r in metrics["will_it_fit"]}
    assert len(rows) == 18
    assert "80 GB (A100 / H100)" not in rows[("7B (Qwen2.5-7B)", "full (fp32, AdamW)")]
    assert "16 GB (Colab T4)" in rows[("7B (Qwen2.5-7B)", "QLoRA (NF4 base)")]
    assert "80 GB (A100 / H100)" in rows[("0.5B (Qwen2.5-0.5B)", "full (fp32, AdamW)")]


def test_the_vocabulary_explains_why_13b_qlora_needs_less_than_7b(metrics):
    """Qwen2.5-7B's 152k untied vocabulary (fp32 under QLoRA, and its logits) outweighs Llama-2-13B's larger
    4-bit blocks: the split the notebook prints, each part's sum the estimate's peak within its activations."""
    split = {r["model"]: r for r in metrics["qlora_memory_split"]}
    q7, q13 = split["7B (Qwen2.5-7B)"], split["13B (Llama-2-13B)"]
    assert q13["QLoRA peak GiB"] < q7["QLoRA peak GiB"] and q13["4-bit blocks GiB"] > q7["4-bit blocks GiB"]
    vocab_parts = lambda r: r["fp32 embedding, head, norms GiB"] + r["logits and gradient GiB"]   # noqa: E731
    assert vocab_parts(q7) - vocab_parts(q13) > q13["4-bit blocks GiB"] - q7["4-bit blocks GiB"]


def test_merged_model_answers_like_the_adapter(metrics):
    merged = metrics["merged_vs_adapter_tokens_per_second"]
    assert merged["max_logit_difference"] < 1e-2  # float32 rounding over 30 layers: 7e-4 measured
    # merged, the adapter's extra path B·A is gone: never much slower than the adapter left unmerged
    assert merged["generate_merged"] >= 0.8 * merged["generate_adapter"]
    assert merged["forward_merged"] >= 0.8 * merged["forward_adapter"]
    assert set(metrics["tokens_per_second"]["train"]) == {"full", "lora", "qlora"}


def test_cost_estimate_adds_up(metrics):
    usd, hours, assumed = metrics["cost_estimate_usd"], metrics["cost_hours"], metrics["cost_assumptions"]
    assert set(usd) == {"training_compute", "serving_compute", "people", "data_labels"}
    assert all(v > 0 for v in usd.values())
    assert hours["billed"] >= hours["busy"] > 0  # a serving machine is billed while it waits
    # the money is this run's measured speeds times the stated assumptions
    train_speed = metrics["tokens_per_second"]["train"]["lora"]
    serve_speed = metrics["merged_vs_adapter_tokens_per_second"]["generate_merged"]
    served = assumed["requests_per_day"] * assumed["tokens_per_request"] * assumed["days_served"]
    assert hours["train"] == pytest.approx(assumed["train_tokens"] * assumed["runs"] / train_speed / 3600)
    assert hours["busy"] == pytest.approx(served / serve_speed / 3600)
    price = assumed["price_per_hour"][metrics["device"]]
    assert usd["training_compute"] == pytest.approx(hours["train"] * price, abs=0.01)
    assert usd["serving_compute"] == pytest.approx(hours["billed"] * price, abs=0.01)


def test_two_processes_equal_one(metrics):
    ddp, fsdp = metrics["ddp"], metrics["fsdp"]
    assert ddp["steps"][0] == ddp["steps"][1] > 0
    assert ddp["replicas_equal"] and ddp["adapter_changed"]
    assert ddp["vs_one_process"] < 1e-4
    # FSDP: each of the two processes holds half of the parameter bytes, and ends where one process does
    assert sum(fsdp["bytes_per_rank"]) == fsdp["parameter_bytes"]
    assert max(fsdp["bytes_per_rank"]) <= 0.51 * fsdp["parameter_bytes"]
    assert fsdp["vs_one_process"] < 1e-4
    assert fsdp["losses"]["1"] == pytest.approx(fsdp["losses"]["2"], rel=1e-4)
    # each run timed its steps, one process and two (JSON keys are strings)
    for times in (ddp["step_seconds"], fsdp["step_seconds"]):
        assert set(times) == {"1", "2"} and all(t > 0 for t in times.values())
