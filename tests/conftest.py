"""Shared test helpers: the repo and scripts/ on sys.path, and small stand-in noise predictors."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))  # the tooling modules beside their scripts

import diffusion_utilities as du  # noqa: E402


class GaussianOracle(nn.Module):
    """A "model" that returns the exact noise for data x_0 ~ N(mu, s^2) per pixel.

    For x_t = alpha x_0 + sigma eps, E[eps | x_t] = sigma (x_t - alpha mu) / (alpha^2 s^2 + sigma^2),
    which is the ideal noise predictor. With s = 0 the data is the single point mu and the
    prediction is the true noise exactly.
    """

    def __init__(self, schedule, mu=0.3, s=0.5, in_channels=3, height=8, n_cfeat=5):
        super().__init__()
        self.in_channels, self.h, self.n_cfeat = in_channels, height, n_cfeat
        self.mu, self.s = mu, s
        self.ab = schedule.ab_t.double()
        self.T = schedule.T
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x, t, c=None):
        step = torch.round(t.reshape(-1).double() * self.T).long()
        ab = self.ab[step].view(-1, 1, 1, 1)
        alpha, sigma = ab.sqrt(), (1 - ab).sqrt()
        eps = sigma * (x.double() - alpha * self.mu) / (alpha**2 * self.s**2 + sigma**2)
        return eps.to(x.dtype)


@pytest.fixture
def schedule():
    return du.DDPMSchedule(500, 1e-4, 0.02)


@pytest.fixture
def small_model():
    torch.manual_seed(0)
    return du.ContextUnet(3, 16, 5, 16).eval()


def write_sprites(folder, n=20, size=16, n_cfeat=5, seed=0):
    """Write a small sprite set in the course format; returns the two paths."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    labels = np.eye(n_cfeat, dtype=np.float32)[rng.integers(0, n_cfeat, n)]
    s, lab = Path(folder) / "sprites_16x16.npy", Path(folder) / "sprite_labels_16x16.npy"
    np.save(s, images)
    np.save(lab, labels)
    return s, lab


def run_scripts(jobs, tmp_dir):
    """Run command-line scripts, each as ``python scripts/<script> args...`` would, in one child process.

    jobs: (script, args) or (script, args, cwd) tuples. Returns one subprocess.CompletedProcess per
    job (returncode, stdout, stderr). One Python process imports torch once for all of them
    (tests/script_runner.py), where a process per job pays that import every time.
    """
    import json
    import subprocess

    jobs = [{"script": j[0], "args": [str(a) for a in j[1]], "cwd": str(j[2]) if len(j) > 2 else None} for j in jobs]
    tmp_dir = Path(tmp_dir)
    (tmp_dir / "jobs.json").write_text(json.dumps(jobs))
    runner = [sys.executable, str(ROOT / "tests" / "script_runner.py"), str(tmp_dir / "jobs.json")]
    done = subprocess.run([*runner, str(tmp_dir / "results.json")], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"the script runner itself failed:\n{done.stderr}"
    results = json.loads((tmp_dir / "results.json").read_text())
    return [subprocess.CompletedProcess([j["script"], *j["args"]], **r) for j, r in zip(jobs, results, strict=True)]
