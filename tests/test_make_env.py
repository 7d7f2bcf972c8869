"""The Makefile's choice of Python: the active environment (virtualenv or conda) when there is one, else
.venv; `make data` rebuilds a sprite set that is not the full default one. Checked with `make -n`."""

import os
import shutil
import subprocess

import pytest
from conftest import ROOT

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="no make on this machine")


def dry_run(target, **env):
    """The commands `make -n target` would run, with only the given environment variables of the kind."""
    base = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "CONDA_PREFIX", "CONDA_DEFAULT_ENV")}
    result = subprocess.run(
        ["make", "-n", "-B", target], cwd=ROOT, env={**base, **env}, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_without_an_active_environment_make_creates_and_uses_dot_venv():
    commands = dry_run("lab")
    assert "-m venv .venv" in commands and ".venv/bin/python -m jupyter lab notebooks/" in commands


@pytest.mark.parametrize(
    "env, prefix",
    [
        ({"CONDA_PREFIX": "/opt/conda/envs/sd", "CONDA_DEFAULT_ENV": "sprite-diffusion"}, "/opt/conda/envs/sd"),
        ({"VIRTUAL_ENV": "/home/me/venvs/sd"}, "/home/me/venvs/sd"),
    ],
)
def test_an_active_environment_is_used_and_no_venv_is_made(env, prefix):
    commands = dry_run("lab", **env)
    assert ".venv" not in commands
    assert f"{prefix}/bin/python -m jupyter lab notebooks/" in commands  # the environment's own Jupyter
    assert f"{prefix}/bin/python -m pip install --quiet -r requirements.txt" in commands


def test_conda_base_is_not_taken_for_the_course_environment():
    commands = dry_run("lab", CONDA_PREFIX="/opt/conda", CONDA_DEFAULT_ENV="base")
    assert "/opt/conda/bin/python" not in commands and ".venv/bin/python" in commands


def test_make_data_checks_the_set_on_disk_and_rebuilds_when_it_differs():
    commands = dry_run("data")
    assert "build_sprites.py --check --out data ||" in commands  # not just "does the file exist"
