"""The claims (helpers.claims) and their ledger (helpers.ledger): CLAIMS.md is exactly what the committed runs'
metrics render, every claim the course names is in it, and the verdicts follow the course's rule. Each notebook's
tests check that the run CI makes agrees with the committed verdicts (ledger.disagreements)."""
import copy
import json

import pytest

from helpers import claims, ledger


def test_the_ledger_is_rendered_from_the_committed_results():
    assert ledger.LEDGER.read_text() == ledger.render(), "run: python -m helpers.ledger"


def test_every_claim_is_listed_once_with_a_verdict_for_each_model():
    keys = [c.key for c in claims.CLAIMS]
    assert len(keys) == len(set(keys)) == 25
    runs = ledger.load_results()
    tiny = {c["key"]: c for notebook in runs["tiny"].values() for c in notebook}
    real = {c["key"]: c for notebook in runs["benchmark"].values() for c in notebook}
    assert set(tiny) == set(keys), "results/tiny/ lacks a notebook's claims"
    allowed = {claims.SUPPORTED, claims.CONTRADICTED, claims.CANT_TELL, claims.NOT_RUN}
    assert {c["verdict"] for c in tiny.values()} <= allowed
    for c in claims.CLAIMS:   # a claim the course cannot measure yet says why
        assert (c.judge is None) == bool(c.why_not), c.key
        if c.real_only:   # judged on a real model's run (06's ARC ruler), "not run" on the tiny one
            assert tiny[c.key]["verdict"] == claims.NOT_RUN and real[c.key]["verdict"] != claims.NOT_RUN, c.key
        elif c.judge is not None:
            assert tiny[c.key]["verdict"] != claims.NOT_RUN, (c.key, tiny[c.key]["measured"])


def test_a_comparison_becomes_a_claims_verdict():
    assert claims.from_comparison("A ahead of B", "A ahead of B") == claims.SUPPORTED
    assert claims.from_comparison("B ahead of A", "A ahead of B") == claims.CONTRADICTED
    assert claims.from_comparison("can't tell", "A ahead of B") == claims.CANT_TELL


def test_a_budget_that_skipped_a_part_gives_not_run_and_a_flipped_verdict_is_found():
    committed = json.loads((ledger.RESULTS / "tiny" / "03.json").read_text())
    skipped = {k: v for k, v in committed.items() if not k.startswith("lr_") and k != "lora_full_lr_ratio"}
    (claim,) = claims.notebook_claims("03", skipped)
    assert claim["key"] == "lora_lr_10x" and claim["verdict"] == claims.NOT_RUN
    assert ledger.disagreements("03", committed) == []
    flipped = copy.deepcopy(committed)
    flipped["lora_full_lr_ratio"] = 1.0          # LoRA's best rate equal to full fine-tuning's
    assert ledger.disagreements("03", flipped) == ["lora_lr_10x: committed 'supported', this run 'contradicted'"]


@pytest.mark.parametrize("prefix", ["01", "02", "03", "04", "05", "06", "07"])
def test_committed_claims_are_the_judges_on_the_committed_metrics(prefix):
    assert ledger.disagreements(prefix, json.loads((ledger.RESULTS / "tiny" / f"{prefix}.json").read_text())) == []


def test_qlora_above_lora_in_every_seed_is_not_support_for_losing_nothing():
    """The real benchmark's case (2026-12-02): both verdicts "can't tell", QLoRA's loss above LoRA's in each seed."""
    m = json.loads((ledger.RESULTS / "tiny" / "04.json").read_text())
    assert claims.qlora_loses_nothing(m)["verdict"] == claims.SUPPORTED   # tiny: QLoRA below LoRA in every seed
    above = copy.deepcopy(m)
    above["qlora_vs_lora_loss"]["QLoRA"]["values"] = [v + 0.05 for v in m["qlora_vs_lora_loss"]["LoRA"]["values"]]
    judged = claims.qlora_loses_nothing(above)
    assert judged["verdict"] == claims.CANT_TELL and "above LoRA's in every seed (+0.050" in judged["values"]
