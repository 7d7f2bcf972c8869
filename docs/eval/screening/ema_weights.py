#!/usr/bin/env python
"""Screening helper (docs/eval/screening/README.md, "The EMA and BatchNorm"): two variants of a run's final weights.

    python docs/eval/screening/ema_weights.py runs/uncond_b50/checkpoint.pt
    python docs/eval/screening/ema_weights.py weights/context_model_trained.pth --context 0.2 --out runs/bn_shipped

From a checkpoint it writes beside it
  raw_model_final.pth     the raw weights (what the optimiser ended with, no average), and
  ema_bn_model_final.pth  the EMA weights with BatchNorm statistics measured again *for them*;
from a .pth of EMA weights (a snapshot or a shipped file; give --context P, its context dropout, if the model
was trained with context) only the second, as <out>/<its name>.

Why the second: the EMA (diffusion_utilities.EMA) averages the weights but copies the BatchNorm running
statistics from the raw model, so the averaged convolutions are normalised with statistics of other
weights. Here the statistics are re-estimated with scripts/training_run.measure_batchnorm (what
train.py --bn-batches now does for every snapshot): a plain average over --batches training batches of
100 sprites noised as in training, seed 0. Both files are ordinary state dicts for evaluate.py --weights.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "scripts"))

import training_run

import diffusion_utilities as du


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("weights", type=Path, help="a train.py checkpoint.pt, or a .pth of EMA weights")
    p.add_argument("--context", type=float, metavar="P", help="(.pth only) trained with context, dropped at rate P")
    p.add_argument("--out", type=Path, help="(.pth only) the folder for the new file")
    p.add_argument("--batches", type=int, default=200, help="batches of 100 for the BatchNorm statistics")
    args = p.parse_args()
    if args.weights.name == "checkpoint.pt":
        ck = torch.load(args.weights, map_location="cpu", weights_only=False)
        cfg, ema = ck["config"], ck["ema"]["model"]
        folder = args.weights.parent
        paths = {"raw": folder / "raw_model_final.pth", "bn": folder / "ema_bn_model_final.pth"}
    else:
        if args.out is None:
            sys.exit("ema_weights.py: give --out (a folder) for a .pth")
        context = args.context is not None  # the course's schedule (TrainConfig's defaults)
        cfg = dataclasses.asdict(training_run.TrainConfig(context=context, context_drop=args.context or 0.0))
        ema, ck = torch.load(args.weights, map_location="cpu", weights_only=True), None
        paths = {"bn": args.out / args.weights.name}
    for path in paths.values():
        if path.exists():
            sys.exit(f"ema_weights.py: {path} exists; delete it first to write it again")
    if ck is not None:
        torch.save(ck["model"], paths["raw"])

    model = du.course_model()
    model.load_state_dict(ema)
    images, labels = du.load_sprites(*du.sprite_files())
    c_all = torch.as_tensor(labels, dtype=torch.float32) if cfg["context"] else None
    schedule = du.DDPMSchedule(cfg["timesteps"], cfg["beta1"], cfg["beta2"])
    x_all = du.images_to_tensor(images)
    model = training_run.measure_batchnorm(model, schedule, x_all, c_all, cfg["context_drop"], args.batches)
    paths["bn"].parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), paths["bn"])
    print("wrote " + " and ".join(str(v) for v in paths.values()))


if __name__ == "__main__":
    main()
