"""Argument checks shared by the command-line scripts: bad input becomes argparse's one-line error.

Each function here is an argparse ``type=``: it returns the parsed value or raises
``argparse.ArgumentTypeError`` with what is wrong and what to do, so the script stops with
``usage: ...`` and ``error: argument --x: ...`` before it loads or computes anything.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import diffusion_utilities as du

DEVICE_HELP = "auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps"


def device(text: str) -> str:
    """A --device value that ``du.get_device`` accepts on this machine (checked there, in one place)."""
    try:
        du.get_device(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def _whole_number(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}, got {value}")
    return value


def positive_int(text: str) -> int:
    """A whole number >= 1 (``--steps 0`` is an error, never "the default")."""
    return _whole_number(text, 1)


def nonnegative_int(text: str) -> int:
    """A whole number >= 0 (for counts where 0 means "skip this part")."""
    return _whole_number(text, 0)


def image_file(text: str) -> str:
    """A file name whose extension names an image format PIL can write (.png, .jpg, ...)."""
    from PIL import Image

    suffix = Path(text).suffix.lower()
    formats = Image.registered_extensions()
    if formats.get(suffix) not in Image.SAVE:
        raise argparse.ArgumentTypeError(
            f"{text!r} does not end in an image extension (the format is taken from it): "
            f"use e.g. {Path(text).stem or 'grid'}.png"
        )
    return text


def file_with_suffix(suffix: str):
    """An argparse type for a file name that must end in ``suffix`` (what is written is what is named)."""

    def check(text: str) -> str:
        if Path(text).suffix.lower() != suffix:
            raise argparse.ArgumentTypeError(
                f"{text!r} would not be a {suffix} file: this option writes {suffix} only; "
                f"use e.g. {Path(text).stem or 'out'}{suffix}"
            )
        return text

    return check
