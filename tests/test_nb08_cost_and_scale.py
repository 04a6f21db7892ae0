"""Notebook 08: the memory estimator against measurement (bytes exactly, peaks closely), will-it-fit,
throughput with the adapter and merged, the cost arithmetic, and two-process runs equal to one process."""
import pytest


@pytest.fixture(params=["tiny", "real"])
def metrics(request, notebook_metrics, real_notebook_metrics):
    return notebook_metrics("08") if request.param == "tiny" else real_notebook_metrics("08")


def test_estimator_equals_measured_bytes_exactly(metrics):
    settings = metrics["estimate_vs_measured"]
    assert {key.split("/")[0] for key in settings} == {"full", "lora", "qlora"}
    for key, pair in settings.items():
        assert pair["estimated"] == pair["measured"] > 0, (key, pair)
    # AdamW keeps two moments per trainable parameter: the state is twice the trained weights and more
    assert settings["full/optimizer_states"]["measured"] >= 2 * settings["full/weights"]["measured"]
    assert settings["lora/optimizer_states"]["measured"] < 0.2 * settings["full/optimizer_states"]["measured"]
    assert settings["qlora/weights"]["measured"] < 0.5 * settings["lora/weights"]["measured"]


def test_estimated_peak_is_close_to_the_measured_peak(metrics):
    rows = metrics["peak_vs_estimate"]
    assert {(r["method"], r["checkpointing"]) for r in rows} == {
        (m, c) for m in ("full", "lora", "qlora") for c in (False, True)}
    assert all(abs(r["error"]) <= 0.15 for r in rows), rows
    peak = {(r["method"], r["checkpointing"]): r["measured MiB"] for r in rows}
    for method in ("full", "lora", "qlora"):  # checkpointing never costs memory; QLoRA holds the least
        assert peak[(method, True)] <= peak[(method, False)]
    assert peak[("qlora", False)] < peak[("lora", False)] < peak[("full", False)]


def test_will_it_fit_table(metrics):
    rows = {(r["model"], r["method"]): r for r in metrics["will_it_fit"]}
    assert len(rows) == 18
    assert rows[("7B (Qwen2.5-7B)", "full (fp32, AdamW)")]["80 GB (A100 / H100)"] == "no"
    assert rows[("7B (Qwen2.5-7B)", "QLoRA (NF4 base)")]["16 GB (Colab T4)"] == "yes"
    assert rows[("0.5B (Qwen2.5-0.5B)", "full (fp32, AdamW)")]["80 GB (A100 / H100)"] == "yes"


def test_merged_model_answers_like_the_adapter(metrics):
    merged = metrics["merged_vs_adapter_tokens_per_second"]
    assert merged["max_logit_difference"] < 1e-2  # float32 rounding over 30 layers: 7e-4 measured
    assert all(merged[k] > 0 for k in ("generate_adapter", "generate_merged", "forward_adapter",
                                       "forward_merged"))
    assert all(v > 0 for v in metrics["tokens_per_second"]["train"].values())


def test_cost_estimate_adds_up(metrics):
    usd, hours = metrics["cost_estimate_usd"], metrics["cost_hours"]
    assert set(usd) == {"training compute", "serving compute", "people", "data (labels)"}
    assert all(v > 0 for v in usd.values())
    assert hours["billed"] >= hours["busy"] > 0  # a serving machine is billed while it waits


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
