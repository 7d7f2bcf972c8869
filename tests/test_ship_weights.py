"""scripts/ship_weights.py on two small stand-in runs: which file goes where, what the manifest says
about each run, and the errors for runs given the wrong way round."""

import json

import pytest
import ship_weights
import torch
from conftest import du
from provenance import file_sha256


def fake_run(folder, context: bool, epochs: int, seed: int, steps_per_epoch: int = 3):
    """A finished train.py output folder: run.json, loss_log.csv, snapshots of distinct course models."""
    folder.mkdir()
    prefix = "context_model" if context else "model"
    for i, name in enumerate([*(f"{prefix}_{e}.pth" for e in range(epochs)), f"{prefix}_trained.pth"]):
        torch.manual_seed(seed * 100 + i)
        torch.save(du.course_model().state_dict(), folder / name)
    (folder / "loss_log.csv").write_text(f"step,epoch,loss,lr\n0,0,{seed}.5,0.001\n")
    steps = steps_per_epoch * epochs
    info = {
        "command": f"python scripts/train.py {'--context ' if context else ''}--epochs {epochs} --out {folder}",
        "config": {"epochs": epochs, "batch_size": 10, "context": context, "ema_decay": 0.999},
        "dataset": "sprites_16x16.npy",
        "dataset_sha256": "d" * 64,
        "labels_sha256": "l" * 64,
        "n_images": 30,
        "steps": steps,
        "epochs_done": epochs,
        "images_seen": steps * 10,
        "final_loss": 0.1 * seed,
        "wall_time_s": 1.0,
        "machine": "test",
        "device": "cpu",
        "torch": torch.__version__,
        "interrupted": False,
    }
    (folder / "run.json").write_text(json.dumps(info))
    return folder


@pytest.fixture
def runs(tmp_path):
    return fake_run(tmp_path / "ctx", True, 3, seed=1), fake_run(tmp_path / "unc", False, 4, seed=2), tmp_path / "w"


def test_two_runs_ship_two_different_models_and_both_records(runs):
    ctx, unc, out = runs
    assert ship_weights.main(["--run", str(ctx), "--uncond-run", str(unc), "--snapshots", "0", "--out", str(out)]) == 0
    manifest = json.loads((out / "MANIFEST.json").read_text())
    same = {
        "context_model_trained.pth": ctx / "context_model_trained.pth",
        "model_trained.pth": unc / "model_trained.pth",
        "model_0.pth": unc / "model_0.pth",
        "model_3.pth": unc / "model_3.pth",  # the last epoch is always shipped
    }
    assert set(manifest["files"]) == set(same)
    for name, src in same.items():
        assert file_sha256(out / name) == file_sha256(src) == manifest["files"][name]["sha256"], name
    assert file_sha256(out / "model_trained.pth") != file_sha256(out / "context_model_trained.pth")
    assert manifest["files"]["context_model_trained.pth"]["run"] == "context"
    assert {manifest["files"][n]["run"] for n in same if n.startswith("model_")} == {"unconditional"}
    assert manifest["files"]["model_0.pth"]["steps"] == 3 and manifest["files"]["model_3.pth"]["images_seen"] == 120
    assert manifest["command"].startswith("python scripts/train.py --context") and manifest["epochs"] == 3
    assert manifest["unconditional"]["command"].endswith(f"--epochs 4 --out {unc}")
    assert manifest["unconditional"]["config"]["context"] is False and manifest["unconditional"]["steps"] == 12
    # lesson 2 plots loss_log.csv: the snapshots' run; the context run's log ships beside it
    assert (out / "loss_log.csv").read_text() == (unc / "loss_log.csv").read_text()
    assert (out / "context_loss_log.csv").read_text() == (ctx / "loss_log.csv").read_text()
    assert manifest["loss_log"]["sha256"] == file_sha256(out / "context_loss_log.csv")
    assert manifest["unconditional"]["loss_log"]["sha256"] == file_sha256(out / "loss_log.csv")


def test_one_run_ships_the_context_model_for_every_lesson(runs):
    ctx, _, out = runs
    assert ship_weights.main(["--run", str(ctx), "--snapshots", "0", "--out", str(out)]) == 0
    manifest = json.loads((out / "MANIFEST.json").read_text())
    assert file_sha256(out / "model_trained.pth") == file_sha256(out / "context_model_trained.pth")
    assert "unconditional" not in manifest and not (out / "context_loss_log.csv").exists()
    assert set(manifest["files"]) == {"context_model_trained.pth", "model_trained.pth", "model_0.pth", "model_2.pth"}


def test_runs_given_the_wrong_way_round_are_refused(runs, capsys):
    ctx, unc, out = runs
    with pytest.raises(SystemExit):
        ship_weights.main(["--run", str(unc), "--uncond-run", str(ctx), "--out", str(out)])
    assert "--run is the context model" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        ship_weights.main(["--run", str(ctx), "--uncond-run", str(ctx), "--out", str(out)])
    assert "trained with context" in capsys.readouterr().err
    assert not out.exists()


def test_an_unfinished_run_is_refused(runs):
    ctx, unc, out = runs
    info = json.loads((unc / "run.json").read_text())
    (unc / "run.json").write_text(json.dumps({**info, "interrupted": True}))
    with pytest.raises(SystemExit, match="not a finished run"):
        ship_weights.main(["--run", str(ctx), "--uncond-run", str(unc), "--out", str(out)])


def test_an_unconditional_run_ships_beside_the_context_model_already_shipped(runs):
    ctx, unc, out = runs
    assert ship_weights.main(["--run", str(ctx), "--snapshots", "0", "--out", str(out)]) == 0
    before = json.loads((out / "MANIFEST.json").read_text())
    del before["loss_log"]["file"]  # as in manifests written before the two-model mode
    (out / "MANIFEST.json").write_text(json.dumps(before))
    assert ship_weights.main(["--uncond-run", str(unc), "--snapshots", "0", "--out", str(out)]) == 0
    manifest = json.loads((out / "MANIFEST.json").read_text())
    assert set(manifest["files"]) == {"context_model_trained.pth", "model_trained.pth", "model_0.pth", "model_3.pth"}
    assert not (out / "model_2.pth").exists()  # the context run's last snapshot is no longer shipped
    kept = manifest["files"]["context_model_trained.pth"]
    assert (
        kept["sha256"]
        == file_sha256(ctx / "context_model_trained.pth")
        == file_sha256(out / "context_model_trained.pth")
    )
    assert kept["run"] == "context" and kept["source"] == before["files"]["context_model_trained.pth"]["source"]
    assert file_sha256(out / "model_trained.pth") == file_sha256(unc / "model_trained.pth")
    assert {k: manifest[k] for k in ("command", "steps", "dataset_sha256")} == {
        k: before[k] for k in ("command", "steps", "dataset_sha256")
    }
    assert manifest["unconditional"]["command"].endswith(f"--epochs 4 --out {unc}")
    assert (out / "context_loss_log.csv").read_text() == (ctx / "loss_log.csv").read_text()
    assert (out / "loss_log.csv").read_text() == (unc / "loss_log.csv").read_text()
    assert manifest["loss_log"] == {"file": "context_loss_log.csv", "sha256": file_sha256(ctx / "loss_log.csv")}
    # shipping again keeps the same context model and its log
    assert ship_weights.main(["--uncond-run", str(unc), "--snapshots", "0", "--out", str(out)]) == 0
    again = json.loads((out / "MANIFEST.json").read_text())
    assert again["files"] == manifest["files"] and again["loss_log"] == manifest["loss_log"]


def test_a_changed_shipped_context_model_is_not_kept(runs):
    ctx, unc, out = runs
    assert ship_weights.main(["--run", str(ctx), "--snapshots", "0", "--out", str(out)]) == 0
    (out / "context_model_trained.pth").write_bytes(b"not the shipped file")
    with pytest.raises(SystemExit, match=r"cannot keep the shipped context model.*does not match"):
        ship_weights.main(["--uncond-run", str(unc), "--out", str(out)])
    assert file_sha256(out / "model_trained.pth") == file_sha256(ctx / "context_model_trained.pth")
