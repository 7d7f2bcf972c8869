"""scripts/train.py as a user meets it: the printed resume command continues the same run exactly,
options a resume cannot change are refused, a folder holding a run is protected, bad input is one line."""

import re
import shlex
import subprocess
import sys

import pytest
import torch
import train
from conftest import ROOT, du, write_sprites

# a tiny run: 30 of 50 sprites, 3 steps an epoch, 2 epochs
TINY = ["--context", "--n-feat", "8", "--batch-size", "10", "--epochs", "2", "--limit", "30", "--no-progress"]


@pytest.fixture
def data_dir(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    write_sprites(folder, n=50)
    return folder


def main(capsys, *args):
    """Run train.py's main in this process; returns (exit code, stdout, stderr)."""
    code = train.main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_the_printed_resume_command_continues_the_same_run(tmp_path, data_dir, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = main(capsys, *TINY, "--data", data_dir, "--out", "runs/whole")
    assert code == 0, err
    code, out, err = main(capsys, *TINY, "--data", data_dir, "--out", "runs/int", "--max-steps", "4")
    assert code == 0, err
    command = re.search(r"Resume with: (.+)", out).group(1)
    argv = shlex.split(command)
    assert argv[0] == "python"
    resumed = subprocess.run(
        [sys.executable, *argv[1:]], cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "Training on 30 sprites" in resumed.stdout  # the run's --limit, not the whole set
    whole, interrupted = tmp_path / "runs" / "whole", tmp_path / "runs" / "int"
    assert not (tmp_path / "runs" / "train").exists()  # its own folder, not the default one
    assert (interrupted / "loss_log.csv").read_text() == (whole / "loss_log.csv").read_text()  # no nan either
    a = torch.load(whole / "context_model_trained.pth", weights_only=True)
    b = torch.load(interrupted / "context_model_trained.pth", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_resume_refuses_what_it_cannot_change_and_reports_what_it_changes(tmp_path, data_dir, capsys):
    out_dir = tmp_path / "run"
    code, _, err = main(capsys, *TINY, "--data", data_dir, "--out", out_dir, "--max-steps", "2")
    assert code == 0, err
    checkpoint = out_dir / "checkpoint.pt"
    before = checkpoint.read_bytes()
    for option, value in [("--lr", "0.0005"), ("--batch-size", "20"), ("--context-drop", "0.5"), ("--n-feat", "16")]:
        code, _, err = main(capsys, "--resume", checkpoint, option, value)
        assert code == 2 and f"{option} {value}" in err and "cannot change" in err, err
    code, _, err = main(capsys, "--resume", checkpoint, "--limit", "20")
    assert code == 2 and "--limit 20 differs" in err
    code, _, err = main(capsys, "--resume", checkpoint, "--out", tmp_path / "elsewhere")
    assert code == 2 and "continues in its own folder" in err
    other = tmp_path / "other"
    other.mkdir()
    write_sprites(other, n=50, seed=1)
    code, _, err = main(capsys, "--resume", checkpoint, "--data", other)
    assert code == 2 and "trained on other data" in err
    assert checkpoint.read_bytes() == before  # none of these touched the run
    code, out, err = main(capsys, "--resume", checkpoint, "--epochs", "3", "--lr", "0.001", "--no-progress")
    assert code == 0, err
    assert "--epochs changes from 2 to 3" in out and "Done: 9 steps" in out  # an unchanged option is fine


def test_a_new_run_refuses_a_folder_that_holds_a_run(tmp_path, data_dir, capsys):
    out_dir = tmp_path / "run"
    main(capsys, *TINY, "--data", data_dir, "--out", out_dir, "--max-steps", "1")
    before = {p.name: p.read_bytes() for p in out_dir.iterdir()}
    code, _, err = main(capsys, *TINY, "--data", data_dir, "--out", out_dir)
    assert code == 2 and "holds another run" in err and f"--resume {out_dir / 'checkpoint.pt'}" in err
    assert {p.name: p.read_bytes() for p in out_dir.iterdir()} == before
    code, out, err = main(capsys, *TINY, "--data", data_dir, "--out", out_dir, "--overwrite", "--max-steps", "1")
    assert code == 0 and "deleted the previous run's" in out, err


@pytest.mark.parametrize("limit, message", [("0", "--limit must be >= 1"), ("51", "asks for more sprites")])
def test_a_limit_that_selects_nothing_or_too_much_is_an_error(tmp_path, data_dir, capsys, limit, message):
    code, _, err = main(capsys, "--data", data_dir, "--limit", limit, "--out", tmp_path / "run")
    assert code == 2 and message in err
    assert not (tmp_path / "run").exists()


def test_documented_resume_commands_are_the_exact_ones():
    """Every `--resume X` in the README and train.py's help resumes X = <an --out of that text>/checkpoint.pt
    and gives no option a resume refuses."""
    for text in [(ROOT / "README.md").read_text(), train.__doc__]:
        outs = set(re.findall(r"scripts/train\.py [^\n#]*--out (\S+)", text))
        resumes = re.findall(r"scripts/train\.py --resume (\S+)([^\n#`]*)", text)
        assert resumes, "no resume command documented"
        for path, rest in resumes:
            assert path.endswith("/checkpoint.pt") and path.rsplit("/", 1)[0] in outs, path
            assert set(re.findall(r"--[\w-]+", rest)) <= {"--epochs", "--save-every", "--bn-batches"}, rest


def test_a_resume_may_change_how_snapshots_measure_batchnorm_but_not_the_training(tmp_path, data_dir, capsys):
    out_dir = tmp_path / "run"
    main(capsys, *TINY, "--data", data_dir, "--out", out_dir, "--max-steps", "2")
    code, _, err = main(capsys, "--resume", out_dir / "checkpoint.pt", "--lr", "0.5", "--no-progress")
    assert code == 2 and "only --epochs, --save-every and --bn-batches can" in err
    code, out, err = main(capsys, "--resume", out_dir / "checkpoint.pt", "--bn-batches", "2", "--no-progress")
    assert code == 0 and "--bn-batches changes from 0 to 2" in out, err
    code, _, err = main(capsys, *TINY, "--data", data_dir, "--out", tmp_path / "other", "--bn-batches", "-1")
    assert code == 2 and "bn_batches must be >= 0" in err


def test_the_run_json_keeps_the_first_command_and_lists_the_resumes(tmp_path, data_dir, capsys):
    import json

    out_dir = tmp_path / "run"
    main(capsys, *TINY, "--data", data_dir, "--out", out_dir, "--max-steps", "2")
    main(capsys, "--resume", out_dir / "checkpoint.pt", "--no-progress")
    info = json.loads((out_dir / "run.json").read_text())
    assert "--max-steps 2" in info["command"] and len(info["resumed_with"]) == 1
    assert info["steps"] == 6 and info["n_images"] == 30
    assert du.load_model(out_dir / "context_model_trained.pth", model=du.ContextUnet(3, 8, 5, 16))


def test_init_starts_a_new_run_from_the_weights_and_records_them(tmp_path, data_dir, capsys):
    import json

    first = tmp_path / "first"
    code, _, err = main(capsys, *TINY, "--data", data_dir, "--out", first)
    assert code == 0, err
    weights = first / "context_model_trained.pth"
    more = tmp_path / "more"
    code, _, err = main(capsys, *TINY, "--data", data_dir, "--out", more, "--init", weights, "--max-steps", "1")
    assert code == 0, err
    ckpt = torch.load(more / "checkpoint.pt", weights_only=False)
    start = torch.load(weights, weights_only=True)
    assert ckpt["optimizer"]["state"][0]["step"] == 1  # a fresh optimiser: one step taken
    # one Adam step at lr 1e-3 moves each weight by at most about lr: the run began at the given weights
    names = [name for name, _ in du.ContextUnet(3, 8, 5, 16).named_parameters()]  # not the norms' running stats
    assert all((ckpt["model"][k] - start[k]).abs().max() < 2e-3 for k in names)
    fresh = tmp_path / "fresh"
    main(capsys, *TINY, "--data", data_dir, "--out", fresh, "--max-steps", "1", "--seed", "1")
    other = torch.load(fresh / "checkpoint.pt", weights_only=False)["model"]
    assert any((other[k] - start[k]).abs().max() > 1e-2 for k in names)  # random start: far away
    info = json.loads((more / "run.json").read_text())
    assert info["init"]["path"] == str(weights) and len(info["init"]["sha256"]) == 64
    code, _, err = main(capsys, "--resume", more / "checkpoint.pt", "--no-progress")
    assert code == 0, err
    resumed = json.loads((more / "run.json").read_text())
    assert resumed["init"] == info["init"] and resumed["steps"] == 6  # kept through a resume that finished the run


def test_init_refuses_a_missing_file_a_resume_and_another_architecture(tmp_path, data_dir, capsys):
    code, _, err = main(capsys, *TINY, "--data", data_dir, "--out", tmp_path / "a", "--init", tmp_path / "no.pth")
    assert code == 2 and "no.pth" in err and "Traceback" not in err
    code, _, _ = main(capsys, *TINY, "--data", data_dir, "--out", tmp_path / "b", "--max-steps", "1")
    wide = tmp_path / "wide.pth"
    du.save_model(du.ContextUnet(3, 16, 5, 16), wide)
    code, _, err = main(capsys, *TINY, "--data", data_dir, "--out", tmp_path / "c", "--init", wide)
    assert code == 2 and "different architecture" in err
    assert not (tmp_path / "c" / "checkpoint.pt").exists()
    code, _, err = main(capsys, "--resume", tmp_path / "b" / "checkpoint.pt", "--init", wide)
    assert code == 2 and "--init starts a new run" in err
