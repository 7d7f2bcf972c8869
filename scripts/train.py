#!/usr/bin/env python
"""Train the course's ContextUnet on the sprite set (the course's recipe by default).

Examples:
    python scripts/train.py --epochs 32 --out runs/model            # unconditional
    python scripts/train.py --context --epochs 32 --out runs/ctx    # with context (10% dropped)
    python scripts/train.py --resume runs/ctx/checkpoint.pt         # continue exactly
    python scripts/train.py --resume runs/ctx/checkpoint.pt --epochs 20   # ... with another length

Writes to --out: checkpoint.pt after every epoch (everything needed to resume),
<prefix>_<epoch>.pth EMA snapshots every --save-every epochs, <prefix>_trained.pth at the end, loss_log.csv, and
run.json (the command, data set hash, steps, wall time). Ctrl-C saves before it exits.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
from provenance import file_sha256

import diffusion_utilities as du


def parse_args(argv=None):
    d = du.TrainConfig()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--context", action="store_true", help="train with the class labels as context")
    p.add_argument(
        "--context-drop",
        type=float,
        default=d.context_drop,
        help=f"share of contexts zeroed, for guidance and unconditional sampling (default {d.context_drop})",
    )
    p.add_argument("--epochs", type=int, default=d.epochs, help=f"passes over the data (default {d.epochs})")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"default {d.batch_size}")
    p.add_argument(
        "--lr", type=float, default=d.lr, help=f"initial learning rate, decayed linearly to 0 (default {d.lr})"
    )
    p.add_argument(
        "--ema-decay", type=float, default=d.ema_decay, help=f"EMA decay of the weights (default {d.ema_decay})"
    )
    p.add_argument("--seed", type=int, default=d.seed, help=f"random seed (default {d.seed})")
    p.add_argument(
        "--save-every",
        type=int,
        default=d.save_every,
        help=f"checkpoint and snapshot every N epochs (default {d.save_every})",
    )
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda or mps")
    p.add_argument("--data", default=None, help="folder with the sprite .npy files (default: data/)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N sprites (quick trials)")
    p.add_argument("--out", default="runs/train", help="output folder (default runs/train)")
    p.add_argument(
        "--resume",
        default=None,
        help="a checkpoint.pt to continue from (its recipe is used; --epochs may change the length)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.add_argument(
        "--compile", action="store_true", help="torch.compile the training step (long runs; the first steps compile)"
    )
    args = p.parse_args(argv)
    args.epochs_given = any(a == "--epochs" or a.startswith("--epochs=") for a in (argv or sys.argv[1:]))
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        if args.resume is not None:
            resume = Path(args.resume)
            ckpt = du._load_checkpoint(resume)
            config = du.TrainConfig(**ckpt["config"])
            if args.epochs_given:
                print(f"Changing the run's length from {config.epochs} to {args.epochs} epochs.")
                config.epochs = args.epochs
        else:
            resume = None
            config = du.TrainConfig(
                epochs=args.epochs,
                batch_size=args.batch_size,
                lr=args.lr,
                context=args.context,
                context_drop=args.context_drop,
                ema_decay=args.ema_decay,
                seed=args.seed,
                save_every=args.save_every,
            )
            config.validate()
        sfile, lfile = du.sprite_files(args.data)
        dataset = du.CustomDataset(sfile, lfile, null_context=not config.context)
    except (FileNotFoundError, ValueError) as err:
        print(f"train.py: error: {err}", file=sys.stderr)
        return 2
    images, labels = dataset.tensors()
    if args.limit:
        images, labels = images[: args.limit], labels[: args.limit]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = du.get_device(args.device)
    print(f"Training on {len(images)} sprites from {sfile.name} on {device}; recipe: {config}")
    run = {
        "command": "python scripts/train.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "config": dataclasses.asdict(config),
        "dataset": sfile.name,
        "dataset_sha256": file_sha256(sfile),
        "labels_sha256": file_sha256(lfile),
        "n_images": len(images),
        "device": str(device),
        "machine": f"{platform.machine()} {platform.processor() or ''} {torch.get_num_threads()} threads".strip(),
        "torch": torch.__version__,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    previous = out / "run.json"
    if resume is None:  # written now, so a resumed run still knows the command that started it
        previous.write_text(json.dumps(run, indent=2) + "\n")
    result = du.train(
        config,
        images,
        labels,
        out_dir=out,
        device=device,
        resume=resume,
        progress=not args.no_progress,
        compile=args.compile,
    )
    run.update(
        steps=result.step,
        epochs_done=result.epoch,
        images_seen=result.step * min(config.batch_size, len(images)),
        final_loss=sum(result.losses[-100:]) / max(1, len(result.losses[-100:])),
        wall_time_s=round(result.wall_time, 1),
        finished=time.strftime("%Y-%m-%d %H:%M:%S"),
        interrupted=result.interrupted,
    )
    if resume is not None and previous.exists():
        first = json.loads(previous.read_text())
        run["resumed_with"] = [*first.get("resumed_with", []), run["command"]]
        run["command"], run["started"] = first["command"], first["started"]
    previous.write_text(json.dumps(run, indent=2) + "\n")
    if result.interrupted:
        print(f"Stopped at step {result.step}. Resume with: python scripts/train.py --resume {out / 'checkpoint.pt'}")
        return 130
    print(f"Done: {result.step} steps in {result.wall_time:.0f} s, final loss {run['final_loss']:.4f}; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
