"""The resumable training run behind scripts/train.py: the module's plain loop plus its bookkeeping.

``run`` builds the model from a ``TrainConfig`` and hands it to ``du.train``, the loop the
lessons read; everything else happens in the loop's per-step callback or around it:

- ``checkpoint.pt`` after every epoch and whenever the run stops early: model, EMA, optimiser,
  step, the epoch's order of the images, the generator's state, the recipe and the data's
  hash, written atomically. Resuming from it continues the same run exactly (the same
  losses and weights as a run that never stopped).
- ``{prefix}_{epoch}.pth`` EMA snapshots every ``save_every`` epochs and after the last one,
  ``{prefix}_trained.pth`` at the end, and ``loss_log.csv`` (step, epoch, loss, lr). With
  ``bn_batches`` > 0 a snapshot's BatchNorm statistics are measured again for the EMA weights
  (``measure_batchnorm``) instead of being the raw model's; the checkpoint keeps the EMA as it is.
- Ctrl-C or SIGTERM (``kill PID`` of a background run) stops the run after the current step
  and saves it; a second one stops at once without saving.
- A folder that holds another run is refused unless the run resumes it or ``overwrite`` is set.

On the CPU and CUDA the model trains in the channels_last memory layout (the same weights,
faster convolutions); ``compile=True`` also compiles it in place with ``torch.compile``.

Under torchrun (``processes``, see scripts/distributed.py) the model trains data-parallel: every
process takes its share of each global batch of the same permutation (``TrainState.shard``; the order
from a generator all processes share, ``TrainState.order``), draws its own dropout, t and noise, and
DistributedDataParallel averages the gradients; the logged loss is the mean over the processes. Rank 0
alone writes files; the checkpoint holds every process's generator state, so a resume with the same
number of processes continues exactly, and one with another number re-seeds them and says so.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import re
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from distributed import Processes, stream_seed

import diffusion_utilities as du

CHECKPOINT = "checkpoint.pt"
LOSS_LOG = "loss_log.csv"
RUN_JSON = "run.json"


@dataclasses.dataclass
class TrainConfig:
    """The training recipe. Defaults are the course's: Adam, lr 1e-3 decayed linearly to 0,
    batch 100, T = 500; ``context`` trains with the labels and ``context_drop`` of them zeroed."""

    epochs: int = 32
    batch_size: int = 100
    lr: float = 1e-3
    context: bool = False
    context_drop: float = 0.1
    ema_decay: float = 0.999
    seed: int = 0
    save_every: int = 4
    timesteps: int = 500
    beta1: float = 1e-4
    beta2: float = 0.02
    n_feat: int = 64
    bn_batches: int = 0

    def validate(self):
        for name in ("epochs", "batch_size", "save_every", "timesteps", "n_feat"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}.")
        if int(self.bn_batches) < 0:
            raise ValueError(f"TrainConfig.bn_batches must be >= 0 (0: keep the raw model's), got {self.bn_batches}.")
        if not self.lr > 0:
            raise ValueError(f"TrainConfig.lr must be > 0, got {self.lr}.")
        if not 0 <= self.context_drop <= 1:
            raise ValueError(f"TrainConfig.context_drop must be in [0, 1], got {self.context_drop}.")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"TrainConfig.ema_decay must be in [0, 1), got {self.ema_decay}.")


#: Recipe fields a resumed run may change: the length (the learning rate then decays to 0 over
#: the new total from where it is), how often snapshots are written and how their BatchNorm
#: statistics are measured (neither touches the training itself).
CHANGEABLE_ON_RESUME = ("epochs", "save_every", "bn_batches")


@dataclasses.dataclass
class TrainResult:
    """What ``run`` returns: the raw and EMA models, the loss of every step so far, the files written."""

    model: torch.nn.Module
    ema_model: torch.nn.Module
    losses: list
    step: int
    total_steps: int
    epoch: int
    wall_time: float
    files: list
    stopped_by: str | None = None  # None (finished), "max_steps", "callback", "SIGINT" or "SIGTERM"

    @property
    def finished(self) -> bool:
        return self.step == self.total_steps

    @property
    def interrupted(self) -> bool:
        return self.stopped_by in ("SIGINT", "SIGTERM")


def measure_batchnorm(
    model: torch.nn.Module,
    schedule: du.DDPMSchedule,
    images: torch.Tensor,
    labels: torch.Tensor | None,
    context_drop: float,
    batches: int,
    batch_size: int = 100,
    seed: int = 0,
) -> torch.nn.Module:
    """A copy of ``model`` (in eval mode) whose BatchNorm running statistics are measured for its own weights.

    Why: ``du.EMA`` averages the weights but copies the BatchNorm statistics from the raw model, an
    average over its last few batches (momentum 0.1) of *other* weights. Here they are reset and
    re-estimated as a plain average (momentum None) over ``batches`` batches of ``batch_size`` images
    noised as in training (x_t for t ~ U{1..T}, contexts dropped at ``context_drop``; labels None:
    no context), drawn from a generator seeded with ``seed``. ``model`` itself is left as it is.
    images: (N, 3, H, W) in [-1, 1]; labels: (N, n_cfeat) or None.
    """
    model = plain_batchnorm(copy.deepcopy(model))
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if batches < 1 or not norms:
        return model.eval()
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative (plain) average over all batches
    generator = torch.Generator(images.device).manual_seed(seed)
    model.train()
    with torch.no_grad():
        for _ in range(batches):
            idx = torch.randint(0, len(images), (batch_size,), generator=generator, device=images.device)
            c = du.drop_context(labels[idx], context_drop, generator) if labels is not None else None
            du.diffusion_loss(model, schedule, images[idx], c, generator)
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    return model.eval()


def plain_batchnorm(module: torch.nn.Module) -> torch.nn.Module:
    """``module`` with every SyncBatchNorm (NCCL runs) replaced, in place, by a BatchNorm2d of the same state.

    A SyncBatchNorm in training mode averages over all processes; rank 0 measuring statistics alone
    would wait for the others forever.
    """
    for name, child in module.named_children():
        if isinstance(child, torch.nn.SyncBatchNorm):
            plain = torch.nn.BatchNorm2d(child.num_features, child.eps, child.momentum, child.affine)
            plain.load_state_dict(child.state_dict())
            setattr(module, name, plain.to(child.running_mean.device))
        else:
            plain_batchnorm(child)
    return module


def data_sha256(images: torch.Tensor, labels: torch.Tensor | None = None) -> str:
    """The sha256 of the tensors a run trains on (images, then labels when given): the data's identity."""
    digest = hashlib.sha256()
    for x in (images, labels):
        if x is not None:
            digest.update(np.ascontiguousarray(x.detach().cpu().numpy()).data)
    return digest.hexdigest()


def load_checkpoint(path) -> dict:
    """Load a ``checkpoint.pt`` written by ``run`` (safely: ``weights_only``, no code can run)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No training checkpoint at {path} (a run writes one into its --out folder).")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # not a zip, truncated, or holding objects other than tensors
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ValueError(
            f"{path} is not a training checkpoint of this course (it could not be read: {first})."
        ) from None
    if not isinstance(state, dict) or state.get("format") != du.CHECKPOINT_FORMAT:
        raise ValueError(
            f"{path} is not a training checkpoint of this course (expected one written by "
            f"scripts/train.py, named {CHECKPOINT}); a weights file (.pth) cannot be resumed."
        )
    return state


def previous_run_files(out_dir) -> list[Path]:
    """The files by which a folder holds a run: its checkpoint, loss log and final weights."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return []
    names = (CHECKPOINT, LOSS_LOG)
    return sorted(p for p in out_dir.iterdir() if p.name in names or p.name.endswith("_trained.pth"))


def claim_out_dir(out_dir, resume=None, overwrite: bool = False) -> list[Path]:
    """Check that a run may write to ``out_dir``; with ``overwrite``, delete the previous run there.

    A resumed run writes into its checkpoint's own folder; a new run refuses a folder that holds
    another run (see ``previous_run_files``) unless ``overwrite``, which deletes that run's
    checkpoint, loss log, run.json and weights snapshots. Returns the files deleted.
    """
    out_dir = Path(out_dir)
    if resume is not None:
        home = Path(resume).parent
        if out_dir.resolve() != home.resolve():
            raise ValueError(
                f"a resumed run continues in its own folder ({home}), not in {out_dir}. To branch a run, copy "
                f"its folder (cp -r {home} {out_dir}) and resume the copy's {CHECKPOINT}."
            )
        return []
    found = previous_run_files(out_dir)
    if found and not overwrite:
        listed = ", ".join(p.name for p in found)
        hint = f"continue it with --resume {out_dir / CHECKPOINT}, " if (out_dir / CHECKPOINT).exists() else ""
        raise ValueError(
            f"{out_dir} holds another run ({listed}); {hint}choose another --out, or pass --overwrite to "
            "delete that run and start again."
        )
    if not overwrite or not out_dir.is_dir():
        return []
    snapshot = re.compile(r"[A-Za-z_]+_(\d+|trained)\.pth")
    doomed = [p for p in out_dir.iterdir() if p.name in (CHECKPOINT, LOSS_LOG, RUN_JSON) or snapshot.fullmatch(p.name)]
    for p in doomed:
        p.unlink()
    return sorted(doomed)


class LossLog:
    """Per-step losses: kept on the device between flushes (no host sync every step), then
    appended to a list and, when a path is given, to a CSV (rows from ``keep_until`` on, left
    by a run that stopped between checkpoints, are dropped when it resumes)."""

    def __init__(self, path: Path | None, keep_until: int = 0):
        self.path, self.pending, self.losses = path, [], []
        if path is None:
            return
        rows = []
        if path.exists() and keep_until > 0:
            lines = path.read_text().splitlines()[1:]
            rows = [line for line in lines if line and int(line.split(",")[0]) < keep_until]
        path.write_text("\n".join(["step,epoch,loss,lr", *rows]) + "\n")
        self.losses = [float(line.split(",")[2]) for line in rows]

    def add(self, step: int, epoch: int, loss: torch.Tensor, lr: float):
        self.pending.append((step, epoch, loss, lr))

    def flush(self) -> float:
        """Write the pending rows; returns their mean loss (the last logged loss when none are pending)."""
        if not self.pending:
            return self.losses[-1] if self.losses else float("nan")
        values = torch.stack([p[2] for p in self.pending]).float().cpu().tolist()
        rows = [f"{s},{e},{v:.6f},{lr:.6g}\n" for (s, e, _, lr), v in zip(self.pending, values, strict=True)]
        self.losses.extend(values)
        self.pending = []
        if self.path is not None:
            with open(self.path, "a") as f:
                f.writelines(rows)
        return float(np.mean(values))


class StopSignals:
    """While active, Ctrl-C (SIGINT) and SIGTERM ask the run to stop after the step in progress
    (``requested`` holds the signal's name), so that it saves a consistent checkpoint; a second
    one stops at once, unsaved. The same signal again within a second counts once: under torchrun a
    Ctrl-C reaches each process twice (from the terminal, and forwarded by torchrun a moment later). Does nothing
    outside the main thread (signals cannot be caught there). ``announce``: print what happens."""

    def __init__(self, announce: bool = True):
        self.requested: str | None = None
        self.previous: dict = {}
        self.announce, self.at = announce, 0.0

    def _handler(self, signum, frame):
        name = signal.Signals(signum).name
        if self.requested == name and time.monotonic() - self.at < 1.0:
            return
        if self.requested is not None:
            raise KeyboardInterrupt
        self.requested, self.at = name, time.monotonic()
        if self.announce:
            print(f"\n{name}: the run stops after this step and saves (again: stop at once, unsaved).")

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            self.previous = {s: signal.signal(s, self._handler) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc):
        for s, handler in self.previous.items():
            signal.signal(s, handler)


def _check_resume(ckpt: dict, config: TrainConfig, data: dict, resume) -> None:
    """Refuse a resume whose recipe (other than ``CHANGEABLE_ON_RESUME``) or data differ from the checkpoint's."""
    diff = {
        k: (ckpt["config"].get(k), v)
        for k, v in dataclasses.asdict(config).items()
        if ckpt["config"].get(k) != v and k not in CHANGEABLE_ON_RESUME
    }
    if diff:
        raise ValueError(f"{resume} was trained with a different recipe (checkpoint, now): {diff}.")
    before = ckpt.get("data")
    if before is None:
        print(f"Warning: {resume} does not record its data (an older checkpoint); it cannot be checked.")
    elif before["sha256"] != data["sha256"]:
        was = f"{before['n_images']} images from {before.get('dir') or 'the caller'}, limit {before.get('limit')}"
        now = f"{data['n_images']} images from {data.get('dir') or 'the caller'}, limit {data.get('limit')}"
        raise ValueError(
            f"{resume} was trained on other data ({was}, sha256 {before['sha256'][:12]}); these are {now}, "
            f"sha256 {data['sha256'][:12]}. Resume on the run's own data (the same files and --limit)."
        )


def per_process_batch(batch_size: int, n_images: int, processes: Processes) -> int:
    """The images each process trains on per step: the global batch (at most the data set) over the processes."""
    batch = min(int(batch_size), n_images)
    if batch % processes.world_size:
        raise ValueError(
            f"the batch of {batch} images does not split over {processes.world_size} processes: give a --batch-size "
            f"divisible by {processes.world_size} (it is the global batch; each process trains on a share)."
        )
    return batch // processes.world_size


#: Why a run stops, in the order in which ranks that disagree settle it (a signal anywhere stops all).
STOP_REASONS = (None, "max_steps", "callback", "SIGINT", "SIGTERM")


def _set_generators(state: du.TrainState, ckpt: dict | None, seed: int, processes: Processes) -> str | None:
    """Seed the run's random streams, or set them from ``ckpt``; returns a note when a resume re-seeds them.

    One process: its one generator draws everything, as in du.train. Several: the order from a generator
    they share, dropout/t/noise from one per rank (see ``stream_seed``). A resume with the checkpoint's
    number of processes takes each rank's generator back; with another number it re-seeds them at its step.
    """
    device = state.generator.device
    if processes.distributed:
        state.order = torch.Generator(device).manual_seed(stream_seed(seed, 0, 0))
        state.generator.manual_seed(stream_seed(seed, 0, 1 + processes.rank))
        state.shard = (processes.rank, processes.world_size)
    if ckpt is None:
        return None
    note, was = None, ckpt.get("world_size", 1)
    if was == processes.world_size:
        state.generator.set_state(ckpt.get("generators", [ckpt["generator"]])[processes.rank])
    else:
        state.generator.manual_seed(stream_seed(seed, ckpt["step"], 1 + processes.rank))
        note = (
            f"the checkpoint was written by {was} process(es), this run has {processes.world_size}: it goes on "
            f"from step {ckpt['step']} in the same order of the images, with the dropout, t and noise generators "
            f"re-seeded from (seed, step {ckpt['step']}, rank)"
        )
    if ckpt.get("order") is not None:
        state.order = state.order or torch.Generator(device)
        state.order.set_state(ckpt["order"])
    elif state.order is not None:  # a one-process run drew its order with its one generator
        state.order.manual_seed(stream_seed(seed, ckpt["step"], 0))
        note += "; the next epochs' orders come from a generator seeded the same way"
    return note


def run(
    config: TrainConfig,
    images: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    out_dir=None,
    device=None,
    resume=None,
    overwrite: bool = False,
    max_steps: int | None = None,
    prefix: str | None = None,
    progress: bool = True,
    callback: Callable[[du.TrainState], bool | None] | None = None,
    log_every: int = 50,
    compile: bool = False,
    data: dict | None = None,
    processes: Processes | None = None,
    init=None,
) -> TrainResult:
    """Train a ContextUnet with ``config`` through ``du.train``, saving and resuming exactly.

    images: (N, 3, H, H) in [-1, 1]; labels: (N, n_cfeat) one-hot (used when
    ``config.context``; their width sets n_cfeat). The model is built after
    ``torch.manual_seed(config.seed)`` and ``du.train``'s generator is seeded with it too, so a
    run is reproducible. ``resume``: a ``checkpoint.pt`` (path) to continue; its recipe must
    equal ``config`` except ``epochs`` and ``save_every``, and its data must have the same hash.
    ``max_steps`` stops after that many steps in all (saving the checkpoint); ``callback(state)``
    runs after every step, and returning True stops the run the same way. ``data``: what to
    record about the data's source (e.g. dir and limit) beside its hash. ``processes``: this
    process's place in a torchrun launch (default: one process); every process calls ``run``
    with the same arguments and ``device`` its own (``Processes.device``). ``init``: a weights
    file (``du.load_model``) a new run starts from instead of random weights; the optimiser and
    the learning-rate schedule start afresh (a resume ignores it: its checkpoint has the weights).
    """
    processes = processes or Processes()
    ckpt = processes.from_main(load_checkpoint, resume) if resume is not None else None  # rank 0 reads it
    with processes.agree():
        config.validate()
        device = du.get_device(device)
        if images.dim() != 4 or images.shape[1] != 3 or images.shape[2] != images.shape[3]:
            raise ValueError(f"run: images must have shape (N, 3, H, H), got {tuple(images.shape)}.")
        if config.context and labels is None:
            raise ValueError("run: config.context is set but no labels were given.")
        if labels is not None and labels.shape[0] != images.shape[0]:
            raise ValueError(f"run: {images.shape[0]} images but {labels.shape[0]} labels.")
        if max_steps is not None and max_steps < 1:
            raise ValueError(f"run: max_steps must be >= 1, got {max_steps}.")
        per_process_batch(config.batch_size, len(images), processes)
        n_cfeat = labels.shape[1] if labels is not None else 5
        labels = labels if config.context else None
        data = {**(data or {}), "n_images": len(images), "sha256": data_sha256(images, labels)}
        steps_per_epoch = len(images) // min(config.batch_size, len(images))
        total_steps = steps_per_epoch * config.epochs
        prefix = prefix or ("context_model" if config.context else "model")
        if ckpt is not None:
            _check_resume(ckpt, config, data, resume)
            if ckpt["step"] > total_steps:
                raise ValueError(f"{resume} is already past epoch {config.epochs} (step {ckpt['step']}); ask for more.")
    processes.same(data["sha256"], "data (sha256 of the images and labels)")
    out_dir = Path(out_dir) if out_dir is not None and processes.is_main else None  # rank 0 alone writes
    with processes.agree():
        if out_dir is not None:
            claim_out_dir(out_dir, resume, overwrite)
            out_dir.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(config.seed)
    model = du.ContextUnet(3, config.n_feat, n_cfeat, images.shape[2]).to(device)
    if device.type in ("cpu", "cuda"):
        model = model.to(memory_format=torch.channels_last)  # in place: the same parameters
    model = processes.sync_batchnorm(model)
    if init is not None and ckpt is None:
        with processes.agree():
            du.load_model(init, model).train()  # before the EMA copies the model
    state = du.TrainState.start(model, config.lr, config.ema_decay, config.seed)
    wall_before = 0.0
    note = _set_generators(state, ckpt, config.seed, processes)
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        state.ema.load_state_dict(ckpt["ema"])
        state.optimizer.load_state_dict(ckpt["optimizer"])
        state.step, wall_before = ckpt["step"], ckpt["wall_time"]
        state.perm = ckpt["perm"].to(state.generator.device) if ckpt["perm"] is not None else None
    if note and processes.is_main:
        print(f"Resume: {note}.")
    if compile:
        model.compile()  # in place: the state dict keeps its names
    state.model = processes.wrap(model)  # du.train trains the wrapper; the EMA follows the model inside
    schedule = du.DDPMSchedule(config.timesteps, config.beta1, config.beta2, device=device)
    images, labels = images.to(device), labels.to(device) if labels is not None else None

    log = LossLog(out_dir / LOSS_LOG if out_dir else None, keep_until=state.step)
    files: list = []
    saved_at = [state.step]  # the step of the last checkpoint
    t0 = time.perf_counter()

    def save_checkpoint():
        saved_at[0] = state.step
        generators = processes.gather(state.generator.get_state())  # every rank's, for an exact resume
        if out_dir is None:
            return
        checkpoint = {
            "format": du.CHECKPOINT_FORMAT,
            "config": dataclasses.asdict(config),
            "data": data,
            "compile": compile,
            "model_config": model.config(),
            "model": model.state_dict(),
            "ema": state.ema.state_dict(),
            "optimizer": state.optimizer.state_dict(),
            "step": state.step,
            "epoch": state.step // steps_per_epoch,
            "batch": state.step % steps_per_epoch,
            "perm": state.perm.cpu() if state.perm is not None else None,
            "generator": generators[0],
            "generators": generators,
            "order": state.order.get_state() if state.order is not None else None,
            "world_size": processes.world_size,
            "wall_time": wall_before + time.perf_counter() - t0,
        }
        files.append(du.atomic_torch_save(checkpoint, out_dir / CHECKPOINT))

    snapshots = {}  # step -> the EMA model as saved (its BatchNorm statistics measured once per step)

    def snapshot() -> torch.nn.Module:
        if config.bn_batches == 0:
            return state.ema.model
        if state.step not in snapshots:
            snapshots.clear()
            snapshots[state.step] = measure_batchnorm(
                state.ema.model,
                schedule,
                images,
                labels,
                config.context_drop,
                config.bn_batches,
                seed=config.seed,
            )
        return snapshots[state.step]

    stop = {"by": None}

    def on_step(state: du.TrainState) -> bool:
        epoch = (state.step - 1) // steps_per_epoch
        log.add(state.step - 1, epoch, processes.mean(state.loss), state.optimizer.param_groups[0]["lr"])
        if state.step % log_every == 0:
            log.flush()
        if state.step % steps_per_epoch == 0:  # the end of an epoch: snapshot and checkpoint
            log.flush()
            if out_dir is not None and (epoch % config.save_every == 0 or epoch == config.epochs - 1):
                files.append(du.save_model(snapshot(), out_dir / f"{prefix}_{epoch}.pth"))
            save_checkpoint()  # every epoch: a crash loses at most one epoch
        if callback is not None and callback(state):
            stop["by"] = "callback"
        elif signals.requested is not None:
            stop["by"] = signals.requested
        elif max_steps is not None and state.step >= max_steps:
            stop["by"] = "max_steps"
        stop["by"] = processes.furthest(stop["by"], STOP_REASONS)  # the processes stop at the same step
        return stop["by"] is not None

    try:
        with StopSignals(announce=processes.is_main) as signals:
            if state.step < total_steps and (max_steps is None or state.step < max_steps):
                du.train(
                    state.model,
                    schedule,
                    images,
                    labels,
                    epochs=config.epochs,
                    batch_size=config.batch_size,
                    lr=config.lr,
                    context_drop=config.context_drop,
                    state=state,
                    callback=on_step,
                    progress=progress and processes.is_main,
                )
    finally:
        log.flush()
    if saved_at[0] != state.step:
        save_checkpoint()  # stopped inside an epoch: keep the exact position
    if out_dir is not None and state.step == total_steps:
        files.append(du.save_model(snapshot(), out_dir / f"{prefix}_trained.pth"))
    state.ema.model.eval()
    wall = wall_before + time.perf_counter() - t0
    epoch = state.step // steps_per_epoch
    return TrainResult(model, state.ema.model, log.losses, state.step, total_steps, epoch, wall, files, stop["by"])
