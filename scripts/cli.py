"""Argument checks shared by the command-line scripts: bad input becomes argparse's one-line error.

Each function here is an argparse ``type=``: it returns the parsed value or raises
``argparse.ArgumentTypeError`` with what is wrong and what to do, so the script stops with
``usage: ...`` and ``error: argument --x: ...`` before it loads or computes anything.
"""

from __future__ import annotations

import argparse

import diffusion_utilities as du

DEVICE_HELP = "auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps"


def device(text: str) -> str:
    """A --device value that ``du.get_device`` accepts on this machine (checked there, in one place)."""
    try:
        du.get_device(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text
