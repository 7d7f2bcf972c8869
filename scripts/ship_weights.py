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

    python scripts/ship_weights.py --uncond-run runs/uncond --snapshots 0 4 8 --eval docs/eval_*.json

ships the unconditional run next to the context model already in weights/: that file, its
training record and its loss log stay (checked against their sha256 in MANIFEST.json first), and
the previous run's snapshots that are no longer shipped are removed.

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


STATS_KEYS = ("steps", "epochs", "images_seen", "final_loss", "wall_time_s", "machine", "device", "torch")


def shipped_context(out: Path) -> tuple[dict, dict, Path]:
    """The context model already shipped in ``out``: its file entry, its run's record and loss log.

    Both files are checked against ``out``/MANIFEST.json first; SystemExit with a clear message when
    they do not match (ship with --run instead).
    """
    try:
        manifest = json.loads((out / "MANIFEST.json").read_text())
        entry = manifest["files"]["context_model_trained.pth"]
        log = out / manifest["loss_log"].get("file", "loss_log.csv")  # older manifests name no file
        if file_sha256(out / "context_model_trained.pth") != entry["sha256"]:
            raise ValueError("context_model_trained.pth does not match its sha256")
        if file_sha256(log) != manifest["loss_log"]["sha256"]:
            raise ValueError(f"{log.name} does not match its sha256")
    except (OSError, ValueError, KeyError) as e:
        raise SystemExit(
            f"ship_weights.py: error: cannot keep the shipped context model of {out} ({e}); give its run with --run"
        ) from None
    record = {key: manifest.get(key) for key in (*RECORD_KEYS, *STATS_KEYS)}
    return {**entry, "run": "context"}, record, log


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", help="a finished scripts/train.py output folder (the context model)")
    p.add_argument(
        "--uncond-run",
        help="a finished run without context: model_trained.pth and the snapshots come from it; "
        "without --run the context model already in --out stays",
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
    if args.refresh_eval:
        if args.run or args.uncond_run:
            p.error("--refresh-eval updates the recorded evaluations only; give it without --run/--uncond-run")
        return refresh_evaluations(Path(args.out), [Path(e) for e in args.refresh_eval])
    if not (args.run or args.uncond_run):
        p.error("give --run and/or --uncond-run (ship finished runs) or --refresh-eval (update the evaluations)")
    out = Path(args.out)
    evals = [json.loads(Path(e).read_text()) for e in args.eval]
    two_models = args.uncond_run is not None
    # the context model: from --run, or the one already shipped in out/
    if args.run:
        run = Path(args.run)
        info = finished_run(run)
        if two_models and not info["config"]["context"]:
            p.error(f"--run {run} was trained without context; with --uncond-run, --run is the context model")
        kept, record, context_log = None, run_record(info), run / "loss_log.csv"
    else:
        kept, record, context_log = shipped_context(out)
    snap_run = Path(args.uncond_run) if two_models else run
    snap_info = finished_run(snap_run) if two_models else info
    if two_models and snap_info["config"]["context"]:
        p.error(f"--uncond-run {snap_run} was trained with context; give a run made without --context")
    if two_models and record["dataset_sha256"] != snap_info["dataset_sha256"]:
        p.error(f"the context model and {snap_run} were trained on different data sets (see their run.json)")

    def entry(src: Path, run_info: dict, epoch: int, role: str, name: str) -> dict:
        steps = run_info["steps"] // run_info["config"]["epochs"] * (epoch + 1)
        return {
            "source": f"{src.parent.name}/{src.name}",
            **({"run": role} if two_models else {}),
            "epoch": epoch,
            "epochs": epoch + 1,
            "steps": steps,
            "images_seen": steps * run_info["config"]["batch_size"],
            "weights": f"EMA of the weights (decay {run_info['config']['ema_decay']})",
            "evaluation": evaluations_for(evals, (src.name, name)),
        }

    prefix = "context_model" if snap_info["config"]["context"] else "model"
    last = snap_info["config"]["epochs"] - 1
    copies = {}  # shipped name -> (source file, its manifest entry)
    if kept is None:
        src = run / "context_model_trained.pth" if two_models else run / f"{prefix}_trained.pth"
        copies["context_model_trained.pth"] = (
            src,
            entry(src, info, info["config"]["epochs"] - 1, "context", "context_model_trained.pth"),
        )
    src = snap_run / f"{prefix}_trained.pth"
    copies["model_trained.pth"] = (src, entry(src, snap_info, last, "unconditional", "model_trained.pth"))
    for epoch in [*args.snapshots, last]:
        src = snap_run / f"{prefix}_{epoch}.pth"
        copies[f"model_{epoch}.pth"] = (src, entry(src, snap_info, epoch, "unconditional", f"model_{epoch}.pth"))
    for src, _ in copies.values():
        du.load_model(src)  # refuses anything that is not a course state dict
    out.mkdir(parents=True, exist_ok=True)
    old_manifest = json.loads((out / "MANIFEST.json").read_text()) if (out / "MANIFEST.json").exists() else {}
    # loss logs first: a kept context model's log is read from out/ before loss_log.csv is replaced
    if two_models:
        if context_log.resolve() != (out / "context_loss_log.csv").resolve():
            shutil.copyfile(context_log, out / "context_loss_log.csv")
        record["loss_log"] = {"file": "context_loss_log.csv", "sha256": file_sha256(out / "context_loss_log.csv")}
    shutil.copyfile(snap_run / "loss_log.csv", out / "loss_log.csv")
    if not two_models:
        record["loss_log"] = {"file": "loss_log.csv", "sha256": file_sha256(out / "loss_log.csv")}
    files = {}
    if kept is not None:
        files["context_model_trained.pth"] = {
            **kept,
            "evaluation": evaluations_for(evals, (Path(kept["source"]).name, "context_model_trained.pth")),
        }
    for name, (src, info_entry) in copies.items():
        shutil.copyfile(src, out / name)
        files[name] = {"sha256": file_sha256(out / name), "bytes": (out / name).stat().st_size, **info_entry}
    manifest = {
        "about": "Weights of the Sprite Diffusion course, all produced by scripts/train.py on this machine.",
        **record,
        "files": files,
        "evaluation": evals,
    }
    if two_models:
        manifest["unconditional"] = {
            **run_record(snap_info),
            "loss_log": {"file": "loss_log.csv", "sha256": file_sha256(out / "loss_log.csv")},
        }
    (out / "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n")
    for stale in sorted(set(old_manifest.get("files", {})) - set(files)):
        (out / stale).unlink(missing_ok=True)  # a snapshot of the previous run that this one does not ship
        print(f"removed {out / stale} (no longer shipped)")
    print(f"wrote {len(copies)} weights files and {out / 'MANIFEST.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
