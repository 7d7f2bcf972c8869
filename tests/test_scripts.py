"""The command-line front doors: help texts, and one readable error line (no traceback) for bad input."""

import subprocess
import sys

import pytest
from conftest import ROOT, du


def run(script, *args):
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / script), *args], capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("script", ["train.py", "sample.py", "evaluate.py", "benchmark.py", "build_sprites.py"])
def test_every_script_explains_itself(script):
    result = run(script, "--help")
    assert result.returncode == 0 and "usage:" in result.stdout


@pytest.mark.parametrize(
    "script, args, message",
    [
        ("sample.py", ["--weights", "nowhere.pth"], "No weights file at nowhere.pth"),
        ("train.py", ["--resume", "nowhere/checkpoint.pt"], "No training checkpoint at nowhere/checkpoint.pt"),
        ("benchmark.py", ["--weights", "nowhere.pth"], "No weights file at nowhere.pth"),
    ],
)
def test_missing_files_end_with_one_readable_line(script, args, message):
    result = run(script, *args)
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_an_unknown_class_name_is_one_readable_line(tmp_path):
    weights = du.save_model(du.course_model(), tmp_path / "m.pth")
    result = run("sample.py", "--weights", str(weights), "--context", "wizard", "--n", "2", "--steps", "2")
    assert result.returncode != 0 and "unknown --context 'wizard'" in result.stderr
    assert "Traceback" not in result.stderr


def test_sample_writes_a_grid_and_uint8_array(tmp_path):
    import numpy as np

    weights = du.save_model(du.course_model(), tmp_path / "m.pth")
    out, npy = tmp_path / "g.png", tmp_path / "s.npy"
    args = ["--weights", str(weights), "--sampler", "ddim", "--steps", "3", "--n", "4", "--out", str(out)]
    result = run("sample.py", *args, "--npy", str(npy), "--context", "1,0,1,0,0", "--no-progress")
    assert result.returncode == 0, result.stderr
    arr = np.load(npy)
    assert out.exists() and arr.shape == (4, 16, 16, 3) and arr.dtype == np.uint8


@pytest.mark.parametrize(
    "text, expected",
    [
        ("hero", [1, 0, 0, 0, 0]),
        ("side-facing", [0, 0, 0, 0, 1]),
        ("2", [0, 0, 1, 0, 0]),
        ("1,0,1,0,0", [1, 0, 1, 0, 0]),
    ],
)
def test_context_argument_forms(text, expected):
    import importlib.util

    spec = importlib.util.spec_from_file_location("sample_script", ROOT / "scripts" / "sample.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.parse_context(text).tolist() == expected
    with pytest.raises(ValueError, match="5 comma-separated"):
        mod.parse_context("1,0")
    with pytest.raises(ValueError, match=r"index must be 0\.\.4"):
        mod.parse_context("7")
