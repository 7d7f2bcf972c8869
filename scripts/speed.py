"""The speed path: channels_last, torch.compile and a frozen compiled copy for sampling.

No lesson needs this; the notebooks use it only when asked (``COURSE_FAST=1``), the scripts with
``--fast``, the benchmark to measure it. ``speed_up(model)`` returns the model to hand to the
samplers (or to train). A compile that fails (no compiler, an unsupported GPU, a CUDA-graph capture
that breaks) falls back to the eager model with one warning, instead of stopping a lesson.
"""

from __future__ import annotations

import copy
import warnings

import torch
import torch.nn as nn


class CompiledWithFallback(nn.Module):
    """``torch.compile(model)`` that falls back to ``model`` itself, with one warning, if compiling fails.

    Compiling happens at the first call of each new input shape, so the fallback is decided there:
    after a failure every later call runs eagerly. With ``freeze`` the compilations run with
    inductor's freezing on (the weights become constants, each BatchNorm is folded into its
    convolution and the GELU after it fused); the setting is applied around every call because
    ``torch.compile(options={"freezing": True})`` does not reach the freezing pass. A frozen copy
    stays in eval mode: its BatchNorms are folded into constants, so there is nothing to train.
    Attributes of the model (``h``, ``config()``, its layers) are reachable through the wrapper.
    """

    def __init__(self, model: nn.Module, mode: str | None = None, freeze: bool = False, backend="inductor"):
        super().__init__()
        self.model = model
        self.freeze = freeze
        self.failed: str | None = None  # why compiling failed, once it has
        if freeze:
            self.training = False  # as the copy: a wrapper in train mode would hand train mode back to it
        # not a second submodule: the compiled callable shares the model's parameters
        object.__setattr__(self, "_compiled", torch.compile(model, mode=mode, backend=backend))

    def forward(self, *args, **kwargs):
        if self.failed is not None:
            return self.model(*args, **kwargs)
        try:
            if not self.freeze:
                return self._compiled(*args, **kwargs)
            import torch._inductor.config as inductor_config  # only the frozen path needs it

            with inductor_config.patch(freezing=True):
                return self._compiled(*args, **kwargs)
        except (KeyboardInterrupt, ValueError):
            raise  # a stop, or the model's own check of its inputs: not a failure to compile
        except Exception as err:
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            self.failed = f"{type(err).__name__}: {first}"
            warnings.warn(
                f"Compiling the model failed ({self.failed[:300]}); running it eagerly instead (same results, "
                "slower). Unset COURSE_FAST / drop --fast to skip compiling.",
                RuntimeWarning,
                stacklevel=2,
            )
            return self.model(*args, **kwargs)

    def train(self, mode: bool = True):
        if mode and self.freeze:
            raise RuntimeError(
                "This is a frozen copy for sampling (speed_up(..., freeze=True)); it cannot train. Train the "
                "original model (or speed_up(model, compile=True)) and make a new frozen copy afterwards."
            )
        return super().train(mode)

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["model"], name)


def speed_up(
    model: nn.Module,
    compile: bool = False,
    channels_last: bool | None = None,
    mode: str | None = None,
    freeze: bool = False,
    backend="inductor",
):
    """Make a model fast; returns the model to pass to the samplers (or to train).

    - ``channels_last`` (default: on for CUDA and the CPU): the NHWC memory layout that cuDNN's
      and oneDNN's convolutions prefer (measured on 2 CPU cores: a training step about 18% faster,
      a forward pass of 32 sprites about 10-17%; see docs/benchmarks.md). Works in place on
      ``model``; the samplers' inputs follow the model's layout.
    - ``compile``: ``torch.compile``; on CUDA ``mode`` defaults to "reduce-overhead", which
      records the fixed-shape sampling step as a CUDA graph. The first calls compile (seconds to
      tens of seconds) and each new batch size compiles again. If compiling fails, the model runs
      eagerly after one warning.
    - ``freeze`` (for sampling only; implies ``compile``): compiles a *copy* with the weights
      frozen as constants (BatchNorm folded into each convolution, GELU fused). The copy is a
      snapshot: training ``model`` afterwards does not reach it.

    Same samples as eager up to float rounding (tested on the CPU).
    """
    device = next(model.parameters()).device
    if channels_last is None:
        channels_last = device.type in ("cpu", "cuda")
    if freeze:
        model, compile = copy.deepcopy(model).eval(), True
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if not compile:
        return model
    if mode is None and device.type == "cuda":
        mode = "reduce-overhead"
    return CompiledWithFallback(model, mode=mode, freeze=freeze, backend=backend)
