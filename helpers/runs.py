"""One training routine for every trainer of the course (SFT, DPO, GRPO), and training that survives a
disconnect.

A notebook builds its config (`SFTConfig`, `DPOConfig`, `GRPOConfig`) and its trainer in view, then calls
`train(trainer, plan)`, which: finds the run's last complete checkpoint (when resuming), trains from it or
from the start (a run that had finished is loaded, not trained again), times the training, gives the model
its own `forward` back (TRL patches it), switches it to eval, and returns what was measured (`TrainedRun`).

Checkpoints. A free Colab session can end at any moment. With `checkpoint_dir` set (on Colab, for example, a
folder of a mounted Google Drive), a trainer saves a checkpoint every `save_steps` optimizer steps into the
run's own sub-folder (`plan.trainer_args(run_name, ...)` goes into the config); with `resume=True` the next
run continues from the newest *complete* one: same weights, optimizer state, schedule, data order and random
state, so it ends where an uninterrupted run ends.

The Trainer writes a checkpoint file by file. A marker, written last (write, then rename), says a
checkpoint is complete, which run it belongs to, and whether the run had finished: a folder cut off mid-write,
or one of another run, is never loaded. A run's identity is its **signature**: a fingerprint of the trainer's
effective configuration (minus where it saves and how it prints), its adapter, its model and its data.
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from transformers import PrinterCallback, TrainerCallback, TrainerState

MARKER = "course_checkpoint.json"
STEP = re.compile(r"^checkpoint-(\d+)$")
# TrainingArguments that say where a run saves or how it prints, not what it trains
NOT_THE_RUN = ("output_dir", "logging_dir", "run_name", "save_strategy", "save_steps", "save_total_limit",
               "disable_tqdm", "report_to", "overwrite_output_dir", "resume_from_checkpoint", "push_to_hub",
               "hub_model_id", "hub_strategy", "hub_token", "hub_private_repo", "logging_strategy", "logging_steps",
               "logging_first_step")


@dataclass(frozen=True)
class CheckpointPlan:
    """Where a notebook's runs checkpoint, how often, and whether to continue: the notebook's three
    parameters. checkpoint_dir None: no checkpoints (each run writes under the notebook's output folder)."""
    checkpoint_dir: str | None = None
    save_steps: int = 50
    resume: bool = False

    def __post_init__(self):
        if self.resume and not self.checkpoint_dir:
            raise ValueError("resume=True needs a checkpoint_dir to resume from.")

    def trainer_args(self, run_name: str, output_dir: str | Path) -> dict:
        """The config's output_dir and save settings for one run: its own sub-folder of checkpoint_dir, a
        checkpoint every save_steps (the two newest kept: the newest may be half-written when a session
        ends), or, without checkpoint_dir, output_dir/run_name and no saving."""
        if not self.checkpoint_dir:
            return {"output_dir": str(Path(output_dir) / run_name), "save_strategy": "no"}
        folder = checkpoint_folder(Path(self.checkpoint_dir) / run_name)
        return {"output_dir": str(folder), "save_strategy": "steps", "save_steps": self.save_steps,
                "save_total_limit": 2}


NO_CHECKPOINTS = CheckpointPlan()


@dataclass
class TrainedRun:
    """What `train` measured. seconds: training time, earlier sessions' included (for a run loaded finished,
    the time it took when it ran)."""
    trainer: object
    seconds: float
    resumed_from: str | None = None

    @property
    def model(self):
        return self.trainer.model

    @property
    def steps(self) -> int:
        return self.trainer.state.global_step

    @property
    def log(self) -> list[dict]:
        return self.trainer.state.log_history


class Stopwatch(TrainerCallback):
    """Wall time of training only (not of dataset preparation), plus `seconds_before` (earlier sessions')."""

    def __init__(self, seconds_before: float = 0.0):
        self.seconds_before, self.start, self.stop = seconds_before, None, None

    def on_train_begin(self, args, state, control, **kw):
        self.start, self.stop = time.perf_counter(), None

    def on_train_end(self, args, state, control, **kw):
        self.stop = time.perf_counter()

    @property
    def seconds(self) -> float:
        if self.start is None:
            return self.seconds_before
        return self.seconds_before + (self.stop or time.perf_counter()) - self.start


class Snapshots(TrainerCallback):
    """A copy of the model after each of `steps` optimizer steps: `snapshots.models[step]`, in eval mode,
    with its own forward (`drop_trl_forward_patch`).

    At a constant learning rate the first n steps of a run ARE an n-step run of the same settings and seed:
    the same batches, the same sampled completions, the same updates (a GRPO run's copy at step 6 of 9 equals
    a 6-step run bit for bit: tests/test_grpo.py). So a notebook that also needs the shorter run reads the
    copy instead of training it again. Under any other schedule the step-n copy is not an n-step run (a
    decaying rate is still high at step n), and it is refused. A step the run does not reach (a resumed run
    past it, a shorter run) leaves no copy: check `step in snapshots.models`.
    """

    def __init__(self, steps):
        self.steps, self.models = {int(s) for s in steps if s}, {}

    def on_train_begin(self, args, state, control, **kw):
        schedule = getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)
        if self.steps and (schedule != "constant" or args.warmup_steps or getattr(args, "warmup_ratio", 0)):
            raise ValueError(f"Snapshots stand in for shorter runs only at a constant learning rate with no "
                             f"warm-up; this run has lr_scheduler_type={schedule!r}, warmup_steps="
                             f"{args.warmup_steps}: train the shorter runs instead")

    def on_step_end(self, args, state, control, model=None, **kw):
        if state.global_step in self.steps:
            snapshot = copy.deepcopy(model)
            drop_trl_forward_patch(snapshot)   # else the copy would run the original's forward
            self.models[state.global_step] = snapshot.eval()


class MarkComplete(TrainerCallback):
    """After the Trainer has written a checkpoint, mark it complete (write, then rename), with the run's
    signature and the training seconds so far."""

    def __init__(self, signature: str, model: str, stopwatch: Stopwatch):
        self.signature, self.model, self.stopwatch = signature, model, stopwatch

    def on_save(self, args, state, control, **kw):
        if not state.is_world_process_zero:
            return
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        tmp = folder / (MARKER + ".tmp")
        tmp.write_text(json.dumps({"model": self.model, "run": self.signature, "step": state.global_step,
                                   "finished": state.global_step >= state.max_steps,
                                   "seconds": self.stopwatch.seconds}))
        os.replace(tmp, folder / MARKER)


def checkpoint_folder(path: str | Path) -> Path:
    """The folder checkpoints go to, created; a Google Drive path that is not mounted is refused."""
    path = Path(path)
    if str(path).startswith("/content/drive") and not Path("/content/drive/MyDrive").exists():
        raise FileNotFoundError(f"{path} is on Google Drive, which is not mounted in this session. Run "
                                "`from google.colab import drive; drive.mount('/content/drive')` first, "
                                "or choose a local checkpoint_dir.")
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_fingerprint(dataset) -> str:
    """A fingerprint of a dataset's content (its rows as the trainer holds them)."""
    if dataset is None:
        return "none"
    digest = hashlib.sha256()
    for row in dataset.with_format(None):
        digest.update(json.dumps(row, sort_keys=True, default=_plain).encode())
    return digest.hexdigest()[:16]


def model_name(model) -> str:
    config = getattr(model, "config", None)
    return str(getattr(config, "name_or_path", "") or getattr(config, "_name_or_path", "") or type(model).__name__)


def run_signature(trainer) -> str:
    """A short fingerprint of what defines a run: the trainer's kind and effective configuration (minus where
    it saves and how it prints), the model, its adapter's config, the reward functions, and the data."""
    args = {k: v for k, v in trainer.args.to_dict().items() if k not in NOT_THE_RUN}
    peft = getattr(trainer.model, "peft_config", None) or {}
    settings = {"trainer": type(trainer).__name__, "args": args, "model": model_name(trainer.model),
                "adapters": {name: c.to_dict() for name, c in peft.items()},
                "rewards": [getattr(f, "__name__", repr(f)) for f in getattr(trainer, "reward_funcs", [])],
                "train": data_fingerprint(trainer.train_dataset),
                "eval": data_fingerprint(getattr(trainer, "eval_dataset", None))}
    text = json.dumps(settings, sort_keys=True, default=_plain)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _plain(value):
    """JSON for what json cannot write: a set in sorted order (its own order changes between processes)."""
    return sorted(map(str, value)) if isinstance(value, (set, frozenset)) else str(value)


def checkpoints_in(folder: Path) -> list[tuple[int, Path]]:
    """(step, path) of the checkpoint folders in `folder`, newest first."""
    if not folder.exists():
        return []
    return sorted(((int(m.group(1)), p) for p in folder.iterdir() if (m := STEP.match(p.name)) and p.is_dir()),
                  reverse=True)


def last_complete_checkpoint(folder: str | Path, signature: str) -> tuple[str | None, dict]:
    """(the newest complete checkpoint of this run in `folder`, its marker), or (None, {}) when there is none.

    A checkpoint of another run is an error (resuming it would silently train something else).
    """
    for _, path in checkpoints_in(Path(folder)):
        marker = path / MARKER
        if not marker.exists():
            print(f"skipping {path.name}: incomplete (written when the session ended?)")
            continue
        info = json.loads(marker.read_text())
        if info["run"] != signature:
            raise ValueError(f"{path} belongs to another run (model {info['model']!r}, run {info['run']}; this "
                             f"one: run {signature}: its data, model or settings differ). Point checkpoint_dir "
                             "at an empty folder, or set resume=False to start over in a new folder.")
        return str(path), info
    return None, {}


def restore_finished(trainer, checkpoint: str) -> None:
    """Load a finished run's last checkpoint (weights or adapter, optimizer state, and the log) into the
    trainer, without training. `trainer.train(resume_from_checkpoint=...)` at the last step would take one
    step more. The Trainer's own loaders, as `train` uses them."""
    trainer._load_from_checkpoint(checkpoint)      # a full model or an adapter
    trainer.state = TrainerState.load_from_json(str(Path(checkpoint) / "trainer_state.json"))
    trainer.create_optimizer_and_scheduler(num_training_steps=trainer.state.max_steps)
    trainer._load_optimizer_and_scheduler(checkpoint)
    print(f"{checkpoint}: this run had finished; its weights are loaded, nothing is trained again")


def drop_trl_forward_patch(model) -> None:
    """Give a model back its own `forward` after a TRL trainer is done with it.

    TRL 1.x trainers replace `forward` on the model *instance* by a closure over the original bound
    method (its fused LM head). The closure survives training: a `copy.deepcopy` of the model then
    still runs the ORIGINAL model's forward (generation included), so the copy's new adapter has no
    effect. Measured in notebook 05 before this fix: a DPO-trained copy generated exactly like the SFT model.
    Deleting the instance attribute restores the class's forward; TRL adds its patch again when a new
    trainer is built.
    """
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    for m in (model, inner):
        m.__dict__.pop("forward", None)


def score_label_positions_only() -> None:
    """On a CPU, TRL's fused LM head scores only the positions that carry a label, as it does on a GPU.

    TRL 1.16's fused head (`trl.trainer.utils.add_fused_lm_head`) projects and scores only the label positions
    where Triton runs (`compact`), and every position elsewhere, then zeroes the others: the same log-probs,
    computed for the prompt and padding positions too. Elsewhere means a CPU here, where that doubled the
    head's work; TRL keeps it for devices whose compiler would recompile for every count of label positions
    (Neuron), which a CPU's eager mode does not do. The same numbers (a DPO run's loss equal to the printed
    digits), DPO steps 2.0 -> 2.7 and GRPO steps 0.73 -> 0.85 a second on the tiny model at one thread
    (BENCHMARKS.md). Called by `train` and `trl_forward`; it changes nothing on a GPU, and nothing when TRL
    has no such switch.
    """
    try:
        from trl.trainer import utils as trl_utils
    except ImportError:
        return
    triton = getattr(trl_utils, "_use_triton", None)
    if triton is None or getattr(triton, "course_compact_on_cpu", False):
        return

    def compact(device) -> bool:
        return device.type == "cpu" or triton(device)

    compact.course_compact_on_cpu = True
    trl_utils._use_triton = compact


@contextlib.contextmanager
def trl_forward(trainer):
    """TRL's patched forward (its fused LM head) on the trainer's model inside the block, dropped after.

    `train` gives the model its own forward back; TRL's `compute_loss` (and GRPO's sampling and scoring) need
    the patched one, with the outputs this trainer asked for. For checking a hand-written loss after training:
    `with trl_forward(trainer): trainer.compute_loss(...)`.
    """
    from trl.trainer.utils import add_fused_lm_head

    score_label_positions_only()
    model = trainer.model
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    if "forward" in inner.__dict__:      # still patched (not trained by `train` yet)
        yield trainer
        return
    kind = type(trainer).__name__
    if kind == "DPOTrainer":
        extra = ("log_sum_sq_probs",) if trainer.use_weighting else ()
        options = {"outputs": ("log_probs", "entropy", "mean_logits", "is_top1", *extra)}
    elif kind == "GRPOTrainer":
        options = {"temperature": trainer.temperature, "outputs": ("log_probs", "entropy"),
                   "cast_lm_head_to_fp32": trainer.args.cast_lm_head_to_fp32}
    else:
        raise ValueError(f"trl_forward knows the patches of DPOTrainer and GRPOTrainer, not {kind}")
    add_fused_lm_head(inner, **options)
    try:
        yield trainer
    finally:
        drop_trl_forward_patch(model)


def quiet(trainer):
    """No log line printed per logging step (the notebooks plot the log instead); returns the trainer."""
    trainer.remove_callback(PrinterCallback)
    return trainer


def train(trainer, plan: CheckpointPlan = NO_CHECKPOINTS) -> TrainedRun:
    """Train a built trainer (any Trainer: SFT, DPO, GRPO...) the course's way; returns what was measured.

    With plan.checkpoint_dir, the trainer's config must come from `plan.trainer_args(...)`: checkpoints go to
    its output_dir, each marked complete with the run's signature. With plan.resume, the run continues from
    its newest complete checkpoint, or is loaded without training when that checkpoint ends the run. Without
    resume, a folder that already holds checkpoints is refused: nothing is overwritten unasked.
    Afterwards the model has its own forward back (`drop_trl_forward_patch`) and is in eval mode.
    """
    quiet(trainer)
    score_label_positions_only()
    resume_from, marker = None, {}
    if plan.checkpoint_dir:
        folder = Path(trainer.args.output_dir)
        signature = run_signature(trainer)
        if plan.resume:
            resume_from, marker = last_complete_checkpoint(folder, signature)
        elif checkpoints_in(folder):
            raise FileExistsError(f"{folder} already holds checkpoints. Set resume=True to continue that run, "
                                  "or choose an empty checkpoint_dir: nothing is overwritten unasked.")
    stopwatch = Stopwatch(marker.get("seconds", 0.0))
    callbacks = [stopwatch]
    if plan.checkpoint_dir:
        callbacks.append(MarkComplete(signature, model_name(trainer.model), stopwatch))
    for callback in callbacks:
        trainer.add_callback(callback)
    try:
        if marker.get("finished"):
            restore_finished(trainer, resume_from)
        else:
            trainer.train(resume_from_checkpoint=resume_from)   # None: from the start
    finally:
        for callback in callbacks:
            trainer.remove_callback(callback)
    drop_trl_forward_patch(trainer.model)
    trainer.model.eval()
    return TrainedRun(trainer=trainer, seconds=stopwatch.seconds, resumed_from=resume_from)


def loss_curves(log: list[dict]) -> dict[str, list[tuple[int, float]]]:
    """(step, loss) pairs for training and validation from a trainer's log (`TrainedRun.log`)."""
    return {"train": [(h["step"], h["loss"]) for h in log if "loss" in h],
            "eval": [(h["step"], h["eval_loss"]) for h in log if "eval_loss" in h]}
