#!/usr/bin/env python
"""Draw sprites from a trained model and save them as a grid, an animation or an array.

Examples:
    python scripts/sample.py --out grid.png                          # 32 sprites, DDIM-25
    python scripts/sample.py --sampler ddpm --gif denoise.gif         # the full 500 steps, animated
    python scripts/sample.py --context hero --guidance 2 --n 16       # guided towards one class
    python scripts/sample.py --context 1,0,1,0,0 --npy mix.npy        # a blend: hero + food
    python scripts/sample.py --per-class 8 --guidance 2 --out per_class.png

--context takes a class name (hero, non-hero, food, spell, side-facing), an index 0-4, or
five comma-separated weights. --guidance W is classifier-free guidance (0 = off):
eps = (1 + W) eps(x, c) - W eps(x, 0).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cli
import numpy as np
import torch
from evaluation import SAMPLERS, tensor_to_images
from provenance import training_record
from speed import speed_up

import diffusion_utilities as du

DEFAULT_STEPS = {"ddpm": 500, "ddim": 25, "dpm": 15, "dpm-sde": 20}


def parse_context(text: str | None, n_cfeat: int = 5) -> torch.Tensor | None:
    """'hero' / '2' / '1,0,1,0,0' -> a (n_cfeat,) float tensor; None stays None."""
    if text is None:
        return None
    names = {name: i for i, name in enumerate(du.CLASSES)}
    key = text.strip().lower()
    if key in names or key.isdigit():
        index = names[key] if key in names else int(key)
        if not 0 <= index < n_cfeat:
            raise ValueError(f"--context index must be 0..{n_cfeat - 1}, got {index}.")
        return torch.eye(n_cfeat)[index]
    if "," in key:
        try:
            weights = [float(v) for v in key.split(",")]
        except ValueError:
            raise ValueError(f"--context weights must be numbers, got {text!r}.") from None
        if len(weights) != n_cfeat:
            raise ValueError(f"--context needs {n_cfeat} comma-separated weights, got {len(weights)}.")
        return torch.tensor(weights)
    raise ValueError(
        f"unknown --context {text!r}: use a class name ({', '.join(du.CLASSES)}), an index 0-{n_cfeat - 1}, "
        f"or {n_cfeat} comma-separated weights."
    )


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default=str(du.WEIGHTS_DIR / "context_model_trained.pth"), help="a .pth state dict")
    p.add_argument("--sampler", choices=sorted(SAMPLERS), default="ddim", help="default ddim")
    p.add_argument(
        "--steps",
        type=cli.positive_int,
        default=None,
        help="sampling steps (default: ddpm 500, ddim 25, dpm 15, dpm-sde 20); "
        "ddpm with fewer steps runs on evenly spaced ones",
    )
    p.add_argument("--n", type=int, default=32, help="number of sprites (default 32)")
    p.add_argument("--context", default=None, help="class name, index 0-4, or 5 comma-separated weights")
    p.add_argument(
        "--per-class", type=int, default=None, metavar="K", help="K sprites for each class, one row per class"
    )
    p.add_argument("--guidance", type=float, default=0.0, help="classifier-free guidance weight W (default 0)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--out", type=cli.image_file, default="samples.png", help="image grid to write, .png (default samples.png)"
    )
    p.add_argument("--gif", type=cli.file_with_suffix(".gif"), default=None, help="also write the animation (.gif)")
    p.add_argument(
        "--npy", type=cli.file_with_suffix(".npy"), default=None, help="also write the sprites as uint8 (N, 16, 16, 3)"
    )
    p.add_argument("--device", type=cli.device, default="auto", help=cli.DEVICE_HELP)
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument(
        "--fast",
        action="store_true",
        help="sample with a compiled, frozen copy of the model (speed_up): faster steps after some seconds of "
        "compiling per batch size",
    )
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        device = du.get_device(args.device)
        model = du.load_model(args.weights, device=device)
        model = speed_up(model, freeze=args.fast)  # channels_last; with --fast also compiled and frozen
        context = parse_context(args.context, model.n_cfeat)
        if args.per_class is not None:
            if context is not None or args.per_class < 1:
                raise ValueError("--per-class K takes a positive K and no --context (it uses every class).")
            context = torch.eye(model.n_cfeat).repeat_interleave(args.per_class, 0)
            args.n = len(context)
        if args.guidance and context is None:
            raise ValueError("--guidance needs a --context to guide towards.")
        record = training_record(args.weights)
        if context is not None and record is not None and not record["context"]:
            print(
                f"sample.py: warning: {args.weights} was trained without context ({record['source']}: "
                "context false): --context and --guidance have no effect on what it draws.",
                file=sys.stderr,
            )
        steps = args.steps or DEFAULT_STEPS[args.sampler]
        schedule = du.DDPMSchedule(device=device)
        kwargs = dict(context=context, guide_w=args.guidance, progress=not args.no_progress)
        kwargs["generator"] = torch.Generator(device=device).manual_seed(args.seed)
        kwargs["save_rate"] = (20 if args.sampler == "ddpm" else 1) if args.gif else None
        start = time.perf_counter()
        samples, frames, frame_t = SAMPLERS[args.sampler](model, schedule, args.n, steps, **kwargs)
        seconds = time.perf_counter() - start
    except (FileNotFoundError, ValueError) as err:
        print(f"sample.py: error: {err}", file=sys.stderr)
        return 2
    written = [du.save_grid(samples, args.out, nrow=args.per_class or min(8, args.n))]
    if args.gif:
        du.plot_sample(frames, save=True, save_dir=Path(args.gif).parent, fn=Path(args.gif).stem, timesteps=frame_t)
        written.append(Path(args.gif))
    if args.npy:
        np.save(args.npy, tensor_to_images(samples))
        written.append(Path(args.npy))
    print(
        f"{args.n} sprites with {args.sampler}-{steps} in {seconds:.1f} s on {device}: " + ", ".join(map(str, written))
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
