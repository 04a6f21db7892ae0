"""Training survives a disconnect: a run killed mid-way and resumed from its last complete checkpoint ends with
the same adapter and losses as an uninterrupted run; checkpoints of another run, or half-written ones, are
never loaded."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from helpers.paths import ROOT
from helpers.runs import MARKER, CheckpointPlan, last_complete_checkpoint, run_signature, train

STEPS = 10
ARGS = ["--max-steps", str(STEPS), "--rows", "96", "--batch-size", "8", "--save-steps", "2"]


class StepsTrained(TrainerCallback):
    """The global step after each optimizer step a trainer runs: which steps a resumed run trained."""

    def __init__(self):
        self.steps = []

    def on_step_end(self, args, state, control, **kw):
        self.steps.append(state.global_step)


def lora_weights(model) -> dict:
    return {k: v.detach().clone() for k, v in model.named_parameters() if "lora_" in k}


def script(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "helpers.sft_script", "--output-dir", str(out), *ARGS, *extra]


def env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}


def test_a_killed_run_resumes_to_the_same_result(tmp_path):
    whole = tmp_path / "whole"
    subprocess.run(script(whole), cwd=ROOT, env=env(), check=True, capture_output=True, timeout=300)

    cut, checkpoint_dir = tmp_path / "cut", tmp_path / "checkpoints"
    ckpt = checkpoint_dir / "run"                                 # the script's run checkpoints in its sub-folder
    proc = subprocess.Popen(script(cut, "--checkpoint-dir", str(checkpoint_dir)), cwd=ROOT, env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not (ckpt / "checkpoint-4" / MARKER).exists():      # kill it once 4 of its 10 steps are saved
        assert proc.poll() is None and time.time() < deadline, "the run ended before its 4th step was saved"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = max(int(p.name.split("-")[1]) for p in ckpt.glob("checkpoint-*"))
    assert killed_at < STEPS, "the run was not cut short"

    done = subprocess.run(script(cut, "--checkpoint-dir", str(checkpoint_dir), "--resume"), cwd=ROOT, env=env(),
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
    (done / MARKER).write_text(json.dumps({"model": "m", "run": "abc", "step": 2, "seconds": 1.5}))
    found, marker = last_complete_checkpoint(tmp_path, "abc")
    assert found == str(done) and marker["seconds"] == 1.5
    with pytest.raises(ValueError, match="belongs to another run"):
        last_complete_checkpoint(tmp_path, "xyz")
    with pytest.raises(ValueError, match="needs a checkpoint_dir"):
        CheckpointPlan(None, 2, resume=True)


def test_a_run_is_known_by_its_settings_and_data_and_nothing_is_overwritten_unasked(tmp_path):
    """The signature changes with the effective configuration and with the data, not with where the run saves
    or how it prints; a folder holding checkpoints is refused without resume."""
    from trl import SFTTrainer

    from helpers.data import load_world
    from helpers.models import load_model
    from helpers.training import sft_config, sft_dataset

    rows = load_world("sft_train")[:16]
    base, tok = load_model("data/tiny-base")

    def trainer(data, **config):
        args = sft_config(**{"output_dir": str(tmp_path / "a"), "learning_rate": 1e-3, "max_steps": 1, **config})
        return SFTTrainer(model=base, args=args, train_dataset=sft_dataset(data, tok), processing_class=tok)

    same = run_signature(trainer(rows))
    assert run_signature(trainer(rows, output_dir=str(tmp_path / "b"), logging_steps=1)) == same
    assert run_signature(trainer(rows, learning_rate=2e-3)) != same
    assert run_signature(trainer(rows[:15])) != same
    plan = CheckpointPlan(str(tmp_path / "ckpt"), 1)
    (tmp_path / "ckpt" / "sft" / "checkpoint-1").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="nothing is overwritten"):
        train(trainer(rows, **plan.trainer_args("sft", tmp_path)), plan)


def test_an_unmounted_drive_path_says_how_to_mount(tmp_path):
    if Path("/content/drive/MyDrive").exists():
        pytest.skip("Google Drive is mounted here")
    with pytest.raises(FileNotFoundError, match="drive.mount"):
        CheckpointPlan("/content/drive/MyDrive/course", 2).trainer_args("run1", tmp_path)


def test_a_grpo_run_resumed_from_its_checkpoint_ends_where_the_whole_run_ends(tmp_path):
    """RL resumes too: GRPO (sampling, rewards, the optimizer) continued from step 2 of 4 gives the adapter of
    the uninterrupted run; the checkpoint restores the sampling RNG with the weights."""
    from helpers import grpo
    from helpers.data import load_world
    from helpers.models import load_model
    from helpers.training import standard_lora

    rows = grpo.reversal_prompts(load_world("skill_train")[:16], where="skill_train")
    knobs = dict(learning_rate=1e-3, max_steps=4, prompts_per_step=2, num_generations=2,
                 max_completion_length=8, seed=0)

    def run(out: Path, resume: bool) -> tuple[dict, str | None, list[int]]:
        base, tokenizer = load_model("data/tiny-base")
        plan = CheckpointPlan(str(tmp_path / "ckpt"), 2, resume)
        counter = StepsTrained()
        done = grpo.train_grpo(base, tokenizer, rows, [grpo.reversal_partial], plan, output_dir=str(out),
                               peft_config=standard_lora(r=4), callbacks=[counter], **knobs)
        return lora_weights(done.model), done.resumed_from, counter.steps

    whole, _, steps_whole = run(tmp_path / "whole", resume=False)  # writes checkpoint-2 and checkpoint-4
    shutil.rmtree(tmp_path / "ckpt" / "grpo" / "checkpoint-4")     # as if cut off after step 2
    resumed, resumed_from, steps_resumed = run(tmp_path / "resumed", resume=True)
    assert Path(resumed_from).name == "checkpoint-2"
    assert steps_whole == [1, 2, 3, 4] and steps_resumed == [3, 4]  # it continued, it did not start over
    assert whole.keys() == resumed.keys() and whole
    for key in whole:
        torch.testing.assert_close(resumed[key], whole[key], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("adapter", ["lora", "full"])
def test_a_finished_run_is_loaded_not_trained_again(tmp_path, adapter):
    """Resuming a notebook after a disconnect passes again through its runs that had finished: each is
    loaded from its last checkpoint (weights, optimizer state, log), with no step more, and keeps its seconds;
    Trainer.train(resume_from_checkpoint=) at the last step would take one step more."""
    from helpers.data import load_world
    from helpers.env import seed_everything
    from helpers.models import load_model
    from helpers.recipes import RECIPES
    from helpers.training import sft_knobs, standard_lora, train_sft

    rows = load_world("sft_train")[:64]

    def run(resume: bool):
        seed_everything(0)
        base, tok = load_model("data/tiny-base")
        plan = CheckpointPlan(str(tmp_path), 2, resume)
        done = train_sft(base, tok, rows, output_dir=str(tmp_path / "out"), run_name=adapter, plan=plan,
                         peft_config=standard_lora() if adapter == "lora" else None,
                         **sft_knobs(RECIPES["sft"]["tiny"], max_steps=5, batch_size=8), logging_steps=1)
        weights = {k: v.detach().clone() for k, v in done.model.named_parameters()
                   if adapter == "full" or "lora_" in k}
        return done, weights

    whole, w_whole = run(resume=False)
    again, w_again = run(resume=True)
    assert Path(again.resumed_from).name == "checkpoint-5"
    assert again.steps == 5 and not (tmp_path / adapter / "checkpoint-6").exists()
    for key in w_whole:
        assert torch.equal(w_whole[key], w_again[key]), key
    losses = [h["loss"] for h in whole.log if "loss" in h]
    assert [h["loss"] for h in again.log if "loss" in h] == losses and len(losses) == 5
    assert len(again.trainer.optimizer.state) == len(whole.trainer.optimizer.state) > 0   # optimizer state too
    marker = json.loads((Path(again.resumed_from) / MARKER).read_text())
    assert again.seconds == pytest.approx(marker["seconds"]) and marker["seconds"] > 0


def test_a_dpo_run_resumed_from_its_checkpoint_ends_where_the_whole_run_ends(tmp_path):
    from helpers.data import load_world
    from helpers.dpo import dpo_knobs, make_dpo_trainer
    from helpers.env import seed_everything
    from helpers.models import load_model
    from helpers.recipes import RECIPES
    from helpers.training import standard_lora

    pairs = load_world("dpo_train")[:16]
    knobs = dpo_knobs(RECIPES["dpo"]["tiny"], max_steps=4, batch_size=4)

    def run(resume: bool):
        seed_everything(0)
        base, tok = load_model("data/tiny-base")
        plan = CheckpointPlan(str(tmp_path / "ckpt"), 2, resume)
        counter = StepsTrained()
        trainer = make_dpo_trainer(base, tok, pairs, output_dir=str(tmp_path / "out"), plan=plan,
                                   peft_config=standard_lora(r=4), callbacks=[counter], seed=0, **knobs)
        return lora_weights(train(trainer, plan).model), counter.steps

    whole, steps_whole = run(resume=False)
    shutil.rmtree(tmp_path / "ckpt" / "dpo" / "checkpoint-4")                 # as if cut off after step 2
    resumed, steps_resumed = run(resume=True)
    finished, steps_finished = run(resume=True)                                 # checkpoint-4 exists again
    assert (steps_whole, steps_resumed, steps_finished) == ([1, 2, 3, 4], [3, 4], [])
    assert whole.keys() == resumed.keys() == finished.keys() and whole
    for key in whole:
        torch.testing.assert_close(resumed[key], whole[key], rtol=1e-4, atol=1e-6)
        assert torch.equal(finished[key], resumed[key])


def test_a_notebook_resumed_after_a_disconnect_ends_with_the_same_adapters(tmp_path):
    """Notebook 07 trains four adapters one after the other. Cut off while training the third (its last
    checkpoint half-written, the fourth not begun) and rerun with resume=True: the first two are loaded, the
    third continues from its last complete checkpoint, the fourth trains, and every adapter equals the
    uninterrupted run's."""
    from helpers.course import notebooks, run_notebook

    (nb,) = notebooks(["07"])
    ckpt = tmp_path / "checkpoints"
    params = {"steps": {"facts": 6, "skill": 6, "persona": 6}, "batch_size": 4, "max_eval_rows": 2,
              "timing_repeats": 1, "combination_types": ["cat"], "checkpoint_dir": str(ckpt), "save_steps": 2,
              "seeds": [0]}   # one persona child (section 5 trains one per seed)
    whole, _ = run_notebook(nb, tmp_path / "whole", params)
    assert sorted(p.name for p in (ckpt / "persona").iterdir() if p.is_dir()) == ["checkpoint-4", "checkpoint-6"]
    (ckpt / "persona" / "checkpoint-6" / MARKER).unlink()                       # cut off while it was written
    shutil.rmtree(ckpt / "persona_child_seed0")                                # never begun
    with pytest.raises(Exception, match="nothing is overwritten"):             # resume is asked for, not assumed
        run_notebook(nb, tmp_path / "again", params)
    resumed, _ = run_notebook(nb, tmp_path / "resumed", {**params, "resume": True})
    text = (tmp_path / "resumed" / nb.name).read_text()
    assert text.count("this run had finished") == 2 and "skipping checkpoint-6: incomplete" in text
    for adapter in ("facts", "skill", "persona", "persona_child_seed0"):
        a, b = (load_file(d / "adapters" / adapter / "adapter_model.safetensors")
                for d in (tmp_path / "whole", tmp_path / "resumed"))
        assert a.keys() == b.keys() and a
        for key in a:
            torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-6)
    assert resumed["per_task_accuracy"] == whole["per_task_accuracy"]
