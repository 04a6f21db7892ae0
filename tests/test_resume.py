"""Training survives a disconnect: a run killed mid-way and resumed from its last complete checkpoint ends with
the same adapter and losses as an uninterrupted run; checkpoints of another run, or half-written ones, are
never loaded."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from helpers.checkpoints import MARKER, checkpointing, last_complete_checkpoint, run_signature
from helpers.paths import ROOT

STEPS = 10
ARGS = ["--max-steps", str(STEPS), "--rows", "96", "--batch-size", "8", "--save-steps", "2"]


def script(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "helpers.sft_script", "--output-dir", str(out), *ARGS, *extra]


def env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}


def test_a_killed_run_resumes_to_the_same_result(tmp_path):
    whole = tmp_path / "whole"
    subprocess.run(script(whole), cwd=ROOT, env=env(), check=True, capture_output=True, timeout=300)

    cut, ckpt = tmp_path / "cut", tmp_path / "checkpoints"
    proc = subprocess.Popen(script(cut, "--checkpoint-dir", str(ckpt)), cwd=ROOT, env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not (ckpt / "checkpoint-4" / MARKER).exists():      # kill it once 4 of its 10 steps are saved
        assert proc.poll() is None and time.time() < deadline, "the run ended before its 4th step was saved"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = max(int(p.name.split("-")[1]) for p in ckpt.glob("checkpoint-*"))
    assert killed_at < STEPS, "the run was not cut short"

    done = subprocess.run(script(cut, "--checkpoint-dir", str(ckpt), "--resume"), cwd=ROOT, env=env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    a, b = load_file(whole / "adapter_rank0.safetensors"), load_file(cut / "adapter_rank0.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-6)
    log_whole, log_cut = (json.loads((d / "log_rank0.json").read_text()) for d in (whole, cut))
    resumed_at = int(Path(log_cut["resumed_from"]).name.split("-")[1])
    print(f"killed after checkpoint {killed_at}, resumed from {resumed_at}")
    assert 4 <= resumed_at <= killed_at and log_cut["steps"] == log_whole["steps"] == STEPS
    assert len(log_whole["losses"]) == STEPS
    assert log_cut["losses"] == pytest.approx(log_whole["losses"], rel=1e-4)   # restored history + new steps


def test_checkpoints_of_another_run_or_half_written_are_not_loaded(tmp_path):
    done, partial = tmp_path / "checkpoint-2", tmp_path / "checkpoint-4"
    done.mkdir()
    partial.mkdir()                                           # no marker: cut off while it was written
    (done / MARKER).write_text(json.dumps({"model": "m", "run": run_signature(lr=1), "step": 2}))
    assert last_complete_checkpoint(tmp_path, "m", run_signature(lr=1)) == str(done)
    with pytest.raises(ValueError, match="belongs to another run"):
        last_complete_checkpoint(tmp_path, "m", run_signature(lr=2))
    with pytest.raises(FileExistsError, match="nothing is overwritten"):
        checkpointing(str(tmp_path), 2, resume=False, model="m", lr=1)
    with pytest.raises(ValueError, match="needs a checkpoint_dir"):
        checkpointing(None, 2, resume=True, model="m")


def test_an_unmounted_drive_path_says_how_to_mount(tmp_path):
    if Path("/content/drive/MyDrive").exists():
        pytest.skip("Google Drive is mounted here")
    with pytest.raises(FileNotFoundError, match="drive.mount"):
        checkpointing("/content/drive/MyDrive/course/run1", 2, resume=False, model="m")


def test_a_grpo_run_resumed_from_its_checkpoint_ends_where_the_whole_run_ends(tmp_path):
    """RL resumes too: GRPO (sampling, rewards, the optimizer) continued from step 2 of 4 gives the adapter of
    the uninterrupted run; the checkpoint restores the sampling RNG with the weights."""
    import shutil

    from transformers import TrainerCallback

    from helpers import grpo
    from helpers.data import load_world
    from helpers.models import load_model
    from helpers.training import standard_lora

    rows = grpo.reversal_prompts(load_world("skill_train")[:16], where="skill_train")
    knobs = dict(learning_rate=1e-3, max_steps=4, prompts_per_step=2, num_generations=2,
                 max_completion_length=8, seed=0)

    def run(out: Path, resume: bool) -> tuple[dict, str | None, list[int]]:
        base, tokenizer = load_model("data/tiny-base")
        plan = checkpointing(str(tmp_path / "ckpt"), 2, resume, "data/tiny-base", **knobs)
        trainer = grpo.make_grpo_trainer(base, tokenizer, rows, [grpo.reversal_partial], output_dir=plan["output_dir"],
                                         peft_config=standard_lora(r=4), callbacks=plan["callbacks"],
                                         **knobs, **plan["save"])
        steps = []
        trainer.add_callback(type("Count", (TrainerCallback,), {
            "on_step_end": lambda self, args, state, control, **kw: steps.append(state.global_step)})())
        trainer.train(resume_from_checkpoint=plan["resume_from"])
        return {k: v.detach().clone() for k, v in trainer.model.named_parameters() if "lora_" in k}, \
            plan["resume_from"], steps

    whole, _, steps_whole = run(tmp_path / "whole", resume=False)  # writes checkpoint-2 and checkpoint-4
    shutil.rmtree(tmp_path / "ckpt" / "checkpoint-4")              # as if cut off after step 2
    resumed, resumed_from, steps_resumed = run(tmp_path / "resumed", resume=True)
    assert Path(resumed_from).name == "checkpoint-2"
    assert steps_whole == [1, 2, 3, 4] and steps_resumed == [3, 4]  # it continued, it did not start over
    assert whole.keys() == resumed.keys() and whole
    for key in whole:
        torch.testing.assert_close(resumed[key], whole[key], rtol=1e-4, atol=1e-6)
