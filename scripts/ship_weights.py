#!/usr/bin/env python
"""Copy the finished training run's weights into weights/ and write weights/MANIFEST.json.

    python scripts/ship_weights.py --run runs/ctx --uncond-run runs/uncond --snapshots 0 4 8 --eval docs/eval_*.json

Copies <run>/context_model_trained.pth to weights/context_model_trained.pth (lessons 3-4), and
the unconditional run's model_trained.pth to weights/model_trained.pth and its model_<epoch>.pth
to weights/model_<epoch>.pth for the chosen epochs plus the last one (lessons 1-2). Without
--uncond-run, model_trained.pth and the snapshots come from --run (a context model with a zero
context draws unconditionally). The manifest records the training run (command, recipe, the data
set's sha256, steps, epochs, images seen, final loss, wall time, machine) at its top level for
--run and under "unconditional" for --uncond-run, and per file: sha256, size, which run made it
and the evaluation figures found in the --eval JSON files (written by scripts/evaluate.py). Also
copies the loss logs: the snapshots' run's to loss_log.csv (lesson 2 plots it), the context run's
to context_loss_log.csv when the two differ.

    python scripts/ship_weights.py --refresh-eval docs/eval/sweep/*.json docs/eval/final_*.json ...

replaces only the evaluation figures of an existing weights/MANIFEST.json with those files (after a
new evaluation or quality sweep), matching each file to the weights it evaluated by name; the
weights, their hashes and the training record stay as they are (the hashes are checked first).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from provenance import file_sha256, repo_path

import diffusion_utilities as du


def evaluations_for(evals: list[dict], names: tuple[str, ...]) -> list[dict]:
    """The evaluations whose ``weights`` file has one of ``names``."""
    return [e for e in evals if Path(e.get("weights", "")).name in names]


def refresh_evaluations(out: Path, eval_files: list[Path]) -> int:
    """Replace the evaluation figures in ``out``/MANIFEST.json; nothing else changes."""
    manifest_path = out / "MANIFEST.json"
    manifest = json.loads(manifest_path.read_text())
    for name, info in manifest["files"].items():
        if file_sha256(out / name) != info["sha256"]:
            print(f"ship_weights.py: error: {out / name} no longer matches MANIFEST.json; ship a run instead")
            return 2
    evals = [json.loads(e.read_text()) for e in eval_files]
    for name, info in manifest["files"].items():
        info["evaluation"] = evaluations_for(evals, (Path(info["source"]).name, name))
    manifest["evaluation"] = evals
    manifest["evaluation_files"] = [repo_path(e) for e in eval_files]
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"recorded {len(evals)} evaluations in {manifest_path}")
    return 0


RECORD_KEYS = ("command", "resumed_with", "note", "config", "dataset", "dataset_sha256", "labels_sha256", "n_images")


def finished_run(run: Path) -> dict:
    """``run``/run.json of a finished scripts/train.py run; SystemExit with a clear message otherwise."""
    try:
        info = json.loads((run / "run.json").read_text())
    except (OSError, ValueError) as e:
        raise SystemExit(
            f"ship_weights.py: error: {run} has no readable run.json ({e}); give a train.py output folder"
        ) from None
    if info.get("interrupted") or not info.get("steps"):
        raise SystemExit(f"ship_weights.py: error: {run} is not a finished run (see its run.json)")
    return info


def run_record(info: dict) -> dict:
    """What the manifest says about one training run, from its run.json."""
    record = {key: info.get(key) for key in RECORD_KEYS}
    record["resumed_with"] = record["resumed_with"] or []
    record.update(
        steps=info["steps"],
        epochs=info["epochs_done"],
        images_seen=info["images_seen"],
        final_loss=info["final_loss"],
        wall_time_s=info["wall_time_s"],
        machine=info["machine"],
        device=info["device"],
        torch=info["torch"],
    )
    return record


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", help="a finished scripts/train.py output folder (the context model)")
    p.add_argument(
        "--uncond-run", help="a finished run without context: model_trained.pth and the snapshots come from it"
    )
    p.add_argument(
        "--refresh-eval",
        nargs="+",
        metavar="JSON",
        help="only replace the evaluation figures in the existing MANIFEST.json with these evaluate.py files",
    )
    p.add_argument("--snapshots", type=int, nargs="+", default=[0, 4, 8], help="epochs to ship as model_<epoch>.pth")
    p.add_argument("--eval", nargs="*", default=[], help="evaluate.py JSON files to record")
    p.add_argument("--out", default=str(du.WEIGHTS_DIR), help="default weights/")
    args = p.parse_args(argv)
    if (args.run is None) == (args.refresh_eval is None):
        p.error("give either --run (ship a finished run) or --refresh-eval (update the recorded evaluations)")
    if args.refresh_eval:
        return refresh_evaluations(Path(args.out), [Path(e) for e in args.refresh_eval])
    run, out = Path(args.run), Path(args.out)
    info = finished_run(run)
    uncond = Path(args.uncond_run) if args.uncond_run else None
    uncond_info = finished_run(uncond) if uncond else None
    if uncond and not info["config"]["context"]:
        p.error(f"--run {run} was trained without context; with --uncond-run, --run is the context model")
    if uncond and uncond_info["config"]["context"]:
        p.error(f"--uncond-run {uncond} was trained with context; give a run made without --context")
    if uncond and info["dataset_sha256"] != uncond_info["dataset_sha256"]:
        p.error(f"{run} and {uncond} were trained on different data sets (see their run.json)")
    snap_run, snap_info = (uncond, uncond_info) if uncond else (run, info)
    runs = {run: ("context" if uncond else None, info), snap_run: ("unconditional" if uncond else None, snap_info)}

    def prefix(r):
        return "context_model" if runs[r][1]["config"]["context"] else "model"

    last = snap_info["config"]["epochs"] - 1
    out.mkdir(parents=True, exist_ok=True)
    copies = {
        "context_model_trained.pth": (run, f"{prefix(run)}_trained.pth", info["config"]["epochs"] - 1),
        "model_trained.pth": (snap_run, f"{prefix(snap_run)}_trained.pth", last),
    }
    for epoch in [*args.snapshots, last]:
        copies[f"model_{epoch}.pth"] = (snap_run, f"{prefix(snap_run)}_{epoch}.pth", epoch)
    evals = [json.loads(Path(e).read_text()) for e in args.eval]
    files = {}
    for name, (src_run, src_name, epoch) in copies.items():
        src = src_run / src_name
        du.load_model(src)  # refuses anything that is not a course state dict
        shutil.copyfile(src, out / name)
        src_info = runs[src_run][1]
        steps = src_info["steps"] // src_info["config"]["epochs"] * (epoch + 1)
        files[name] = {
            "sha256": file_sha256(out / name),
            "bytes": (out / name).stat().st_size,
            "source": f"{src_run.name}/{src.name}",
            **({"run": runs[src_run][0]} if uncond else {}),
            "epoch": epoch,
            "epochs": epoch + 1,
            "steps": steps,
            "images_seen": steps * src_info["config"]["batch_size"],
            "weights": f"EMA of the weights (decay {src_info['config']['ema_decay']})",
            "evaluation": evaluations_for(evals, (src.name, name)),
        }
    shutil.copyfile(snap_run / "loss_log.csv", out / "loss_log.csv")
    record = run_record(info)
    if uncond:
        shutil.copyfile(run / "loss_log.csv", out / "context_loss_log.csv")
        record["loss_log"] = {"file": "context_loss_log.csv", "sha256": file_sha256(out / "context_loss_log.csv")}
    else:
        record["loss_log"] = {"file": "loss_log.csv", "sha256": file_sha256(out / "loss_log.csv")}
    manifest = {
        "about": "Weights of the Sprite Diffusion course, all produced by scripts/train.py on this machine.",
        **record,
        "files": files,
        "evaluation": evals,
    }
    if uncond:
        manifest["unconditional"] = {
            **run_record(uncond_info),
            "loss_log": {"file": "loss_log.csv", "sha256": file_sha256(out / "loss_log.csv")},
        }
    (out / "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {len(files)} weights files and {out / 'MANIFEST.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
