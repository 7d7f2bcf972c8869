"""The one setup line of every lesson: ``from course_setup import ROOT, QUICK, device, du, fast, output_folder``.

What it does, so that the lessons' cells hold only the lesson:

- ``ROOT``: the repository root (the folder holding diffusion_utilities.py: the notebook's folder
  or a parent), put on ``sys.path`` so that ``du`` (diffusion_utilities) imports from anywhere.
- ``QUICK``: True when the environment has ``COURSE_QUICK=1`` (CI): fewer sprites and steps.
- ``device``: ``du.get_device()``: CUDA, then Apple MPS, then the CPU.
- ``output_folder(lesson)``: ``$COURSE_OUT/<lesson>`` (default ``<ROOT>/build/<lesson>``), created.
- ``fast(model)``: the model itself, unless ``COURSE_FAST=1``; then a compiled, frozen copy for
  sampling (``speed_up(model, compile=True, freeze=True)``), which falls back to the plain model
  with one warning if compiling fails on this machine.

It also seeds torch (``torch.manual_seed(0)``) so that a fresh run draws the same sprites.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
import torch.nn as nn


def _find_root() -> Path:
    here = Path(__file__).resolve().parent
    for folder in [here, *here.parents]:
        if (folder / "diffusion_utilities.py").exists():
            return folder
    raise FileNotFoundError(
        f"course_setup.py could not find diffusion_utilities.py in {here} or any folder above it; "
        "keep the notebooks/ folder inside the course repository."
    )


ROOT = _find_root()
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import diffusion_utilities as du  # noqa: E402

QUICK = os.environ.get("COURSE_QUICK") == "1"
FAST = os.environ.get("COURSE_FAST") == "1"
device = du.get_device()
torch.manual_seed(0)


def output_folder(lesson: str) -> Path:
    """The folder a lesson writes its pictures and GIFs to: ``$COURSE_OUT/<lesson>`` (default build/), created."""
    folder = Path(os.environ.get("COURSE_OUT", ROOT / "build")) / lesson
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def fast(model: nn.Module) -> nn.Module:
    """``model`` unchanged (eager), unless ``COURSE_FAST=1``: then a compiled, frozen copy for sampling.

    ``speed_up(model, compile=True, freeze=True)`` from scripts/speed.py: the copy (BatchNorms
    folded into the convolutions) samples the same sprites up to float rounding; the first call of
    each batch size compiles, which takes seconds to tens of seconds. If compiling fails on this
    machine, it runs uncompiled after one warning. The copy cannot train: train ``model`` and call
    ``fast`` again.
    """
    if not FAST:
        return model
    scripts = str(ROOT / "scripts")
    if scripts not in sys.path:
        sys.path.insert(0, scripts)
    from speed import speed_up

    return speed_up(model, compile=True, freeze=True)
