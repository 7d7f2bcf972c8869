"""Data-parallel training (scripts/distributed.py, issue 15): without torchrun, a run is what it was before."""

import csv

import pytest
import train
from conftest import write_sprites

# 16 sprites of 8x8, global batch 8: 2 steps an epoch
RECIPE = ["--context", "--context-drop", "0.5", "--n-feat", "8", "--batch-size", "8", "--seed", "5", "--no-progress"]

# The losses of `train.py RECIPE --epochs 2` in one process, taken before data-parallel training was added
# (commit 1ff3a24); the loss log keeps 6 digits, and float rounding differs with the thread count and CPU.
PINNED = [1.096477, 1.118754, 1.039797, 1.141705]


def losses(out_dir):
    return [float(r["loss"]) for r in csv.DictReader(open(out_dir / "loss_log.csv"))]


def test_without_torchrun_a_run_gives_the_losses_it_gave_before(tmp_path):
    write_sprites(tmp_path, n=16, size=8)
    assert train.main([*RECIPE, "--epochs", "2", "--data", str(tmp_path), "--out", str(tmp_path / "run")]) == 0
    assert losses(tmp_path / "run") == pytest.approx(PINNED, rel=5e-4)
