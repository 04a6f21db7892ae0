"""Training that survives a disconnect: checkpoints every N steps, resumed from the last complete one.

A free Colab session can end at any moment. With `checkpoint_dir` set (on Colab, for example, a folder
of a mounted Google Drive), a trainer saves a checkpoint every `save_steps` optimizer steps; with
`resume=True` the next run continues from the newest *complete* one: same weights, optimizer state,
schedule, data order and random state, so it ends where an uninterrupted run ends.

The Trainer writes a checkpoint file by file. A marker, written last (write, then rename), says a
checkpoint is complete, which model and run it belongs to, and whether the run had finished: a folder cut
off mid-write, or one from another model or run, is never loaded. A notebook with several runs (methods,
seeds) gives each its own sub-folder (`run_name`): on resume, finished runs are loaded, not trained again,
and the interrupted one continues.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import time
from pathlib import Path

from transformers import TrainerCallback, TrainerState

MARKER = "course_checkpoint.json"
NO_CHECKPOINTS = {"output_dir": None, "save": {}, "callbacks": [], "resume_from": None, "finished": False,
                  "seconds_before": 0.0}
STEP = re.compile(r"^checkpoint-(\d+)$")


def run_signature(**settings) -> str:
    """A short fingerprint of what defines a run (model, data, recipe, adapter): a checkpoint from another
    run has another signature."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def checkpoint_folder(path: str | Path) -> Path:
    """The folder checkpoints go to, created; a Google Drive path that is not mounted is refused."""
    path = Path(path)
    if str(path).startswith("/content/drive") and not Path("/content/drive/MyDrive").exists():
        raise FileNotFoundError(f"{path} is on Google Drive, which is not mounted in this session. Run "
                                "`from google.colab import drive; drive.mount('/content/drive')` first, "
                                "or choose a local checkpoint_dir.")
    path.mkdir(parents=True, exist_ok=True)
    return path


class MarkComplete(TrainerCallback):
    """After the Trainer has written a checkpoint, mark it complete (write, then rename). The marker also
    keeps the training seconds so far, earlier sessions' included (`seconds_before`)."""

    def __init__(self, model: str, signature: str, seconds_before: float = 0.0):
        self.model, self.signature, self.seconds_before = model, signature, seconds_before
        self.start = time.perf_counter()

    def on_train_begin(self, args, state, control, **kw):
        self.start = time.perf_counter()

    def on_save(self, args, state, control, **kw):
        if not state.is_world_process_zero:
            return
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        tmp = folder / (MARKER + ".tmp")
        seconds = self.seconds_before + time.perf_counter() - self.start
        tmp.write_text(json.dumps({"model": self.model, "run": self.signature, "step": state.global_step,
                                   "finished": state.global_step >= state.max_steps, "seconds": seconds}))
        os.replace(tmp, folder / MARKER)


def last_complete_checkpoint(folder: str | Path, model: str, signature: str) -> str | None:
    """The newest complete checkpoint of this model and run in `folder`, or None when there is none yet.

    A checkpoint of another model or run is an error (resuming it would silently train something else).
    """
    folder = Path(folder)
    found = sorted(((int(m.group(1)), p) for p in folder.iterdir() if (m := STEP.match(p.name)) and p.is_dir()),
                   reverse=True) if folder.exists() else []
    for step, path in found:
        marker = path / MARKER
        if not marker.exists():
            print(f"skipping {path.name}: incomplete (written when the session ended?)")
            continue
        info = json.loads(marker.read_text())
        if info["model"] != model or info["run"] != signature:
            raise ValueError(f"{path} belongs to another run (model {info['model']!r}, run {info['run']}; this one: "
                             f"{model!r}, run {signature}). Point checkpoint_dir at an empty folder, or set "
                             "resume=False to start over in a new folder.")
        return str(path)
    return None


def checkpointing(checkpoint_dir: str | None, save_steps: int, resume: bool, model: str, *,
                  run_name: str | None = None, **run) -> dict:
    """Everything a notebook needs to checkpoint and resume, as a dict:
    "output_dir" (the checkpoint folder, or None), "save" (the trainer's save_strategy/save_steps; the two
    newest checkpoints are kept), "callbacks" (the marker), "resume_from" (the checkpoint to resume from, or
    None), "finished" (that checkpoint ends its run: load it, train nothing), "seconds_before" (training
    seconds of the earlier sessions, up to that checkpoint).
    With checkpoint_dir None: no checkpoints. run_name: this run's sub-folder, for notebooks with several
    runs. run: what defines the run (dataset, recipe, adapter, seed...).
    """
    if not checkpoint_dir:
        if resume:
            raise ValueError("resume=True needs a checkpoint_dir to resume from.")
        return {**NO_CHECKPOINTS, "save": {"save_strategy": "no"}}
    folder = checkpoint_folder(Path(checkpoint_dir) / run_name if run_name else checkpoint_dir)
    signature = run_signature(model=model, **run, **({"run_name": run_name} if run_name else {}))
    resume_from = last_complete_checkpoint(folder, model, signature) if resume else None
    if not resume and any(STEP.match(p.name) for p in folder.iterdir()):
        raise FileExistsError(f"{folder} already holds checkpoints. Set resume=True to continue that run, or "
                              "choose an empty checkpoint_dir: nothing is overwritten unasked.")
    marker = json.loads((Path(resume_from) / MARKER).read_text()) if resume_from else {}
    # two kept: the newest may still be half-written when the session ends, the one before is complete
    return {"output_dir": str(folder),
            "save": {"save_strategy": "steps", "save_steps": save_steps, "save_total_limit": 2},
            "callbacks": [MarkComplete(model, signature, marker.get("seconds", 0.0))], "resume_from": resume_from,
            "finished": marker.get("finished", False), "seconds_before": marker.get("seconds", 0.0)}


def restore_finished(trainer, checkpoint: str) -> None:
    """Load a finished run's last checkpoint (weights or adapter, optimizer state, and the log) into the
    trainer, without training. `trainer.train(resume_from_checkpoint=...)` at the last step would take one
    step more. The Trainer's own loaders, as `train` uses them."""
    trainer._load_from_checkpoint(checkpoint)      # a full model or an adapter
    trainer.state = TrainerState.load_from_json(str(Path(checkpoint) / "trainer_state.json"))
    trainer.create_optimizer_and_scheduler(num_training_steps=trainer.state.max_steps)
    trainer._load_optimizer_and_scheduler(checkpoint)
    print(f"{checkpoint}: this run had finished; its weights are loaded, nothing is trained again")


def train_resumable(trainer, checkpoints: dict) -> None:
    """Train, continuing from the last complete checkpoint when there is one (`checkpointing`'s plan)."""
    if checkpoints["finished"]:
        restore_finished(trainer, checkpoints["resume_from"])
    else:
        trainer.train(resume_from_checkpoint=checkpoints["resume_from"])   # None: from the start
