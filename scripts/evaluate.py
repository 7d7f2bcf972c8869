#!/usr/bin/env python
"""How good are a model's sprites? Three figures a learner can read.

Examples:
    python scripts/evaluate.py                                      # weights/context_model_trained.pth, DDPM
    python scripts/evaluate.py --sampler ddim --steps 25            # ~20x faster
    python scripts/evaluate.py --sampler ddim --steps 25 --guidance 2
    python scripts/evaluate.py --weights runs/ctx/context_model_8.pth --sampler ddim --steps 25 \\
        --n-per-class 20 --n-fd 200                                 # a quick look at a snapshot
    python scripts/evaluate.py --floors-only                        # the FD floors alone (no model, seconds)

The defaults are the course's yardstick: 2,000 class sprites (400 per class) and 2,000 free
sprites, every figure with a 95% interval. DDPM-500 at that size takes from about 35 minutes to
over an hour on a 2-core CPU; --n-per-class 100 --n-fd 1000 gives a quicker, rougher look.

What it measures (code: scripts/evaluation.py):
  context accuracy  --n-per-class sprites drawn with each one-hot context (hero, non-hero, food,
                    spell, side-facing): the share a sprite classifier assigns to the class asked for.
                    --n-per-class 0 skips it: a model trained without context (train.py without
                    --context) follows no class, so only its FD and novelty mean something.
  sprite FD         the Frechet distance between --n-fd sprites drawn without context and as many
                    held-out real sprites, in the classifier's penultimate features (FID's recipe
                    for 16x16 sprites). Lower is better. Beside it two floors, each the FD between
                    two real sets of the same size:
                      same drawings: two random sets. The sprites are shifts and mirrors of about
                        1,550 renders, so both sets hold the same drawings: a model that copies
                        the set would get this.
                      new drawings: sets from two disjoint halves of the designs (a drawing and
                        its skin-tone variants), class-balanced: what a model that draws new
                        sprites of the same kind can hope for (needs data/sprite_designs_16x16.npy,
                        written by make data).
  novelty           the share of all generated sprites that are near-copies of a training sprite
                    (RMS pixel difference below 0.05 to the nearest one, 1-pixel shifts and mirrors
                    forgiven). The point of the course is sprites that are not in the set.

The judge is a small sprite classifier. The one that ships (weights/sprite_classifier.pth, with its
held-out accuracy and the hashes of the sprite set it was trained on in weights/sprite_classifier.json)
is used only for that sprite set. For any other set (--data, or a rebuilt data/) a judge is trained
(a minute or two on a CPU) and cached in runs/judges/<hash>/; the script says so. Shipped files are
never written. Prints a markdown table and writes the figures as JSON (--out-json) and the table (--out-md).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cli
import evaluation
from provenance import repo_path, training_record
from speed import speed_up

import diffusion_utilities as du


def _guidance(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number >= 0 (0 = no guidance), got {text}")
    return value


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--weights",
        default=str(du.WEIGHTS_DIR / "context_model_trained.pth"),
        help="the model's .pth weights or a checkpoint.pt (EMA weights); default weights/context_model_trained.pth",
    )
    samplers = sorted(evaluation.SAMPLERS)
    p.add_argument("--sampler", choices=samplers, default="ddpm", help="default ddpm (the full T steps)")
    p.add_argument(
        "--steps",
        type=cli.positive_int,
        default=None,
        help="sampling steps (default: the sampler's; all T = 500 for ddpm, fewer = DDPM on a subsequence)",
    )
    p.add_argument(
        "--guidance",
        type=_guidance,
        default=0.0,
        help="classifier-free guidance W for the class sprites (default 0); the FD sprites are unguided",
    )
    p.add_argument(
        "--n-per-class",
        type=cli.nonnegative_int,
        default=400,
        help="sprites per class for context accuracy (default 400; 0 skips it, for a model trained without context)",
    )
    p.add_argument(
        "--n-fd", type=cli.positive_int, default=2000, help="sprites drawn without context for the FD (default 2000)"
    )
    p.add_argument(
        "--floors-only",
        action="store_true",
        help="only the two FD floors for --n-fd real sprites (no model, no sampling); JSON to --out-json",
    )
    p.add_argument("--no-fd", action="store_true", help="skip the sprite FD (and the sprites it needs)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--batch-size", type=cli.positive_int, default=250, help="sprites per sampling batch (default 250)")
    p.add_argument("--device", type=cli.device, default="auto", help=cli.DEVICE_HELP)
    p.add_argument("--data", default=None, help="folder with the sprite .npy files (default: data/)")
    p.add_argument(
        "--classifier",
        default=None,
        help="a judge of your own (trained and written there if missing or stale); default: the shipped "
        "weights/sprite_classifier.pth for the sprite set it was trained on, else a cache in runs/judges/",
    )
    p.add_argument(
        "--out-json", default=None, help="JSON file to write (default runs/eval/<weights>_<sampler>-<steps>.json)"
    )
    p.add_argument("--out-md", default=None, help="also write the markdown table to this file")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.add_argument(
        "--fast",
        action="store_true",
        help="sample with a compiled, frozen copy of the model (speed_up): faster steps after some seconds of "
        "compiling per batch size",
    )
    return p.parse_args(argv)


def floors_only(args, progress: bool) -> int:
    """--floors-only: the FD floors for --n-fd real sprites, printed and written as JSON."""
    try:
        classifier, card = evaluation.load_or_train_classifier(args.classifier, args.data, progress=progress)
        images, labels = du.load_sprites(*du.sprite_files(args.data))
        _, held_idx = evaluation.split_indices(len(images), card["split"]["held_out"], card["split"]["seed"])
        designs = evaluation.load_designs(args.data)
        floors, _ = evaluation.fd_floors(classifier, images, labels, designs, held_idx, args.n_fd, args.seed)
    except (FileNotFoundError, ValueError) as err:
        print(f"evaluate.py: error: {err}", file=sys.stderr)
        return 2
    result = {"n": args.n_fd, "seed": args.seed, "classifier_path": repo_path(card["path"]), **floors}
    interval = evaluation.format_interval
    print(f"Sprite FD floors for two real sets of {args.n_fd} (seed {args.seed}):")
    print(f"  same drawings (two random sets): {floors['real_floor']:.3f}{interval(floors['real_floor_ci95'])}")
    if designs is None:
        print("  new drawings: n/a (this sprite set records no designs; rebuild it with `make data`)")
    else:
        new, new_ci = floors["new_drawings_floor"], floors["new_drawings_floor_ci95"]
        print(f"  new drawings (disjoint designs): {new:.3f}{interval(new_ci)}")
    path = Path(args.out_json or du.REPO_ROOT / "runs" / "eval" / f"floors_n{args.n_fd}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"Wrote {path}")
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    progress = not args.no_progress
    if args.floors_only:
        return floors_only(args, progress)
    try:
        weights = Path(args.weights)
        record = training_record(weights)
        if args.n_per_class and record is not None and not record["context"]:
            print(
                f"evaluate.py: warning: {weights} was trained without context ({record['source']}: context "
                "false): it follows no class, so its context accuracy is chance. --n-per-class 0 skips it.",
                file=sys.stderr,
            )
        device = du.get_device(args.device)
        model = du.load_model(weights, device=device)
        model = speed_up(model, freeze=args.fast)  # channels_last; with --fast also compiled and frozen
        schedule = du.DDPMSchedule(device=device)
        classifier, card = evaluation.load_or_train_classifier(args.classifier, args.data, progress=progress)
        if card.get("note_for_user"):
            print(card["note_for_user"], file=sys.stderr)
        result = evaluation.evaluate(
            model,
            schedule,
            sampler=args.sampler,
            steps=args.steps,
            n_per_class=args.n_per_class,
            n_fd=0 if args.no_fd else args.n_fd,
            guide_w=args.guidance,
            seed=args.seed,
            classifier=classifier,
            classifier_card=card,
            data_dir=args.data,
            batch_size=args.batch_size,
            progress=progress,
        )
    except (FileNotFoundError, ValueError) as err:
        print(f"evaluate.py: error: {err}", file=sys.stderr)
        return 2
    result = {"weights": repo_path(weights), "classifier_path": repo_path(card["path"]), **result}
    table = evaluation.evaluation_markdown(result, title=f"Evaluation of `{result['weights']}`")
    print(table)
    default_json = du.REPO_ROOT / "runs" / "eval" / f"{weights.stem}_{result['sampler']}-{result['steps']}.json"
    outputs = [(Path(args.out_json or default_json), json.dumps(result, indent=2) + "\n")]
    if args.out_md:
        outputs.append((Path(args.out_md), table))
    written = []
    for path, text in outputs:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        except OSError as err:
            print(f"evaluate.py: error: cannot write {path}: {err}", file=sys.stderr)
            return 1
        written.append(path)
    print("Wrote " + ", ".join(map(str, written)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
