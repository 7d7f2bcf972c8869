#!/usr/bin/env python
"""Train the course's ContextUnet on the sprite set (the course's recipe by default).

Examples:
    python scripts/train.py --epochs 32 --out runs/model            # unconditional
    python scripts/train.py --context --epochs 32 --out runs/ctx    # with context (10% dropped)
    python scripts/train.py --resume runs/ctx/checkpoint.pt         # continue exactly (same data, folder, recipe)
    python scripts/train.py --resume runs/ctx/checkpoint.pt --epochs 40   # ... for another length
    python scripts/train.py --context --init weights/context_model_trained.pth --lr 4e-4 --epochs 8 --out runs/more
                                          # a new run that starts from trained weights (new optimiser and schedule)

Writes to --out: checkpoint.pt after every epoch (everything needed to resume),
<prefix>_<epoch>.pth EMA snapshots every --save-every epochs, <prefix>_trained.pth at the end, loss_log.csv, and
run.json (the command, data set hash, steps, wall time). With --bn-batches N (e.g. 200) each snapshot's BatchNorm
statistics are measured for the EMA weights over N noised batches (the EMA otherwise carries the raw model's).
Ctrl-C (or SIGTERM) stops after the current step, saves, and prints the command that resumes the run. A folder
that holds another run is refused unless --resume or --overwrite. On --resume the checkpoint gives the recipe,
the data (folder, --limit; checked by hash) and the folder; --epochs, --save-every and --bn-batches may change,
other recipe options must match or are refused.

Under torchrun (e.g. torchrun --standalone --nproc_per_node=4 scripts/train.py --context --out runs/ctx4) the
processes train one model data-parallel: --batch-size is the global batch, split over them (NCCL on CUDA, one
GPU per process; gloo on the CPU). Rank 0 alone writes and prints; any number of processes can resume a run.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cli
import torch
from distributed import Processes
from provenance import file_sha256
from training_run import (
    CHANGEABLE_ON_RESUME,
    CHECKPOINT,
    RUN_JSON,
    TrainConfig,
    claim_out_dir,
    load_checkpoint,
    per_process_batch,
    run,
)

import diffusion_utilities as du

#: The options that set the recipe: (option, TrainConfig field).
RECIPE_OPTIONS = (
    ("--context", "context"),
    ("--context-drop", "context_drop"),
    ("--epochs", "epochs"),
    ("--batch-size", "batch_size"),
    ("--lr", "lr"),
    ("--ema-decay", "ema_decay"),
    ("--seed", "seed"),
    ("--save-every", "save_every"),
    ("--n-feat", "n_feat"),
    ("--bn-batches", "bn_batches"),
)


def parse_args(argv=None):
    d = TrainConfig()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # every recipe option defaults to None ("not given"), so that a resume can tell what was asked
    p.add_argument("--context", action="store_true", default=None, help="train with the class labels as context")
    p.add_argument(
        "--context-drop",
        type=float,
        help=f"share of contexts zeroed, for guidance and unconditional sampling (default {d.context_drop})",
    )
    p.add_argument("--epochs", type=int, help=f"passes over the data (default {d.epochs})")
    p.add_argument("--batch-size", type=int, help=f"default {d.batch_size}")
    p.add_argument("--lr", type=float, help=f"initial learning rate, decayed linearly to 0 (default {d.lr})")
    p.add_argument("--ema-decay", type=float, help=f"EMA decay of the weights (default {d.ema_decay})")
    p.add_argument("--seed", type=int, help=f"random seed (default {d.seed})")
    p.add_argument("--save-every", type=int, help=f"snapshot the EMA weights every N epochs (default {d.save_every})")
    p.add_argument("--n-feat", type=int, help=f"width of the network (default {d.n_feat}, the course's)")
    p.add_argument(
        "--bn-batches",
        type=int,
        help="measure each snapshot's BatchNorm statistics for the EMA weights over N noised batches of 100 "
        f"(0: keep the raw model's, as the EMA copies them; default {d.bn_batches})",
    )
    p.add_argument("--device", type=cli.device, default="auto", help=cli.DEVICE_HELP)
    p.add_argument("--data", default=None, help="folder with the sprite .npy files (default: data/)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N sprites (quick trials)")
    p.add_argument("--out", default=None, help="output folder (default runs/train; on --resume: the run's own)")
    p.add_argument("--resume", default=None, help="a checkpoint.pt to continue from (see above)")
    p.add_argument(
        "--init",
        default=None,
        help="a new run starts from these weights (.pth, or a checkpoint.pt's EMA weights) instead of random ones; "
        "the optimiser and the learning-rate schedule start afresh",
    )
    p.add_argument("--overwrite", action="store_true", help="delete the run already in --out and start again")
    p.add_argument("--max-steps", type=int, default=None, help="stop (and save) after this many steps in all")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument(
        "--compile", action="store_true", help="torch.compile the training step (long runs; the first steps compile)"
    )
    return p.parse_args(argv)


def resume_command(checkpoint: Path, processes: Processes | None = None) -> str:
    """The exact command that continues the run of ``checkpoint``, to run from the current folder
    (under torchrun: with this launch's processes; any other number can resume it too)."""
    script = os.path.relpath(Path(__file__).resolve())
    if script.startswith(".."):
        script = str(Path(__file__).resolve())
    return f"{launcher(processes)} {shlex.quote(script)} --resume {shlex.quote(str(checkpoint))}"


def launcher(processes: Processes | None) -> str:
    """How this run was started: python, or torchrun with this launch's processes (for run.json, resume hints)."""
    if processes is None or not processes.distributed:
        return "python"
    nodes = processes.world_size // processes.local_world_size
    if nodes == 1:
        return f"torchrun --standalone --nproc_per_node={processes.world_size}"
    return (
        f"torchrun --nnodes={nodes} --node_rank=N --nproc_per_node={processes.local_world_size} "
        "--rdzv_backend=c10d --rdzv_endpoint=HOST:PORT"
    )


def recipe_for_resume(args, ckpt: dict) -> tuple[TrainConfig, list[str]]:
    """The checkpoint's recipe with what this resume may change; refuses what it may not."""
    config = TrainConfig(**ckpt["config"])
    notes, refused = [], []
    for option, field in RECIPE_OPTIONS:
        given, was = getattr(args, field), getattr(config, field)
        if given is None or given == was:
            continue
        if field in CHANGEABLE_ON_RESUME:
            setattr(config, field, given)
            notes.append(f"{option} changes from {was} to {given}")
        else:
            refused.append(f"{option} {given} (the run's is {was})")
    if refused:
        raise ValueError(
            f"a resumed run keeps its recipe: {', '.join(refused)} cannot change; only --epochs, --save-every and "
            "--bn-batches can. Start a new run (another --out) to train with other options."
        )
    data = ckpt.get("data") or {}
    if args.limit is not None and args.limit != data.get("limit"):
        raise ValueError(
            f"a resumed run keeps its data: --limit {args.limit} differs from the run's {data.get('limit')}."
        )
    return config, notes


def main(argv=None) -> int:
    args = parse_args(argv)
    argv = sys.argv[1:] if argv is None else list(argv)
    processes = Processes.from_env()  # one process, unless torchrun started this one
    try:
        device = processes.device(du.get_device(args.device))
    except ValueError as err:
        print(f"train.py: error: {err}", file=sys.stderr)
        return 2
    processes.start(device)
    try:  # rank 0 alone prints: the others' stdout goes nowhere (their errors reach rank 0 through agree)
        with contextlib.redirect_stdout(sys.stdout if processes.is_main else io.StringIO()):
            code = train_in_process(args, argv, processes, device)
        processes.barrier()  # none leaves (torchrun would stop the rest) before rank 0 has written and printed
        return code
    finally:
        processes.stop()


def train_in_process(args, argv: list[str], processes: Processes, device) -> int:
    """main's work, in every process of a launch (``processes``) on its own ``device``."""
    try:
        if args.limit is not None and args.limit < 1:
            raise ValueError(f"--limit must be >= 1 (the number of sprites to train on), got {args.limit}.")
        if args.max_steps is not None and args.max_steps < 1:
            raise ValueError(f"--max-steps must be >= 1, got {args.max_steps}.")
        resume = Path(args.resume) if args.resume is not None else None
        ckpt = processes.from_main(load_checkpoint, resume) if resume else None  # rank 0 reads it, all get it
        with processes.agree():  # a check that fails in one process fails in all, before anything is written
            notes: list[str] = []
            if resume is not None:
                if args.overwrite:
                    raise ValueError("--overwrite and --resume contradict each other: a resume continues the run.")
                if args.init is not None:
                    raise ValueError(
                        "--init starts a new run from weights; a resume continues from its checkpoint. Give one."
                    )
                config, notes = recipe_for_resume(args, ckpt)
                data = ckpt.get("data") or {}
                data_dir = args.data if args.data is not None else data.get("dir")
                limit = data.get("limit") if "limit" in data else args.limit
                if args.data is not None and data.get("dir") and Path(args.data).resolve() != Path(data["dir"]):
                    notes.append(f"reading the data from {args.data} (the run read {data['dir']}; the hash must match)")
                out = Path(args.out) if args.out is not None else resume.parent
                compile = args.compile or bool(ckpt.get("compile", False))
                if args.compile and not ckpt.get("compile", False):
                    notes.append("--compile: the run goes on compiled")
            else:
                if args.init is not None and not Path(args.init).is_file():
                    raise FileNotFoundError(
                        f"--init: no weights file at {args.init} (a .pth written by this script, e.g. "
                        "weights/context_model_trained.pth, or a run's checkpoint.pt)."
                    )
                given = {field: getattr(args, field) for _, field in RECIPE_OPTIONS if getattr(args, field) is not None}
                config = TrainConfig(**given)
                config.validate()
                data_dir, limit = args.data, args.limit
                out = Path(args.out if args.out is not None else "runs/train")
                compile = args.compile
            sfile, lfile = du.sprite_files(data_dir)
            dataset = du.CustomDataset(sfile, lfile, null_context=not config.context)
            images, labels = dataset.tensors()
            if limit is not None:
                if limit > len(images):
                    raise ValueError(f"--limit {limit} asks for more sprites than {sfile} holds ({len(images)}).")
                images, labels = images[:limit], labels[:limit]
            batch = per_process_batch(config.batch_size, len(images), processes)
            hashes = file_sha256(sfile), file_sha256(lfile)
        processes.same(hashes, f"sprite files (sha256 of {sfile.name} and {lfile.name})")
        with processes.agree():
            removed = claim_out_dir(out, resume, args.overwrite) if processes.is_main else []
    except (FileNotFoundError, ValueError) as err:
        if processes.is_main:
            print(f"train.py: error: {err}", file=sys.stderr)
        return 2
    how = processes.describe(batch * processes.world_size)  # processes, backend, batch per process
    where = device.type if processes.distributed else device
    print(f"Training on {len(images)} sprites from {sfile} on {where} {how}; recipe: {config}")
    for note in notes:
        print(f"Resume: {note}.")
    if removed:
        print(f"--overwrite: deleted the previous run's {', '.join(p.name for p in removed)} in {out}.")
    run_info = {
        "command": f"{launcher(processes)} scripts/train.py " + " ".join(shlex.quote(a) for a in argv),
        "config": dataclasses.asdict(config),
        "dataset": sfile.name,
        "dataset_sha256": hashes[0],
        "labels_sha256": hashes[1],
        "n_images": len(images),
        "device": str(device),
        "world_size": processes.world_size,
        "backend": processes.backend,
        "per_process_batch": batch,
        "machine": " ".join(f"{platform.machine()} {platform.processor()} {torch.get_num_threads()} threads".split()),
        "torch": torch.__version__,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    if args.init is not None:
        run_info["init"] = {"path": args.init, "sha256": file_sha256(args.init)}
    run_json = out / RUN_JSON
    if resume is None and processes.is_main:  # written now, so a resumed run still knows the command that started it
        out.mkdir(parents=True, exist_ok=True)
        run_json.write_text(json.dumps(run_info, indent=2) + "\n")
    checkpoint = out / CHECKPOINT
    data = {"dir": str(sfile.parent.resolve()), "limit": limit}
    data.update(sprites_sha256=run_info["dataset_sha256"], labels_sha256=run_info["labels_sha256"])
    try:
        result = run(
            config,
            images,
            labels,
            out_dir=out,
            device=device,
            resume=resume,
            max_steps=args.max_steps,
            progress=not args.no_progress,
            compile=compile,
            data=data,
            processes=processes,
            init=args.init,
        )
    except (FileNotFoundError, ValueError) as err:
        if processes.is_main:
            print(f"train.py: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        last = checkpoint.exists() and f"Resume from the last checkpoint with: {resume_command(checkpoint, processes)}"
        print(f"\nStopped at once, unsaved. {last or ''}".rstrip())
        return 130
    losses = result.losses[-100:]
    run_info.update(
        steps=result.step,
        epochs_done=result.epoch,
        images_seen=result.step * min(config.batch_size, len(images)),
        final_loss=sum(losses) / max(1, len(losses)),
        wall_time_s=round(result.wall_time, 1),
        finished=time.strftime("%Y-%m-%d %H:%M:%S"),
        interrupted=result.interrupted,
    )
    if not processes.is_main:
        return 130 if result.interrupted else 0
    if resume is not None and run_json.exists():
        first = json.loads(run_json.read_text())
        run_info["resumed_with"] = [*first.get("resumed_with", []), run_info["command"]]
        run_info["command"], run_info["started"] = first["command"], first["started"]
        if "init" in first:
            run_info["init"] = first["init"]
    run_json.write_text(json.dumps(run_info, indent=2) + "\n")
    if not result.finished:
        why = {"max_steps": "--max-steps reached"}.get(result.stopped_by, result.stopped_by)
        again = resume_command(checkpoint, processes)
        print(f"Stopped at step {result.step} of {result.total_steps} ({why}). Resume with: {again}")
        return 130 if result.interrupted else 0
    print(
        f"Done: {result.step} steps in {result.wall_time:.0f} s, final loss {run_info['final_loss']:.4f}; wrote {out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
