"""The shared code of the Sprite Diffusion course, in the order the lessons meet it.

Every notebook imports this one module; nothing a lesson needs is defined twice. The lessons write
each algorithm out in their cells and then show that the function here does the same thing.

Sections
--------
1. Model      ResidualConvBlock, UnetDown, UnetUp, EmbedFC, ContextUnet
2. Schedule   DDPMSchedule: b_t, a_t, ab_t and the one-step formulas perturb_input, denoise_add_noise, denoise_ddim
3. Samplers   sample_ddpm, sample_ddim, sample_dpm_solver, sample_dpm_solver_sde
4. Data       transform, CustomDataset, sprite_files
5. Training   diffusion_loss, drop_context, EMA, TrainState, train (a plain loop)
6. Weights    save_model, load_model (safe: never unpickles code)
7. Display    unorm, norm_all, sprite_grid, show_images, plot_sample
8. Explorers  the functions behind the notebooks' widgets

Tooling no lesson calls (resumable training, the evaluation, the speed path, the benchmark) lives in scripts/.

Conventions: images are float tensors (B, C, H, W) scaled to [-1, 1]; a context is a
(B, n_cfeat) float tensor (one-hot for a class, any mix for blends, zeros for "no
context"); timesteps are integers 0..T and the network sees them as t / T in [0, 1].
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import os
import pickle
import pickletools
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision import transforms
from tqdm.auto import tqdm

REPO_ROOT = Path(__file__).resolve().parent
DATA_DIR = REPO_ROOT / "data"
WEIGHTS_DIR = REPO_ROOT / "weights"


#: The five sprite classes, in the order of the label vector.
CLASSES = ("hero", "non-hero", "food", "spell", "side-facing")


def get_device(prefer: str | None = None) -> torch.device:
    """``prefer`` ("cpu", "cuda", "cuda:N", "mps"); None or "auto": CUDA, then Apple MPS, then CPU. A name PyTorch
    does not know, or a device this machine lacks, raises a ValueError saying what there is."""
    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    if prefer in (None, "auto"):
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    try:
        device = torch.device(prefer)
    except (RuntimeError, TypeError):
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps"):
        here = ", ".join(["cpu"] + ["cuda"] * cuda + ["mps"] * mps)
        raise ValueError(f"Unknown device {prefer!r}: use auto, cpu, cuda, cuda:N or mps (here: {here}).")
    n_gpu = torch.cuda.device_count() if cuda else 0
    if (device.type == "cuda" and (device.index or 0) >= n_gpu) or (device.type == "mps" and not mps):
        here = f"{n_gpu or 'no'} CUDA GPU(s) and {'' if mps else 'no '}MPS"
        raise ValueError(f"Device {prefer!r} is not available: PyTorch sees {here} here; use cpu or auto.")
    return device


# =============================================================================
# 1. Model
# =============================================================================


class ResidualConvBlock(nn.Module):
    """Two (Conv3x3, BatchNorm, GELU) layers: (B, in, H, W) -> (B, out, H, W).

    With ``is_res`` the block adds its input back, ``(x + conv2(conv1(x))) / 1.414``, through a learned 1x1
    convolution when the channel counts differ. (The original course built that 1x1 convolution anew, with random
    weights, inside ``forward``; here it is a registered submodule that trains and is saved with the rest.)
    """

    def __init__(self, in_channels: int, out_channels: int, is_res: bool = False):
        super().__init__()
        self.same_channels = in_channels == out_channels
        self.is_res = is_res
        self.conv1 = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, 1, 1), nn.BatchNorm2d(out_channels), nn.GELU()
        )
        self.conv2 = nn.Sequential(
            nn.Conv2d(out_channels, out_channels, 3, 1, 1), nn.BatchNorm2d(out_channels), nn.GELU()
        )
        needs_shortcut = is_res and not self.same_channels
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1) if needs_shortcut else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x2 = self.conv2(self.conv1(x))
        return (self.shortcut(x) + x2) / 1.414 if self.is_res else x2


class UnetDown(nn.Module):
    """Two residual blocks and a 2x2 max-pool: (B, in, H, W) -> (B, out, H/2, W/2)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.model = nn.Sequential(
            ResidualConvBlock(in_channels, out_channels), ResidualConvBlock(out_channels, out_channels), nn.MaxPool2d(2)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class UnetUp(nn.Module):
    """Concatenate the skip connection, upsample x2, two residual blocks: (B, c1, H, W) and skip (B, c2, H, W)
    with c1 + c2 = in_channels -> (B, out, 2H, 2W)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.model = nn.Sequential(
            nn.ConvTranspose2d(in_channels, out_channels, 2, 2),
            ResidualConvBlock(out_channels, out_channels),
            ResidualConvBlock(out_channels, out_channels),
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.model(torch.cat((x, skip), 1))


class EmbedFC(nn.Module):
    """Linear, GELU, Linear: an embedding of a (B, input_dim) vector -> (B, emb_dim)."""

    def __init__(self, input_dim: int, emb_dim: int):
        super().__init__()
        self.input_dim = input_dim
        self.model = nn.Sequential(nn.Linear(input_dim, emb_dim), nn.GELU(), nn.Linear(emb_dim, emb_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.reshape(-1, self.input_dim))


class ContextUnet(nn.Module):
    """The course's U-Net that predicts the noise in an image, given time and context.

    ``forward(x, t, c)``: x (B, in_channels, height, height), t (B,) or (B, 1, 1, 1) with values
    t / T in [0, 1] (or one time for the whole batch, e.g. (1, 1, 1, 1) as the original course
    passes it), c (B, n_cfeat) or None (= zeros, "no context") -> the predicted noise, shaped like x.

    Shapes inside, for height h (divisible by 4) and n_feat f: init_conv (f, h) -> down1 (f, h/2) ->
    down2 (2f, h/4) -> to_vec (2f, 1) -> up0 (2f, h/4) -> up1 (f, h/2) -> up2 (f, h) -> out
    (in_channels, h). Time and context enter the decoder as ``cemb * features + temb``.
    """

    def __init__(self, in_channels: int, n_feat: int = 256, n_cfeat: int = 10, height: int = 28):
        super().__init__()
        if height % 4 != 0:
            raise ValueError(f"ContextUnet needs a height divisible by 4 (16, 20, 24, 28, ...); got {height}.")
        self.in_channels, self.n_feat, self.n_cfeat, self.h = in_channels, n_feat, n_cfeat, height

        self.init_conv = ResidualConvBlock(in_channels, n_feat, is_res=True)
        self.down1 = UnetDown(n_feat, n_feat)
        self.down2 = UnetDown(n_feat, 2 * n_feat)
        # Pool the (h/4 x h/4) map to one vector; the original's fixed window of 4 only fits h = 16.
        self.to_vec = nn.Sequential(nn.AvgPool2d(height // 4), nn.GELU())

        self.timeembed1 = EmbedFC(1, 2 * n_feat)
        self.timeembed2 = EmbedFC(1, n_feat)
        self.contextembed1 = EmbedFC(n_cfeat, 2 * n_feat)
        self.contextembed2 = EmbedFC(n_cfeat, n_feat)

        self.up0 = nn.Sequential(
            nn.ConvTranspose2d(2 * n_feat, 2 * n_feat, height // 4, height // 4), nn.GroupNorm(8, 2 * n_feat), nn.ReLU()
        )
        self.up1 = UnetUp(4 * n_feat, n_feat)
        self.up2 = UnetUp(2 * n_feat, n_feat)
        self.out = nn.Sequential(
            nn.Conv2d(2 * n_feat, n_feat, 3, 1, 1),
            nn.GroupNorm(8, n_feat),
            nn.ReLU(),
            nn.Conv2d(n_feat, in_channels, 3, 1, 1),
        )

    @property
    def height(self) -> int:
        return self.h

    def config(self) -> dict:
        """The constructor arguments, e.g. {'in_channels': 3, 'n_feat': 64, 'n_cfeat': 5, 'height': 16}."""
        return dict(in_channels=self.in_channels, n_feat=self.n_feat, n_cfeat=self.n_cfeat, height=self.h)

    def _check_inputs(self, x, t, c):
        b, ch, h = (x.shape[0] if x.dim() == 4 else None), self.in_channels, self.h
        if x.dim() != 4 or tuple(x.shape[1:]) != (ch, h, h):
            raise ValueError(f"ContextUnet expected x of shape (B, {ch}, {h}, {h}), got {tuple(x.shape)}.")
        if not torch.is_tensor(t) or t.numel() not in (1, b) or t.dim() > 4:
            shape = tuple(t.shape) if torch.is_tensor(t) else type(t).__name__
            want = f"({b},) or ({b}, 1, 1, 1), or one time for the whole batch (e.g. (1, 1, 1, 1))"
            raise ValueError(f"ContextUnet expected t of shape {want}, with values t/T in [0, 1]; got {shape}.")
        if c is not None and (not torch.is_tensor(c) or tuple(c.shape) != (b, self.n_cfeat)):
            shape = tuple(c.shape) if torch.is_tensor(c) else type(c).__name__
            want = f"({b}, {self.n_cfeat}) (one weight per class) or None"
            raise ValueError(f"ContextUnet expected a context c of shape {want}, got {shape}.")

    def forward(self, x: torch.Tensor, t: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        self._check_inputs(x, t, c)
        t = t.reshape(-1, 1).to(x.dtype)  # (B, 1), or (1, 1): one time for the batch, broadcast below
        c = torch.zeros(x.shape[0], self.n_cfeat, device=x.device, dtype=x.dtype) if c is None else c.to(x.dtype)

        x = self.init_conv(x)
        down1 = self.down1(x)
        down2 = self.down2(down1)
        hiddenvec = self.to_vec(down2)

        cemb1 = self.contextembed1(c).view(-1, self.n_feat * 2, 1, 1)
        temb1 = self.timeembed1(t).view(-1, self.n_feat * 2, 1, 1)
        cemb2 = self.contextembed2(c).view(-1, self.n_feat, 1, 1)
        temb2 = self.timeembed2(t).view(-1, self.n_feat, 1, 1)

        up1 = self.up0(hiddenvec)
        up2 = self.up1(cemb1 * up1 + temb1, down2)
        up3 = self.up2(cemb2 * up2 + temb2, down1)
        return self.out(torch.cat((up3, x), 1))


def course_model() -> ContextUnet:
    """The course's network: ContextUnet(in_channels=3, n_feat=64, n_cfeat=5, height=16)."""
    return ContextUnet(in_channels=3, n_feat=64, n_cfeat=5, height=16)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (1,481,027 for the course model)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# =============================================================================
# 2. Schedule
# =============================================================================


class DDPMSchedule:
    """The noise schedule and the one-step formulas of DDPM and DDIM.

    ``b_t`` runs linearly from beta1 to beta2 over T + 1 points (index 0..T), ``a_t = 1 - b_t``, and
    ``ab_t[t] = a_t[0] a_t[1] ... a_t[t]`` (cumulative product) with ``ab_t[0]`` set to 1 (as in the
    course; so ``ab_t[t] = a_t[t] ab_t[t-1]`` holds for t >= 2); the posterior variance ``b~_t`` is
    ``b_tilde_t``. Computed in float64, stored as float32 on ``device``. In the papers: ``b_t`` is
    beta_t, ``a_t`` alpha_t, ``ab_t`` alpha-bar_t, ``b_tilde_t`` beta-tilde_t.
    """

    def __init__(self, timesteps: int = 500, beta1: float = 1e-4, beta2: float = 0.02, device="cpu"):
        if int(timesteps) != timesteps or timesteps < 1:
            raise ValueError(f"timesteps must be a positive integer, got {timesteps!r}.")
        if not 0 < beta1 <= beta2 < 1:
            raise ValueError(f"Need 0 < beta1 <= beta2 < 1, got beta1={beta1}, beta2={beta2}.")
        self.T, self.beta1, self.beta2, self.device = int(timesteps), beta1, beta2, torch.device(device)
        b = (beta2 - beta1) * torch.linspace(0, 1, self.T + 1, dtype=torch.float64) + beta1
        a = 1 - b
        ab = torch.cumprod(a, 0)
        ab[0] = 1.0  # ab_t[0] = 1: no noise at t = 0
        # posterior variance b~_t = b_t (1 - ab_{t-1}) / (1 - ab_t), t >= 1
        bt = torch.zeros_like(b)
        bt[1:] = b[1:] * (1 - ab[:-1]) / (1 - ab[1:])
        self.b_t, self.a_t, self.ab_t, self.b_tilde_t = (v.float().to(self.device) for v in (b, a, ab, bt))

    def to(self, device) -> DDPMSchedule:
        """The same schedule with its tensors on ``device``."""
        return DDPMSchedule(self.T, self.beta1, self.beta2, device=device)

    def __repr__(self) -> str:
        return f"DDPMSchedule(timesteps={self.T}, beta1={self.beta1}, beta2={self.beta2}, device='{self.device}')"

    # -- forward process ---------------------------------------------------------------
    def perturb_input(self, x: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Noise clean images to step t: ``x_t = sqrt(ab_t) x_0 + sqrt(1 - ab_t) noise``.

        x, noise: (B, C, H, W); t: integer tensor (B,) with values in 1..T.
        (The original course multiplied the noise by (1 - ab_t), not its square root.)
        """
        if x.shape != noise.shape:
            raise ValueError(f"perturb_input: x {tuple(x.shape)} and noise {tuple(noise.shape)} must have one shape.")
        if not torch.is_tensor(t) or t.dtype.is_floating_point or t.shape != (x.shape[0],):
            got = f"{t.dtype} {tuple(t.shape)}" if torch.is_tensor(t) else type(t).__name__
            raise ValueError(f"perturb_input: t must be an integer tensor of shape ({x.shape[0]},), got {got}.")
        if int(t.min()) < 0 or int(t.max()) > self.T:
            raise ValueError(f"perturb_input: t must lie in 1..{self.T}, got {int(t.min())}..{int(t.max())}.")
        return self._perturb(x, t, noise)

    def _perturb(self, x, t, noise):
        """``perturb_input`` without its checks (no host sync): for callers whose t is valid by construction."""
        ab = self.ab_t.to(x.device)[t].view(-1, 1, 1, 1)
        return ab.sqrt() * x + (1 - ab).sqrt() * noise

    # -- reverse steps -----------------------------------------------------------------
    def denoise_add_noise(self, x, t: int, pred_noise, z=None, *, t_prev: int | None = None, posterior_variance=False):
        """One DDPM step from x_t to x_{t-1} (Ho et al. 2020, eq. 11, plus fresh noise).

        ``x_{t-1} = (x_t - pred_noise (1 - a_t) / sqrt(1 - ab_t)) / sqrt(a_t) + sigma_t z``

        with ``sigma_t^2 = b_t`` (the course's choice) or, with ``posterior_variance``,
        ``b~_t = b_t (1 - ab_{t-1}) / (1 - ab_t)``. ``z``: standard normal noise shaped like x (None:
        torch.randn_like; zeros: the noise-free step). ``t``: an int in 1..T, one step for the batch.
        ``t_prev`` < t - 1 jumps over several timesteps (DDPM on fewer steps): a_t becomes the share of
        the signal kept over the jump, ``a = ab_t / ab_prev``, and ``sigma^2 = 1 - a`` (or
        ``(1 - a) (1 - ab_prev) / (1 - ab_t)`` with ``posterior_variance``).
        """
        if t_prev is None or t_prev == t - 1:
            a = self.a_t[t]
            var = (self.b_tilde_t if posterior_variance else self.b_t)[t]
        else:
            a = self.ab_t[t] / self.ab_t[t_prev]
            var = (1 - a) * ((1 - self.ab_t[t_prev]) / (1 - self.ab_t[t]) if posterior_variance else 1)
        if z is None:
            z = torch.randn_like(x)
        mean = (x - pred_noise * ((1 - a) / (1 - self.ab_t[t]).sqrt())) / a.sqrt()
        return mean + var.sqrt() * z

    def denoise_ddim(self, x, t: int, t_prev: int, pred_noise, eta: float = 0.0, z=None):
        """One DDIM step (Song et al. 2021) from step t to step t_prev < t; deterministic with eta = 0.

        ``x0_hat = (x_t - sqrt(1 - ab_t) eps) / sqrt(ab_t)`` and
        ``x_prev = sqrt(ab_prev) x0_hat + sqrt(1 - ab_prev - s^2) eps + s z`` with
        ``s = eta sqrt((1 - ab_prev) / (1 - ab_t) (1 - ab_t / ab_prev))``. With eta = 1 and
        t_prev = t - 1 this is the DDPM step with the posterior variance; with eta = 1 and bigger
        jumps it is DDPM on a subsequence of the timesteps ("DDPM with fewer steps").
        """
        ab, ab_prev = self.ab_t[t], self.ab_t[t_prev]
        x0_hat = (x - (1 - ab).sqrt() * pred_noise) / ab.sqrt()  # the predicted clean sprite
        if eta == 0:
            return ab_prev.sqrt() * x0_hat + (1 - ab_prev).sqrt() * pred_noise
        var = eta**2 * (1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)
        if z is None:
            z = torch.randn_like(x)
        return ab_prev.sqrt() * x0_hat + (1 - ab_prev - var).clamp(min=0).sqrt() * pred_noise + var.sqrt() * z

    def step_sequence(self, n: int) -> list[int]:
        """n + 1 decreasing integer timesteps from T down to 0, as evenly spaced as integers allow:
        ``round(T - k T / n)`` for k = 0..n, for any n in 1..T (not only divisors of T)."""
        if isinstance(n, bool) or int(n) != n or not 1 <= n <= self.T:
            raise ValueError(f"The number of sampling steps must be an integer from 1 to {self.T}, got {n!r}.")
        return [round(self.T - k * self.T / int(n)) for k in range(int(n) + 1)]


# =============================================================================
# 3. Samplers
# =============================================================================
#
# Every sampler has the same shape: sample_X(model, schedule, n_sample, steps, context=None, *,
# guide_w=0, generator=None, x_T=None, save_rate=..., callback=None, progress=True), and returns
# (samples, intermediate, timesteps). The loop is written out in each function: the model call,
# classifier-free guidance, and the update formula, one step per iteration.


def draw_noise(shape, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """Standard normal noise of ``shape`` from ``generator`` (on the generator's own device), on ``device``."""
    if generator is None:
        return torch.randn(shape, device=device)
    return torch.randn(shape, generator=generator, device=generator.device).to(device)


class Frames:
    """The states a sampler keeps for an animation: x_T, the state after every ``save_rate``-th step and
    the last (t = 0), with the timestep of each. ``save_rate`` None or 0 keeps nothing."""

    def __init__(self, x_T: torch.Tensor, t_start: int, save_rate: int | None, n_steps: int):
        self.save_rate, self.n_steps, self.frames, self.timesteps = save_rate, n_steps, [], []
        self(0, t_start, x_T)

    def __call__(self, step: int, t: int, x: torch.Tensor):
        """Keep x, the state at timestep t after ``step`` of the sampler's steps, if it is due."""
        if self.save_rate and (step % self.save_rate == 0 or step == self.n_steps):
            self.frames.append(x.detach().float().cpu().numpy())
            self.timesteps.append(int(t))

    def result(self, x: torch.Tensor) -> tuple[np.ndarray, list[int]]:
        """The frames as a numpy array (frames, N, C, H, W) and their timesteps (T first, 0 last)."""
        return (np.stack(self.frames), self.timesteps) if self.frames else (np.zeros((0, *x.shape), np.float32), [])


@contextlib.contextmanager
def _eval_mode(model):
    """Run a block with the model in eval mode and no autograd, restoring its mode after."""
    was_training = model.training
    try:
        with torch.inference_mode():
            yield model.eval()
    finally:
        model.train(was_training)


def _begin(model, schedule, n_sample, context, guide_w, x_T, generator):
    """A sampler's checks and set-up: (x_T, the context input, the schedule on the model's device, t/T for t = 0..T).
    With guidance the context input is (2N, n_cfeat): the contexts, then zeros."""
    if isinstance(n_sample, bool) or int(n_sample) != n_sample or n_sample < 1:
        raise ValueError(f"n_sample must be a positive integer, got {n_sample!r}.")
    if not math.isfinite(guide_w) or guide_w < 0:
        raise ValueError(f"guide_w must be a number >= 0 (0 = no guidance), got {guide_w!r}.")
    if guide_w > 0 and context is None:
        raise ValueError("Classifier-free guidance (guide_w > 0) needs a context to guide towards.")
    n, n_cfeat, weight = int(n_sample), getattr(model, "n_cfeat", None), next(model.parameters())
    c = None
    if context is not None:
        c = torch.as_tensor(context, dtype=torch.float32)
        if c.dim() == 1 and n_cfeat is not None and c.shape[0] == n_cfeat:
            c = c.expand(n, n_cfeat)  # one mix for every sprite
        if c.dim() != 2 or c.shape[0] != n or (n_cfeat is not None and c.shape[1] != n_cfeat):
            raise ValueError(
                f"context must have shape ({n}, {n_cfeat}) (one row of class weights per sprite) or ({n_cfeat},) "
                f"(one mix for all), got {tuple(c.shape)}."
            )
        c = c.to(weight.device)
        if guide_w > 0:
            c = torch.cat([c, torch.zeros_like(c)])
    shape = (n, model.in_channels, model.h, model.h)
    if x_T is not None and tuple(x_T.shape) != shape:
        raise ValueError(f"x_T must have shape {shape}, got {tuple(x_T.shape)}.")
    x = draw_noise(shape, generator, weight.device) if x_T is None else x_T.to(weight.device, torch.float32).clone()
    if weight.is_contiguous(memory_format=torch.channels_last):
        x = x.contiguous(memory_format=torch.channels_last)  # follow the model's memory layout
    sched = schedule if schedule.device == weight.device else schedule.to(weight.device)
    return x, c, sched, torch.arange(schedule.T + 1, device=weight.device, dtype=torch.float32) / schedule.T


def sample_ddpm(model, schedule, n_sample, steps=None, context=None, *, guide_w=0.0, posterior_variance=False,
                generator=None, x_T=None, save_rate=20, callback=None, progress=True):  # fmt: skip
    """Draw ``n_sample`` sprites with DDPM (Ho et al. 2020), from pure noise x_T ~ N(0, I) to x_0.

    Each step is ``schedule.denoise_add_noise`` with fresh noise z from ``generator`` (none at
    the last step). ``steps``: None (all T timesteps, the course's sampler) or fewer, evenly
    spaced (``schedule.step_sequence``), each step then jumping over T/steps timesteps.
    ``context``: None, one (n_cfeat,) mix for all, or (n_sample, n_cfeat); ``guide_w`` = w > 0
    adds classifier-free guidance, ``eps = (1 + w) eps(x, c) - w eps(x, 0)``.

    Returns ``(samples, intermediate, timesteps)``: samples (n_sample, C, H, W) on the model's
    device, roughly in [-1, 1]; intermediate (frames, n_sample, C, H, W), a numpy array of x_T
    and the state after every ``save_rate``-th step and the last; timesteps, the t of each frame.
    ``callback(t, x)`` sees every step's new state.
    """
    ts = schedule.step_sequence(schedule.T if steps is None else steps)
    x, c, sched, times = _begin(model, schedule, n_sample, context, guide_w, x_T, generator)
    n, guided = x.shape[0], guide_w > 0
    frames = Frames(x, ts[0], save_rate, len(ts) - 1)
    with _eval_mode(model):
        for i in tqdm(range(len(ts) - 1), desc="DDPM", disable=not progress, leave=False):
            t, t_prev = ts[i], ts[i + 1]
            eps = model(torch.cat([x, x]) if guided else x, times[t], c)  # the network's noise estimate
            if guided:  # with and without the context in one batch, then mixed
                eps = (1 + guide_w) * eps[:n] - guide_w * eps[n:]
            z = draw_noise(x.shape, generator, x.device) if t_prev > 0 else torch.zeros_like(x)
            x = sched.denoise_add_noise(x, t, eps, z, t_prev=t_prev, posterior_variance=posterior_variance)
            frames(i + 1, t_prev, x)
            if callback is not None:
                callback(t_prev, x)
    return (x, *frames.result(x))


def sample_ddim(model, schedule, n_sample, steps=20, context=None, *, guide_w=0.0, eta=0.0, generator=None,
                x_T=None, save_rate=1, callback=None, progress=True):  # fmt: skip
    """Draw ``n_sample`` sprites with DDIM (Song et al. 2021) in ``steps`` jumps of about T/steps timesteps.

    Each step is ``schedule.denoise_ddim``: predict the sprite ``x0_hat = (x_t - sqrt(1 - ab_t) eps) / sqrt(ab_t)``
    and put it back together at the earlier step, ``x_prev = sqrt(ab_prev) x0_hat + sqrt(1 - ab_prev) eps``. With
    eta = 0 (the default) no noise is added, so a fixed x_T gives fixed samples; eta = 1 adds the posterior noise of
    each jump (noise from ``generator``). Context, guidance and the return value as ``sample_ddpm``; intermediate
    keeps every ``save_rate``-th step (every step by default).
    """
    ts = schedule.step_sequence(steps)
    x, c, sched, times = _begin(model, schedule, n_sample, context, guide_w, x_T, generator)
    n, guided = x.shape[0], guide_w > 0
    frames = Frames(x, ts[0], save_rate, len(ts) - 1)
    with _eval_mode(model):
        for i in tqdm(range(len(ts) - 1), desc="DDIM", disable=not progress, leave=False):
            t, t_prev = ts[i], ts[i + 1]
            eps = model(torch.cat([x, x]) if guided else x, times[t], c)
            if guided:  # classifier-free guidance
                eps = (1 + guide_w) * eps[:n] - guide_w * eps[n:]
            if eta > 0 and t_prev > 0:
                z = draw_noise(x.shape, generator, x.device)
                x = sched.denoise_ddim(x, t, t_prev, eps, eta=eta, z=z)
            else:
                x = sched.denoise_ddim(x, t, t_prev, eps)
            frames(i + 1, t_prev, x)
            if callback is not None:
                callback(t_prev, x)
    return (x, *frames.result(x))


def dpm_solver_coefficients(schedule: DDPMSchedule) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(alpha_t, sigma_t, lambda_t) for t = 0..T, in float64 on the CPU, for DPM-Solver++.

    ``alpha_t = sqrt(ab_t)``, ``sigma_t = sqrt(1 - ab_t)``, ``lambda_t = log(alpha_t / sigma_t)``
    (the log signal-to-noise ratio; +inf at t = 0, where sigma = 0).
    """
    ab = schedule.to("cpu").ab_t.double()
    alpha, sigma = ab.sqrt(), (1 - ab).sqrt()
    return alpha, sigma, torch.log(alpha) - torch.log(sigma)


def sample_dpm_solver(model, schedule, n_sample, steps=15, context=None, *, guide_w=0.0, order=2, generator=None,
                      x_T=None, save_rate=1, callback=None, progress=True):  # fmt: skip
    """Draw ``n_sample`` sprites with DPM-Solver++(2M) (Lu et al. 2022), the ODE form, in ``steps`` steps.

    With the data prediction ``x0 = (x_s - sigma_s eps) / alpha_s`` (``dpm_solver_coefficients``),
    a step from s to t with ``h = lambda_t - lambda_s`` is

        x_t = (sigma_t / sigma_s) x_s - alpha_t (exp(-h) - 1) D

    with D = x0 for a first-order step (exactly DDIM's step) and, for the second-order multistep
    update, ``D = (1 + 1/(2r)) x0 - 1/(2r) x0_prev``, ``r = h_prev / h``. The first step and
    the last (to t = 0, where the step lands on x0) are first order; ``order=1`` is DDIM.
    Timesteps as ``sample_ddim``; context, guidance and the return value as ``sample_ddpm``.
    """
    if order not in (1, 2):
        raise ValueError(f"order must be 1 or 2, got {order!r}.")
    ts = schedule.step_sequence(steps)
    alpha, sigma, lam = dpm_solver_coefficients(schedule)  # host numbers: no device sync in the loop
    x, c, _, times = _begin(model, schedule, n_sample, context, guide_w, x_T, generator)
    n, guided = x.shape[0], guide_w > 0
    frames = Frames(x, ts[0], save_rate, len(ts) - 1)
    x0_prev, h_prev = None, None
    with _eval_mode(model):
        for i in tqdm(range(len(ts) - 1), desc="DPM-Solver++", disable=not progress, leave=False):
            s, t = ts[i], ts[i + 1]
            eps = model(torch.cat([x, x]) if guided else x, times[s], c)
            if guided:  # classifier-free guidance
                eps = (1 + guide_w) * eps[:n] - guide_w * eps[n:]
            x0 = (x - float(sigma[s]) * eps) / float(alpha[s])
            h = float(lam[t] - lam[s])  # inf for the last step to t = 0
            if t == 0:
                x = x0  # sigma_0 = 0: the last step lands on the data prediction
            else:
                r = h_prev / h if (order == 2 and x0_prev is not None) else None
                d = x0 if r is None else (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * x0_prev
                x = float(sigma[t] / sigma[s]) * x - float(alpha[t]) * math.expm1(-h) * d
            x0_prev, h_prev = x0, h
            frames(i + 1, t, x)
            if callback is not None:
                callback(t, x)
    return (x, *frames.result(x))


def sample_dpm_solver_sde(model, schedule, n_sample, steps=20, context=None, *, guide_w=0.0, order=2,
                          generator=None, x_T=None, save_rate=1, callback=None, progress=True):  # fmt: skip
    """Draw ``n_sample`` sprites with SDE-DPM-Solver++(2M) (Lu et al. 2022): the reverse SDE, not the ODE.

    With D as in ``sample_dpm_solver`` and fresh noise z from ``generator`` at every step but the last,

        x_t = (sigma_t / sigma_s) exp(-h) x_s + alpha_t (1 - exp(-2h)) D + sigma_t sqrt(1 - exp(-2h)) z

    Its first-order step (``order=1``) is DDPM's step from s to t with the posterior variance
    (``sample_ddpm(..., posterior_variance=True)`` on the same steps). Like DDPM it adds noise
    that washes out earlier errors, so it often follows the context better than the ODE.
    """
    if order not in (1, 2):
        raise ValueError(f"order must be 1 or 2, got {order!r}.")
    ts = schedule.step_sequence(steps)
    alpha, sigma, lam = dpm_solver_coefficients(schedule)
    x, c, _, times = _begin(model, schedule, n_sample, context, guide_w, x_T, generator)
    n, guided = x.shape[0], guide_w > 0
    frames = Frames(x, ts[0], save_rate, len(ts) - 1)
    x0_prev, h_prev = None, None
    with _eval_mode(model):
        for i in tqdm(range(len(ts) - 1), desc="SDE-DPM-Solver++", disable=not progress, leave=False):
            s, t = ts[i], ts[i + 1]
            eps = model(torch.cat([x, x]) if guided else x, times[s], c)
            if guided:  # classifier-free guidance
                eps = (1 + guide_w) * eps[:n] - guide_w * eps[n:]
            x0 = (x - float(sigma[s]) * eps) / float(alpha[s])
            h = float(lam[t] - lam[s])
            if t == 0:
                x = x0
            else:
                r = h_prev / h if (order == 2 and x0_prev is not None) else None
                d = x0 if r is None else (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * x0_prev
                z = draw_noise(x.shape, generator, x.device)
                x = (
                    float(sigma[t] / sigma[s] * math.exp(-h)) * x
                    - float(alpha[t]) * math.expm1(-2 * h) * d
                    + float(sigma[t]) * math.sqrt(-math.expm1(-2 * h)) * z
                )
            x0_prev, h_prev = x0, h
            frames(i + 1, t, x)
            if callback is not None:
                callback(t, x)
    return (x, *frames.result(x))


# =============================================================================
# 4. Data
# =============================================================================

#: The course's transform: (H, W, 3) uint8 -> (3, H, W) float in [-1, 1].
#: (ToTensor scales to [0, 1]; Normalize(0.5, 0.5) maps that to [-1, 1].)
transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))])


def images_to_tensor(images: np.ndarray) -> torch.Tensor:
    """All at once: (N, H, W, 3) uint8 -> (N, 3, H, W) float32 in [-1, 1], ``x / 127.5 - 1``."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


OUR_SPRITES = ("sprites_16x16.npy", "sprite_labels_16x16.npy")
COURSE_SPRITES = ("sprites_1788_16x16.npy", "sprite_labels_nc_1788_16x16.npy")


def sprite_files(data_dir=None) -> tuple[Path, Path]:
    """(images, labels) paths in ``data_dir`` (default: the repo's data/); the original course's files,
    when both are there, win over the OpenMoji set ``make data`` builds (FileNotFoundError if neither is)."""
    data_dir = Path(data_dir) if data_dir is not None else DATA_DIR
    for images, labels in (COURSE_SPRITES, OUR_SPRITES):
        if (data_dir / images).exists() and (data_dir / labels).exists():
            return data_dir / images, data_dir / labels
    raise FileNotFoundError(
        f"No sprite set in {data_dir}: build {OUR_SPRITES[0]} and {OUR_SPRITES[1]} with `make data`, "
        f"or drop the original course's {COURSE_SPRITES[0]} and {COURSE_SPRITES[1]} there."
    )


def load_sprites(sfilename, lfilename) -> tuple[np.ndarray, np.ndarray]:
    """Load and check a sprite set: images (N, H, W, 3) uint8 and labels (N, n_cfeat) float.

    A missing file: FileNotFoundError; a wrong rank, size, dtype or count: ValueError naming the file.
    """
    sfilename, lfilename = Path(sfilename), Path(lfilename)
    arrays = []
    for path in (sfilename, lfilename):
        if not path.exists():
            raise FileNotFoundError(f"Sprite file not found: {path}. Build the sprites with `make data`.")
        try:
            arrays.append(np.load(path, allow_pickle=False))
        except (ValueError, OSError) as err:
            raise ValueError(f"{path} is not a readable .npy array ({err}). Rebuild it with `make data`.") from None
    images, labels = arrays
    if images.ndim != 4 or images.shape[-1] != 3 or images.shape[1] != images.shape[2]:
        raise ValueError(f"{sfilename}: expected images of shape (N, H, H, 3), got {images.shape}.")
    if images.shape[1] % 4 != 0:
        raise ValueError(f"{sfilename}: the sprite size must be divisible by 4 (e.g. 16), got {images.shape[1]}.")
    if images.dtype != np.uint8:
        raise ValueError(f"{sfilename}: expected uint8 pixels (0..255), got dtype {images.dtype}.")
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.floating):
        raise ValueError(f"{lfilename}: expected float labels (N, n_cfeat), got {labels.dtype} {labels.shape}.")
    if labels.shape[0] != images.shape[0]:
        raise ValueError(f"{lfilename} has {labels.shape[0]} labels but {sfilename} has {images.shape[0]} images.")
    return images, labels


class CustomDataset(torch.utils.data.Dataset):
    """The sprite set as a Dataset of (image (3, H, W) in [-1, 1], context (n_cfeat,)) pairs.

    ``sfilename``: images (N, H, W, 3) uint8; ``lfilename``: labels (N, n_cfeat) float. With ``null_context``
    every context is zeros (the unconditional model). The module's own ``transform`` converts the whole
    set once, into ``self.images``; any other transform is applied per item, as torchvision does.
    """

    def __init__(self, sfilename, lfilename, transform=transform, null_context: bool = False):
        self.sprites, self.slabels = load_sprites(sfilename, lfilename)
        self.sprites_shape, self.slabel_shape = self.sprites.shape, self.slabels.shape
        self.transform, self.null_context = transform, null_context
        labels = torch.from_numpy(self.slabels.astype(np.float32))
        self.labels = torch.zeros_like(labels) if null_context else labels
        self.images = images_to_tensor(self.sprites) if transform is globals()["transform"] else None

    def __len__(self) -> int:
        return len(self.sprites)

    def __getitem__(self, idx):
        image = self.images[idx] if self.images is not None else self.transform(self.sprites[idx])
        return image, self.labels[idx]

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All images (N, 3, H, W) in [-1, 1] and contexts (N, n_cfeat), as two tensors."""
        images = self.images if self.images is not None else images_to_tensor(self.sprites)
        return images, self.labels


# =============================================================================
# 5. Training
# =============================================================================


def diffusion_loss(model, schedule: DDPMSchedule, x0: torch.Tensor, c=None, generator=None) -> torch.Tensor:
    """The DDPM training loss for a batch: ``MSE(eps_theta(x_t, t/T, c), eps)``.

    x0: (B, C, H, W) clean images in [-1, 1]; c: (B, n_cfeat) or None. One timestep
    t ~ U{1..T} and one noise eps ~ N(0, I) per image (drawn in that order from ``generator``,
    on its device), ``x_t = sqrt(ab_t) x0 + sqrt(1-ab_t) eps``.
    """
    gen_device = generator.device if generator is not None else x0.device
    t = torch.randint(1, schedule.T + 1, (x0.shape[0],), generator=generator, device=gen_device).to(x0.device)
    noise = draw_noise(x0.shape, generator, x0.device)
    x_t = schedule._perturb(x0, t, noise)  # t is drawn in 1..T above, so no range check is needed
    pred = model(x_t, t.float() / schedule.T, c)
    return F.mse_loss(pred, noise)


def drop_context(c: torch.Tensor, p: float, generator=None) -> torch.Tensor:
    """Zero each row of the context (B, n_cfeat) with probability p (for classifier-free guidance)."""
    if p <= 0:
        return c
    gen_device = generator.device if generator is not None else c.device
    keep = (torch.rand(c.shape[0], generator=generator, device=gen_device) >= p).to(c.device, c.dtype)
    return c * keep[:, None]


class EMA:
    """An exponential moving average of a model's weights: ``ema <- d ema + (1 - d) w``.

    The decay warms up as ``d = min(decay, (1 + k) / (10 + k))`` after k updates, so an early snapshot is not
    dominated by the random initial weights. Buffers (BatchNorm statistics) are copied as they are.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999):
        if not 0 <= decay < 1:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}.")
        self.decay, self.updates = decay, 0
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module):
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        self.updates += 1
        torch._foreach_lerp_(list(self.model.parameters()), [p.detach() for p in model.parameters()], 1 - d)
        for b_ema, b in zip(self.model.buffers(), model.buffers(), strict=True):
            b_ema.copy_(b)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates, "model": self.model.state_dict()}

    def load_state_dict(self, state: dict):
        self.decay, self.updates = state["decay"], state["updates"]
        self.model.load_state_dict(state["model"])


@dataclasses.dataclass
class TrainState:
    """Everything the training loop changes, so that a run can stop and continue exactly.

    ``step``: optimiser steps taken (epoch ``step // steps_per_epoch``, batch ``step % steps_per_epoch``);
    ``perm``: this epoch's order of the images. ``generator`` draws all the randomness (order, context
    dropout, t, noise); ``order``, when set, draws the order instead. ``shard = (r, n)``: this process
    trains on every n-th image of each batch from the r-th (data-parallel runs; (0, 1): all).
    ``loss``: the last step's loss, a 0-dim tensor on the device.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    ema: EMA
    generator: torch.Generator
    step: int = 0
    perm: torch.Tensor | None = None
    loss: torch.Tensor | None = None
    order: torch.Generator | None = None
    shard: tuple[int, int] = (0, 1)

    @classmethod
    def start(cls, model: nn.Module, lr: float = 1e-3, ema_decay: float = 0.999, seed: int = 0) -> TrainState:
        """A fresh state: Adam at ``lr``, an EMA of ``model``, a generator on its device seeded with ``seed``."""
        generator = torch.Generator(next(model.parameters()).device).manual_seed(seed)
        return cls(model, torch.optim.Adam(model.parameters(), lr=lr), EMA(model, ema_decay), generator)


def train(model, schedule, images, labels=None, *, epochs=1, batch_size=100, lr=1e-3, context_drop=0.1, seed=0,
          state=None, callback=None, progress=True) -> TrainState:  # fmt: skip
    """Train ``model`` to predict the noise; returns the ``TrainState`` (``state.ema.model``: the EMA weights).

    images: (N, C, H, W) in [-1, 1]; labels: (N, n_cfeat) contexts, or None to train without.
    Every epoch visits the images in a new random order, ``batch_size`` at a time (a last
    partial batch is left out). Every step zeroes a share ``context_drop`` of the contexts, takes
    ``diffusion_loss`` and an Adam step at ``lr_k = lr (1 - k / total_steps)``, and updates the
    EMA. ``state`` (default ``TrainState.start(model, lr, seed=seed)``) continues a run
    where it stopped. ``callback(state)`` runs after every step; returning True stops the loop.
    """
    state = state or TrainState.start(model, lr, seed=seed)
    images, labels, batch_size = _check_training_data(state, model, images, labels, batch_size)
    steps_per_epoch = len(images) // batch_size
    total_steps = epochs * steps_per_epoch
    model.train()
    with tqdm(total=total_steps, initial=state.step, desc="training", disable=not progress) as bar:
        while state.step < total_steps:
            batch = state.step % steps_per_epoch
            if batch == 0:  # a new epoch: a new order of the images
                gen = state.order or state.generator
                state.perm = torch.randperm(len(images), generator=gen, device=gen.device)
            idx = state.perm[batch * batch_size : (batch + 1) * batch_size][state.shard[0] :: state.shard[1]]
            idx = idx.to(images.device)
            c = drop_context(labels[idx], context_drop, state.generator) if labels is not None else None
            for group in state.optimizer.param_groups:
                group["lr"] = lr * (1 - state.step / total_steps)
            loss = diffusion_loss(model, schedule, images[idx], c, state.generator)
            state.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            state.optimizer.step()
            state.ema.update(model)
            state.step, state.loss = state.step + 1, loss.detach()
            bar.update(1)
            if state.step % 50 == 0:
                bar.set_postfix(loss=f"{loss.item():.4f}")
            if callback is not None and callback(state):
                break
    return state


def _check_training_data(state: TrainState, model, images, labels, batch_size):
    """``train``'s input checks; returns images and labels on the model's device and the batch size (<= N)."""
    if state.model is not model:
        raise ValueError("train: state.model is not the model given; pass the model the state was made for.")
    if not torch.is_tensor(images) or images.dim() != 4 or len(images) == 0:
        got = tuple(images.shape) if torch.is_tensor(images) else type(images).__name__
        raise ValueError(f"train: images must be a tensor (N, C, H, W) with N >= 1, got {got}.")
    if labels is not None and (labels.dim() != 2 or len(labels) != len(images)):
        raise ValueError(f"train: labels must have shape ({len(images)}, n_cfeat), got {tuple(labels.shape)}.")
    if int(batch_size) < 1:
        raise ValueError(f"train: batch_size must be >= 1, got {batch_size}.")
    batch_size = min(int(batch_size), len(images))
    n = 0 if state.perm is None else len(state.perm)
    if state.step % (len(images) // batch_size) and n != len(images):
        raise ValueError(
            f"train: the state stopped mid-epoch on another data set ({n} images, not {len(images)}); "
            "resume on the same data."
        )
    device = next(model.parameters()).device
    return images.to(device), (labels.to(device) if labels is not None else None), batch_size


# =============================================================================
# 6. Weights
# =============================================================================


#: The format tag of the training checkpoints scripts/train.py writes (load_model reads their EMA weights).
CHECKPOINT_FORMAT = "sprite-diffusion-checkpoint/1"


def atomic_torch_save(obj, path) -> Path:
    """torch.save to a temporary file in the same folder, then rename: never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_model(model: nn.Module, path) -> Path:
    """Save ``model.state_dict()`` to ``path``, atomically (temporary file, then rename)."""
    return atomic_torch_save({k: v.detach().cpu() for k, v in model.state_dict().items()}, path)


def _not_torch_file(path: Path) -> str | None:
    """What ``path`` is if it cannot be a ``torch.save`` file (a zip holding data.pkl, or a pickle); else None."""
    with open(path, "rb") as f:
        head = f.read(64)
    if head.startswith(b"PK") and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            if not any(name.endswith("data.pkl") for name in z.namelist()):
                return "a zip archive without PyTorch's data.pkl (a .npz of NumPy arrays?)"
    if head.startswith((b"PK", b"\x80")):  # a zip (a truncated one is torch.load's to judge) or a pickle
        return None
    if head.startswith(b"\x93NUMPY"):
        return "a NumPy array file (.npy)"
    try:
        return "a text file" if head.decode("utf-8") else "an empty file"
    except UnicodeDecodeError:
        return "neither a zip archive nor a pickle"


def _pickled_callables(path: Path) -> list[str]:
    """The non-torch callables a pickle names (``module.name``), read with pickletools: nothing runs."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            data = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
    else:
        data = path.read_bytes()
    names, strings = [], []
    for op, arg, _ in pickletools.genops(data):
        if op.name == "GLOBAL":
            names.append(arg.replace(" ", "."))
        elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
            names.append(f"{strings[-2]}.{strings[-1]}")
        elif isinstance(arg, str):
            strings.append(arg)
    return sorted({n for n in names if not n.startswith(("torch.", "collections.OrderedDict"))})


def _safe_torch_load(path):
    """``torch.load(path, weights_only=True)``; one-line errors: missing, not PyTorch's, holds code, corrupt."""
    path = Path(path)
    if not path.exists():  # say how to get it: restore the course's weights, fix the path, or train
        train = "or train your own with `python scripts/train.py --help`."
        if path.resolve().parent == WEIGHTS_DIR.resolve():
            fix = "The course's trained weights ship in weights/ (restore them with `git checkout -- weights/`),"
            raise FileNotFoundError(f"No weights file at {path}. {fix} {train}")
        where = "" if path.is_absolute() else f" ({path.resolve()})"
        hint = ""
        if not path.is_absolute() and (REPO_ROOT / path).exists():
            hint = f" That relative path is read from {Path.cwd()}; did you mean {REPO_ROOT / path}?"
        fix = f"Check the path; the course's own weights are in {WEIGHTS_DIR}/,"
        raise FileNotFoundError(f"No weights file at {path}{where}.{hint} {fix} {train}")
    kind = _not_torch_file(path)
    if kind is not None:
        raise ValueError(f"{path} is not a PyTorch weights file: it is {kind}. Pass a .pth saved by the course.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # torch's message advises weights_only=False: an unsafe load we never suggest
        try:
            called = ", ".join(_pickled_callables(path)[:3])
        except Exception:  # a damaged pickle: say what we know
            called = ""
        detail = f" (it would call {called})" if called else ""
        refused = "and was refused: unpickling them could run code"
        fix = "Save a plain state dict: torch.save(model.state_dict(), path)."
        raise ValueError(f"{path} holds Python objects besides tensors{detail} {refused}. {fix}") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{path} is not a readable PyTorch weights file (corrupt or truncated?): {first}") from None


def load_model(path, model: nn.Module | None = None, device=None) -> nn.Module:
    """Load weights into ``model`` (default: a new ContextUnet(3, 64, 5, 16)); return it in eval mode.

    ``path``: a state dict saved by ``save_model`` (or a training ``checkpoint.pt``: its EMA weights).
    Loading is safe (``weights_only=True``: a file can never run code). A missing file raises
    FileNotFoundError saying where weights come from; a corrupt file or one from a different
    architecture raises ValueError naming the file and the sizes that differ.
    """
    state = _safe_torch_load(path)
    if isinstance(state, dict) and state.get("format") == CHECKPOINT_FORMAT:
        state = state["ema"]["model"]
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ValueError(f"{path} is not a state dict (a mapping of parameter names to tensors).")
    model = course_model() if model is None else model
    expected = model.state_dict()
    resized = [k for k, v in expected.items() if k in state and state[k].shape != v.shape]
    differ = [f"{k}: {tuple(state[k].shape)} in the file, {tuple(expected[k].shape)} in the model" for k in resized]
    missing, unexpected = [k for k in expected if k not in state], [k for k in state if k not in expected]
    problems = (("sizes differ", differ, "; "), ("missing", missing, ", "), ("unexpected", unexpected, ", "))
    parts = [f"{len(v)} {what} ({sep.join(v[:3])}{sep + '...' if v[3:] else ''})" for what, v, sep in problems if v]
    if parts:
        cfg = model.config() if hasattr(model, "config") else type(model).__name__
        raise ValueError(f"{path} was saved from a different architecture than the model {cfg}: {'; '.join(parts)}.")
    model.load_state_dict(state)
    if device is not None:
        model.to(get_device(device))
    return model.eval()


# =============================================================================
# 7. Display
# =============================================================================


def unorm(x: np.ndarray) -> np.ndarray:
    """Stretch one image (H, W, C) to [0, 1]: ``(x - min) / (max - min)``, one min and max over all its pixels
    (per channel would shift the colours), so that a noisy frame stays visible."""
    lo, hi = x.min(), x.max()
    return (x - lo) / max(hi - lo, 1e-8)


def norm_all(store: np.ndarray, n_t: int | None = None, n_s: int | None = None) -> np.ndarray:
    """``unorm`` on every image of an array (..., H, W, C). (``n_t``, ``n_s``: the original course's counts.)"""
    flat = store.reshape(-1, *store.shape[-3:])
    lo, hi = flat.min(axis=(1, 2, 3), keepdims=True), flat.max(axis=(1, 2, 3), keepdims=True)
    return ((flat - lo) / np.maximum(hi - lo, 1e-8)).reshape(store.shape)


def _as_hwc(images) -> np.ndarray:
    """(N, C, H, W) tensor/array, (N, H, W, C) array, or one image -> float32 (N, H, W, C); uint8 / 255."""
    x = images.detach().float().cpu().numpy() if torch.is_tensor(images) else np.asarray(images)
    x = x[None] if x.ndim == 3 else x
    if x.ndim != 4:
        raise ValueError(f"Expected images of shape (N, C, H, W) or (N, H, W, C), got {x.shape}.")
    if x.shape[1] in (1, 3) and x.shape[-1] not in (1, 3):
        x = x.transpose(0, 2, 3, 1)
    return x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)


def sprite_grid(images, nrow: int | None = None, normalize: str = "clip", pad: int = 1) -> np.ndarray:
    """Tile sprites into one picture (rows, cols) -> an (H', W', 3) float array in [0, 1].

    images: (N, C, H, W) in [-1, 1] (tensor or array), or (N, H, W, C) uint8.
    normalize: "clip" maps [-1, 1] to [0, 1] (final samples), "minmax" stretches each image
    with ``unorm`` (noisy intermediates). ``nrow`` sprites per row (default: about sqrt(N)).
    """
    uint8_in = not torch.is_tensor(images) and np.asarray(images).dtype == np.uint8
    x = _as_hwc(images)
    if not uint8_in and normalize not in ("clip", "minmax"):
        raise ValueError(f"normalize must be 'clip' or 'minmax', got {normalize!r}.")
    if not uint8_in:
        x = norm_all(x) if normalize == "minmax" else np.clip((x + 1) / 2, 0, 1)
    n, h, w, ch = x.shape
    ncol = nrow or math.ceil(math.sqrt(n))
    grid = np.ones((math.ceil(n / ncol) * (h + pad) + pad, ncol * (w + pad) + pad, ch), dtype=np.float32)
    for i in range(n):
        y0, x0 = pad + (i // ncol) * (h + pad), pad + (i % ncol) * (w + pad)
        grid[y0 : y0 + h, x0 : x0 + w] = x[i]
    return grid


def show_images(imgs, nrow: int = 8, title: str | None = None, ax=None, normalize="clip", scale: float = 0.6):
    """Show sprites as a grid with matplotlib; returns the figure. imgs as in ``sprite_grid``."""
    import matplotlib.pyplot as plt

    grid = sprite_grid(imgs, nrow=nrow, normalize=normalize)
    if ax is None:
        h, w = grid.shape[:2]
        _, ax = plt.subplots(figsize=(max(2.0, w / 16 * scale), max(2.0, h / 16 * scale)))
    ax.imshow(grid, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax.figure


def save_grid(images, path, nrow: int = 8, normalize: str = "clip", upscale: int = 4) -> Path:
    """Write a PNG grid of sprites (nearest-neighbour upscaled ``upscale`` times)."""
    from PIL import Image

    img = Image.fromarray((sprite_grid(images, nrow=nrow, normalize=normalize) * 255).round().astype(np.uint8))
    img = img.resize((img.width * upscale, img.height * upscale), Image.NEAREST)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def plot_sample(x_gen_store, n_sample=None, nrows=4, save_dir=None, fn="animation", w=None, save=False, *,
                timesteps=None, fixed_range=False, width=3.0, interval=100, titles=None):  # fmt: skip
    """An animation of the denoising: one grid of sprites per kept frame.

    x_gen_store: (frames, N, C, H, W), the ``intermediate`` a sampler returns; ``n_sample`` sprites of
    it (default all) in ``nrows`` rows. Each frame is stretched per image with ``unorm`` so that noisy
    frames stay visible; ``fixed_range=True`` shows every frame on the one range [-1, 1] (clipped), so
    a loss of contrast shows as it is. ``timesteps`` (the sampler's third return value) labels each
    frame "t = 240"; ``titles`` replaces the labels. ``width``: inches per row of sprites. Returns a
    matplotlib FuncAnimation (in a notebook: ``HTML(ani.to_jshtml())``). With ``save`` it is also
    written to ``save_dir/{fn}.gif``, or ``{fn}_w{w}.gif`` for a label ``w`` (the original course's
    arguments, in its order).
    """
    import matplotlib.pyplot as plt
    from matplotlib.animation import FuncAnimation, PillowWriter

    store = np.asarray(x_gen_store)
    if store.ndim != 5 or store.shape[0] == 0:
        hint = "pass the intermediate a sampler returns (with save_rate set)"
        raise ValueError(f"plot_sample needs frames (frames, N, C, H, W), at least one, got {store.shape}: {hint}.")
    if timesteps is not None and len(timesteps) != len(store):
        raise ValueError(f"plot_sample got {len(store)} frames but {len(timesteps)} timesteps; pass the sampler's.")
    if titles is None and timesteps is not None:
        titles = [f"t = {t}" for t in timesteps]
    n_sample = n_sample or store.shape[1]
    ncols = math.ceil(n_sample / nrows)
    grids = [sprite_grid(f, nrow=ncols, normalize="clip" if fixed_range else "minmax") for f in store[:, :n_sample]]
    aspect = grids[0].shape[0] / grids[0].shape[1]
    fig, ax = plt.subplots(figsize=(width * ncols / nrows + 0.5, width * aspect * ncols / nrows + 0.5))
    ax.set_axis_off()
    im = ax.imshow(grids[0], interpolation="nearest")
    title = ax.set_title(titles[0] if titles else "")

    def update(i):
        im.set_data(grids[i])
        if titles:
            title.set_text(titles[i])
        return (im, title)

    ani = FuncAnimation(fig, update, frames=len(grids), interval=interval, blit=False, repeat=False)
    plt.close(fig)
    if save:
        save_dir = Path(save_dir) if save_dir is not None else Path(".")
        save_dir.mkdir(parents=True, exist_ok=True)
        name = f"{fn}.gif" if w is None else f"{fn}_w{w}.gif"
        ani.save(save_dir / name, dpi=80, writer=PillowWriter(fps=max(1, 1000 // interval)))
    return ani


# =============================================================================
# 8. Explorers: the functions behind the notebooks' widgets
# =============================================================================
#
# Each draws one picture from its arguments and returns a matplotlib Figure made without pyplot:
# nothing shows until a notebook displays it (or an ipywidgets ``interact`` does), and a test can
# call it and count its axes.


def _explorer_figure(width: float, height: float):
    """A Figure outside pyplot's registry: shown only when displayed, freed when dropped."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _check_timestep(t, T: int) -> int:
    number = isinstance(t, (int, np.integer, float, np.floating)) and not isinstance(t, bool)
    if not number or int(t) != t or not 0 <= t <= T:
        raise ValueError(f"t must be an integer timestep from 0 (the clean sprite) to {T} (pure noise), got {t!r}.")
    return int(t)


def _context_vector(weights, n_cfeat: int) -> tuple[torch.Tensor, str]:
    """A context mix, a sequence or a {class name: weight} dict -> (an (n_cfeat,) tensor, 'hero 1 + food 0.6')."""
    names = list(CLASSES) if n_cfeat == len(CLASSES) else [f"c{i}" for i in range(n_cfeat)]
    if isinstance(weights, dict):
        unknown = [k for k in weights if k not in names]
        if unknown:
            raise ValueError(f"Unknown context class(es) {unknown}; the classes are {names}.")
        weights = [float(weights.get(name, 0.0)) for name in names]
    c = torch.as_tensor(np.asarray(weights, dtype=np.float32))
    if c.shape != (n_cfeat,):
        raise ValueError(f"A context mix needs {n_cfeat} weights (one per class), got shape {tuple(c.shape)}.")
    if not torch.isfinite(c).all():
        raise ValueError(f"Context weights must be finite numbers, got {c.tolist()}.")
    mix = " + ".join(f"{name} {w:g}" for name, w in zip(names, c.tolist(), strict=True) if w != 0)
    return c, mix or "no context"


def sprite_rows(rows, nrow: int | None = None, title: str | None = None, size: float = 0.6, columns: int = 1):
    """Sprites in labelled rows (one row per epoch, class, mix, step count...): a Figure, one axis per row.

    rows: a dict {label: images} or a list of (label, images) pairs, images (N, C, H, W) in [-1, 1]
    as for ``show_images``. ``nrow`` sprites per line (default: each row on one line); ``size``: inches
    per sprite; ``title`` goes above all rows; ``columns`` > 1 lays the rows out side by side.
    """
    items = list(rows.items()) if isinstance(rows, dict) else list(rows)
    if not items:
        raise ValueError("sprite_rows needs at least one (label, images) row.")
    columns = max(1, min(int(columns), len(items)))
    widest = max(len(x) for _, x in items)
    ncol = min(nrow or widest, widest)
    lines = max(math.ceil(len(x) / ncol) for _, x in items)
    panels = math.ceil(len(items) / columns)
    height = (size * lines + 0.45) * panels + (0.3 if title else 0.0)
    text = max(len(str(label)) for label, _ in items)
    width = max(3.0 * columns, (size * ncol + 0.4) * columns, 0.08 * text * columns, 0.08 * len(title or ""))
    fig = _explorer_figure(width, height)  # wide enough for the titles
    axes = fig.subplots(panels, columns, squeeze=False).ravel()
    for ax, (label, x) in zip(axes, items, strict=False):
        show_images(x, nrow=ncol, ax=ax, title=str(label))
        ax.title.set_fontsize(10)
    for ax in axes[len(items) :]:
        ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def show_forward_process(image, schedule: DDPMSchedule, t: int, noise=None):
    """Lesson 1's explorer: one sprite noised to step t, ``x_t = sqrt(ab_t) x_0 + sqrt(1 - ab_t) noise``.

    image: one sprite (3, H, W) or (1, 3, H, W) in [-1, 1]; t: an integer in 0..T; noise: shaped like
    the image (default: one fixed draw, seed 0, so that moving t shows the same noise growing).
    Returns a Figure with three axes: x_0, x_t (``schedule.perturb_input``, clipped to [-1, 1]) and
    the curves ab_t and 1 - ab_t over t with a marker at t.
    """
    x0 = torch.as_tensor(image).detach().float().cpu()
    x0 = x0[None] if x0.dim() == 3 else x0
    if x0.dim() != 4 or x0.shape[0] != 1:
        raise ValueError(f"show_forward_process takes one sprite (3, H, W) or (1, 3, H, W), got {tuple(x0.shape)}.")
    t = _check_timestep(t, schedule.T)
    if noise is None:
        noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    noise = torch.as_tensor(noise).detach().float().cpu()
    if noise.numel() != x0.numel():
        raise ValueError(f"noise must be shaped like the sprite {tuple(x0.shape[1:])}, got {tuple(noise.shape)}.")
    x_t = schedule.perturb_input(x0, torch.tensor([t]), noise.reshape(x0.shape))
    ab = schedule.ab_t.detach().cpu().numpy()

    fig = _explorer_figure(9.0, 3.0)
    ax0, ax1, ax2 = fig.subplots(1, 3, width_ratios=[1, 1, 2.2])
    for ax, x, title in ((ax0, x0, "$x_0$ (clean)"), (ax1, x_t, f"$x_{{{t}}}$ (noised)")):
        ax.imshow(sprite_grid(x, nrow=1, normalize="clip", pad=0), interpolation="nearest")
        ax.set_title(title)
        ax.set_axis_off()
    steps = np.arange(len(ab))
    ax2.plot(steps, ab, label=r"$\bar\alpha_t$: share of the sprite")
    ax2.plot(steps, 1 - ab, label=r"$1-\bar\alpha_t$: share of the noise")
    ax2.axvline(t, color="0.6", lw=1)
    ax2.plot([t], [ab[t]], "o", color="C0")
    ax2.set(xlim=(0, schedule.T), ylim=(-0.03, 1.03), xlabel="timestep t")
    signal, spread = math.sqrt(ab[t]), math.sqrt(1 - ab[t])
    title = rf"t = {t}:  $\sqrt{{\bar\alpha_t}}$ = {signal:.3f},  $\sqrt{{1-\bar\alpha_t}}$ = {spread:.3f}"
    ax2.set_title(title, fontsize=10)
    ax2.legend(loc="center right", fontsize=8)
    return fig


def context_grid(model, schedule, weights, guide_w=0.0, n_sample=16, steps=25, seed=0, nrow=8, progress=False):
    """Lesson 3's explorer: a grid of DDIM samples for one context mix and guidance weight.

    weights: one weight per class, a sequence of n_cfeat numbers or a dict {class name: weight}
    (missing classes are 0), e.g. {"hero": 1, "food": 0.6}; all zeros means no context. guide_w: the
    classifier-free guidance weight w >= 0 in ``eps = (1 + w) eps(x, c) - w eps(x, 0)``. The starting
    noise comes from ``seed``, so the same seed with another mix shows the same sprites changing.
    Returns a Figure with one axis holding the grid (``nrow`` sprites per row).
    """
    c, mix = _context_vector(weights, model.n_cfeat)
    gen = torch.Generator().manual_seed(seed)
    kw = dict(context=c, guide_w=guide_w, generator=gen, save_rate=None, progress=progress)
    x = sample_ddim(model, schedule, n_sample, steps, **kw)[0]
    ncol = min(nrow, n_sample)
    fig = _explorer_figure(max(3.0, 0.6 * ncol + 0.4), 0.6 * math.ceil(n_sample / ncol) + 0.6)
    title = f"{mix}  ·  guidance w = {guide_w:g}  ·  DDIM {steps} steps"
    show_images(x, nrow=ncol, ax=fig.add_subplot(), title=title)
    return fig


def compare_steps(model, schedule, steps, x_T, context=None, reference=None, *, guide_w=0.0,
                  reference_label="DDPM, 500 steps", nrow=None, progress=False):  # fmt: skip
    """Lesson 4's explorer: DDIM and DPM-Solver++ with ``steps`` steps from the same noise x_T.

    x_T: (N, C, H, W) starting noise; context: None, one (n_cfeat,) mix or (N, n_cfeat). reference:
    optional (N, C, H, W) sprites from the same x_T (the lesson passes its DDPM-500 samples), the
    top row, under ``reference_label``. Returns a Figure with one axis per row: the reference (if
    given), DDIM, DPM-Solver++(2M). The DPM row's title gives the mean absolute pixel difference to
    the DDIM row: both solve the same deterministic equation, so the gap shrinks as the steps grow.
    """
    schedule.step_sequence(steps)  # ValueError unless 1 <= steps <= T
    if not torch.is_tensor(x_T) or x_T.dim() != 4:
        raise ValueError(f"x_T must be a tensor of starting noise (N, C, H, W), got {getattr(x_T, 'shape', x_T)!r}.")
    if reference is not None and tuple(reference.shape) != tuple(x_T.shape):
        raise ValueError(f"reference must be shaped like x_T, {tuple(x_T.shape)}; got {tuple(reference.shape)}.")
    kw = dict(context=context, save_rate=None, guide_w=guide_w, x_T=x_T, progress=progress)
    ddim = sample_ddim(model, schedule, x_T.shape[0], steps, **kw)[0]
    dpm = sample_dpm_solver(model, schedule, x_T.shape[0], steps, **kw)[0]
    gap = (ddim.clamp(-1, 1) - dpm.clamp(-1, 1)).abs().mean().item()
    rows = [(reference_label, reference)] if reference is not None else []
    n_steps = f"{steps} step" + ("s" if steps > 1 else "")
    rows += [(f"DDIM, {n_steps}", ddim), (f"DPM-Solver++(2M), {n_steps}  (mean |DPM - DDIM| = {gap:.3f})", dpm)]
    return sprite_rows(rows, nrow=nrow)


def loss_curve(steps, losses, *, total_steps: int | None = None, smooth: int = 1, title: str = "training loss"):
    """Lesson 2's loss plot (live during a run, or a whole run's loss_log.csv): a Figure, one axis.

    steps, losses: equal-length sequences. ``smooth`` > 1 also draws a moving average over that many
    points (the raw curve stays, faint). ``total_steps`` fixes the x range, so a live curve grows
    into a fixed frame. The loss axis is logarithmic.
    """
    steps, losses = np.asarray(steps, dtype=float), np.asarray(losses, dtype=float)
    if steps.shape != losses.shape or steps.ndim != 1:
        raise ValueError(f"steps and losses must be 1-D and of one length, got {steps.shape} and {losses.shape}.")
    fig = _explorer_figure(6.0, 3.0)
    ax = fig.add_subplot()
    ax.plot(steps, losses, color="C0", alpha=0.35 if smooth > 1 else 1.0, lw=1, label="loss per step")
    if smooth > 1 and len(losses) >= smooth:
        avg = np.convolve(losses, np.ones(smooth) / smooth, mode="valid")
        ax.plot(steps[smooth - 1 :], avg, color="C0", lw=2, label=f"average of {smooth}")
        ax.legend(fontsize=8)
    if total_steps:
        ax.set_xlim(0, total_steps)
    if len(losses) and np.all(losses > 0):
        ax.set_yscale("log")
    ax.set(xlabel="training step", ylabel="MSE loss")
    ax.set_title(title + (f" (last {losses[-1]:.4f})" if len(losses) else ""))
    ax.grid(alpha=0.3)
    return fig
