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
import warnings
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


def _speed_up():
    """``speed_up`` from scripts/speed.py, or from the module where it lived before (du.speed_up)."""
    scripts = str(ROOT / "scripts")
    if scripts not in sys.path:
        sys.path.insert(0, scripts)
    try:
        from speed import speed_up
    except ImportError:
        speed_up = du.speed_up
    return speed_up


class _CompiledOrPlain(nn.Module):
    """A compiled model that falls back to the plain one (with one warning) if compiling fails.

    Compiling happens at the first call of each new input shape, so a failure (no C compiler, an
    unsupported device) shows up there, not when ``fast`` is called. Attributes (``h``,
    ``in_channels``, ``config()``) and parameters are those of the plain model.
    """

    def __init__(self, compiled: nn.Module, plain: nn.Module):
        super().__init__()
        self.model = plain
        object.__setattr__(self, "_compiled", compiled)  # not a second submodule

    def forward(self, *args, **kwargs):
        if self._compiled is not None:
            try:
                return self._compiled(*args, **kwargs)
            except Exception as err:  # any compiler failure: the plain model decides below
                out = self.model(*args, **kwargs)  # a wrong input raises here, with the model's own message
                warnings.warn(
                    f"COURSE_FAST=1: compiling the model failed on this machine ({type(err).__name__}: "
                    f"{str(err).splitlines()[0] if str(err) else ''}); running it uncompiled from now on.",
                    RuntimeWarning,
                    stacklevel=2,
                )
                object.__setattr__(self, "_compiled", None)
                return out
        return self.model(*args, **kwargs)

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["model"], name)


def fast(model: nn.Module) -> nn.Module:
    """``model`` unchanged (eager), unless ``COURSE_FAST=1``: then a compiled, frozen copy for sampling.

    The copy (BatchNorms folded into the convolutions) samples the same sprites up to float
    rounding; the first call of each batch size compiles, which takes seconds to tens of seconds.
    The copy cannot train: train ``model`` and call ``fast`` again.
    """
    if not FAST:
        return model
    frozen = _speed_up()(model, compile=True, freeze=True)
    plain = getattr(frozen, "model", model)
    return _CompiledOrPlain(frozen, plain)
