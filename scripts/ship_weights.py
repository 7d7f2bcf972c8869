#!/usr/bin/env python
"""Copy the finished training run's weights into weights/ and write weights/MANIFEST.json.

    python scripts/ship_weights.py --run runs/ctx --snapshots 0 4 8 --eval docs/eval_*.json

Copies <run>/<prefix>_trained.pth to weights/context_model_trained.pth and
weights/model_trained.pth (the context model with a zero context is the unconditional model),
and <run>/<prefix>_<epoch>.pth to weights/model_<epoch>.pth for the chosen epochs plus the
last one. The manifest records, per file: sha256, size, the training command, the data set's
sha256, steps, epochs, images seen, final loss, wall time, machine, and the evaluation figures
found in the --eval JSON files (written by scripts/evaluate.py). Also copies the loss log.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from provenance import file_sha256

import diffusion_utilities as du


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="a finished scripts/train.py output folder")
    p.add_argument("--snapshots", type=int, nargs="+", default=[0, 4, 8], help="epochs to ship as model_<epoch>.pth")
    p.add_argument("--eval", nargs="*", default=[], help="evaluate.py JSON files to record")
    p.add_argument("--out", default=str(du.WEIGHTS_DIR), help="default weights/")
    args = p.parse_args(argv)
    run, out = Path(args.run), Path(args.out)
    info = json.loads((run / "run.json").read_text())
    if info.get("interrupted") or info["steps"] == 0:
        print(f"ship_weights.py: error: {run} is not a finished run (see its run.json)", file=sys.stderr)
        return 2
    prefix = "context_model" if info["config"]["context"] else "model"
    last = info["config"]["epochs"] - 1
    steps_per_epoch = info["steps"] // info["config"]["epochs"]
    out.mkdir(parents=True, exist_ok=True)
    copies = {
        "context_model_trained.pth": (run / f"{prefix}_trained.pth", last),
        "model_trained.pth": (run / f"{prefix}_trained.pth", last),
    }
    for epoch in [*args.snapshots, last]:
        copies[f"model_{epoch}.pth"] = (run / f"{prefix}_{epoch}.pth", epoch)
    evals = [json.loads(Path(e).read_text()) for e in args.eval]
    files = {}
    for name, (src, epoch) in copies.items():
        du.load_model(src)  # refuses anything that is not a course state dict
        shutil.copyfile(src, out / name)
        steps = steps_per_epoch * (epoch + 1)
        files[name] = {
            "sha256": file_sha256(out / name),
            "bytes": (out / name).stat().st_size,
            "source": f"{run.name}/{src.name}",
            "epoch": epoch,
            "epochs": epoch + 1,
            "steps": steps,
            "images_seen": steps * info["config"]["batch_size"],
            "weights": f"EMA of the weights (decay {info['config']['ema_decay']})",
            "evaluation": [e for e in evals if Path(e.get("weights", "")).name in (src.name, name)],
        }
    shutil.copyfile(run / "loss_log.csv", out / "loss_log.csv")
    manifest = {
        "about": "Weights of the Sprite Diffusion course, all produced by scripts/train.py on this machine.",
        "command": info["command"],
        "resumed_with": info.get("resumed_with", []),
        "note": info.get("note"),
        "config": info["config"],
        "dataset": info["dataset"],
        "dataset_sha256": info["dataset_sha256"],
        "labels_sha256": info["labels_sha256"],
        "n_images": info["n_images"],
        "steps": info["steps"],
        "epochs": info["epochs_done"],
        "images_seen": info["images_seen"],
        "final_loss": info["final_loss"],
        "wall_time_s": info["wall_time_s"],
        "machine": info["machine"],
        "device": info["device"],
        "torch": info["torch"],
        "files": files,
        "evaluation": evals,
        "loss_log": {"sha256": file_sha256(out / "loss_log.csv")},
    }
    (out / "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {len(files)} weights files and {out / 'MANIFEST.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
