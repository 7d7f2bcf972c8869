#!/usr/bin/env python
"""Measure the course's speed, side by side with the original course's habits, on this machine.

One run prints a table and writes JSON (and, with --quality, a plot) into runs/benchmark/; the committed
copies in docs/ are rewritten only when asked (--out docs/benchmark.json --plot docs/quality_vs_steps.png):

1. Sampling 32 sprites, DDPM-500 and DDIM-25: loops written the way the original course writes
   them (a print every step, the time tensor rebuilt and moved to the device every step, every
   intermediate copied to the host) against this module's sample_ddpm / sample_ddim.
2. Training throughput: the original input pipeline (a DataLoader over a Dataset that applies
   the torchvision transform to each image, one worker) against ours (the whole set converted
   once, batches taken by indexing), images/s for the full training step; and the resumable
   training run of scripts/train.py in one process against two data-parallel processes (gloo on
   this CPU, as under torchrun), images/s for the same global batch.
3. Where the time goes: the model's forward time alone x the number of steps against the
   sampler's wall time (loop overhead), and the model's achieved GFLOP/s against this machine's
   dense matmul / convolution GFLOP/s measured in the same run (fraction of peak).
4. --quality: DDPM at 500 and 100 steps, DDIM at 10, 25, 50, 100, DPM-Solver++ (ODE and SDE) at 10, 15, 20:
   wall time and the figures of scripts/evaluate.py (context accuracy, sprite FD).

The course-style loops below reproduce the original's habits for comparison only; they use
the module's own step functions, so both sides compute the same thing.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import itertools
import json
import os
import platform
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import evaluation
import numpy as np
import torch
import training_run
from distributed import Processes
from provenance import repo_path
from speed import speed_up

import diffusion_utilities as du


def timed(fn, repeat=1):
    """Best wall time of ``repeat`` calls (seconds) and the last result."""
    best, out = float("inf"), None
    for _ in range(repeat):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best, out


# -- the original course's habits, reproduced for comparison -----------------------------------
@torch.no_grad()
def course_style_ddpm(model, schedule, n_sample, save_rate=20):
    device = next(model.parameters()).device
    samples = torch.randn(n_sample, 3, model.h, model.h).to(device)
    intermediate = []
    for i in range(schedule.T, 0, -1):
        print(f"sampling timestep {i:3d}", end="\r")
        t = torch.tensor([i / schedule.T])[:, None, None, None].to(device)
        z = torch.randn_like(samples) if i > 1 else 0
        eps = model(samples, t.expand(n_sample, 1, 1, 1).contiguous())
        samples = schedule.denoise_add_noise(samples, i, eps, z)
        if i % save_rate == 0 or i == schedule.T or i < 8:
            intermediate.append(samples.detach().cpu().numpy())
    return samples, np.stack(intermediate)


@torch.no_grad()
def course_style_ddim(model, schedule, n_sample, n=25):
    device = next(model.parameters()).device
    samples = torch.randn(n_sample, 3, model.h, model.h).to(device)
    intermediate = []
    step = schedule.T // n
    for i in range(schedule.T, 0, -step):
        print(f"sampling timestep {i:3d}", end="\r")
        t = torch.tensor([i / schedule.T])[:, None, None, None].to(device)
        eps = model(samples, t.expand(n_sample, 1, 1, 1).contiguous())
        samples = schedule.denoise_ddim(samples, i, i - step, eps)
        intermediate.append(samples.detach().cpu().numpy())
    return samples, np.stack(intermediate)


FORWARDS_PER_ROUND = 100


def _noise_like_input(model, n_sample):
    """A batch of starting noise (CPU) in the model's memory layout, as the samplers hand it to the model."""
    x = torch.randn(n_sample, model.in_channels, model.h, model.h)
    if next(model.parameters()).is_contiguous(memory_format=torch.channels_last):
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def _forward_block(model, n_sample, count=FORWARDS_PER_ROUND):
    """``count`` forward passes alone, on rotating inputs and timesteps as a sampler feeds them
    (in the model's memory layout, as the samplers give it)."""
    with torch.inference_mode():  # inference tensors and the call as in the samplers: a compiled model guards on both
        xs = [_noise_like_input(model, n_sample) for _ in range(8)]
        ts = [torch.full((n_sample,), k / 8) for k in range(1, 9)]

    def run():
        with torch.inference_mode():
            for k in range(count):
                model(xs[k % 8], ts[k % 8], None)  # as the samplers call it

    return run


PEAK_CONV = (64, 256, 16, 3)  # (batch, channels, size, kernel): the densest kernel measured here (channels_last)
PEAK_REPS = 30  # about 1 s per round on the reference machine


def _conv_block(batch, ch, size, k, reps, layout=torch.channels_last):
    """``reps`` convolutions (k x k, ``ch`` channels in and out, padding k // 2) of a fixed shape in
    ``layout``: the peak kernel, timed in every round next to the model so a slow spell of the
    machine slows both. Returns (FLOPs of one call, the call)."""
    x = torch.randn(batch, ch, size, size).contiguous(memory_format=layout)
    w = torch.randn(ch, ch, k, k).contiguous(memory_format=layout)

    def run():
        with torch.inference_mode():
            for _ in range(reps):
                torch.nn.functional.conv2d(x, w, padding=k // 2)

    return 2 * batch * ch * ch * k * k * size * size * reps, run


OUR_STEPS = {"ddpm500": 500, "ddim25": 25, "dpm15": 15}
# our three versions of the model: (label, suffix of the breakdown's keys, tag of the loops)
VARIANTS = (("eager", "", "ours"), ("channels_last", "_nhwc", "nhwc"), ("fast", "_fast", "fast"))
SPEED_LOOPS = (("DDPM-500", "ddpm500"), ("DDIM-25", "ddim25"), ("DPM-Solver++-15", "dpm15"))


def _our_loops(model, schedule, n_sample, tag="ours"):
    """This module's three samplers as zero-argument calls, each with a freshly seeded generator."""
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    return {
        f"ddpm500_{tag}": lambda: du.sample_ddpm(model, schedule, n_sample, generator=g(), progress=False),
        f"ddim25_{tag}": lambda: du.sample_ddim(model, schedule, n_sample, 25, generator=g(), progress=False),
        f"dpm15_{tag}": lambda: du.sample_dpm_solver(model, schedule, n_sample, 15, generator=g(), progress=False),
    }


def bench_sampling(model, fast, schedule, n_sample, repeat, peak=PEAK_CONV, peak_reps=PEAK_REPS):
    """Seconds per sampling run (best of ``repeat``), the course-style and our loops interleaved.

    ``model`` as loaded (eager, the layout it was saved in) runs the course-style loops and ours;
    our loops also run on an eager channels_last copy ("nhwc", ``speed_up(model)``: what the
    scripts sample with on a CPU by default; the notebooks run the model as loaded) and on ``fast``, which is
    ``speed_up(model, freeze=True)`` (channels_last, compiled with frozen weights). Each round
    runs every loop once, in the same order, plus ``FORWARDS_PER_ROUND`` forward passes alone of
    each model and ``peak_reps`` of the peak convolution ``peak`` ("peak_conv"), so a slow spell
    of the machine (another process, the clock changing) hits all of them alike instead of
    whichever happened to run then.
    Returns (best per loop, every run per loop, seconds the first fast calls took, FLOPs of one
    "peak_conv" run).
    """
    model.eval()
    nhwc = speed_up(copy.deepcopy(model))
    peak_flop, peak_run = _conv_block(*peak, peak_reps)
    loops = {
        "peak_conv": peak_run,
        "ddpm500_course": lambda: course_style_ddpm(model, schedule, n_sample),
        "ddim25_course": lambda: course_style_ddim(model, schedule, n_sample),
    }
    for (_, suffix, tag), net in zip(VARIANTS, (model, nhwc, fast), strict=True):
        loops[f"forwards{suffix}"] = _forward_block(net, n_sample)
        loops |= _our_loops(net, schedule, n_sample, tag=tag)
    with torch.inference_mode():
        for net in (model, nhwc):  # warm-up
            net(_noise_like_input(net, n_sample), torch.rand(n_sample))
    compile_s = timed(loops["ddim25_fast"])[0]  # the first call compiles
    loops["forwards_fast"]()  # untimed warm-up (it must not compile again: same shapes and mode as the samplers)
    peak_run()  # untimed: oneDNN builds the kernel at its first call
    times = {name: [] for name in loops}
    sink = io.StringIO()
    for _ in range(repeat):
        for name, loop in loops.items():
            with contextlib.redirect_stdout(sink):
                times[name].append(timed(loop)[0])
    return {name: min(ts) for name, ts in times.items()}, times, compile_s, peak_flop


# -- training input pipelines -------------------------------------------------------------------
def bench_training(n_steps, batch_size, data_dir):
    sfile, lfile = du.sprite_files(data_dir)
    schedule = du.DDPMSchedule()
    results = {}

    def run(batches, layout):
        torch.manual_seed(0)
        model = du.course_model()
        optim = torch.optim.Adam(model.parameters(), lr=1e-3)
        model = layout(model)
        model.train()
        seen, start = 0, None
        for k, (x, c) in enumerate(batches):
            if k == 2:  # two warm-up steps
                start, seen = time.perf_counter(), 0
            loss = du.diffusion_loss(model, schedule, x, c)
            optim.zero_grad()
            loss.backward()
            optim.step()
            seen += x.shape[0]
            if k + 1 == n_steps + 2:
                break
        return seen / (time.perf_counter() - start)

    per_item = du.CustomDataset(sfile, lfile, transform=lambda im: du.transform(im))  # forces the per-image path
    loader = torch.utils.data.DataLoader(per_item, batch_size=batch_size, shuffle=True, num_workers=1)
    results["course_img_s"] = run(iter(loader), layout=lambda m: m)

    images, labels = du.CustomDataset(sfile, lfile).tensors()

    def ours():
        perm = torch.randperm(len(images))
        for k in range(len(images) // batch_size):
            idx = perm[k * batch_size : (k + 1) * batch_size]
            yield images[idx], labels[idx]

    results["ours_img_s"] = run(ours(), layout=speed_up)  # channels_last, as scripts/train.py trains
    return results


def _data_parallel_worker(rank, world, port, threads, n_steps, batch_size, data_dir, results):
    """One process of ``bench_data_parallel``: the training run with ``world`` processes, as torchrun starts it."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank))
    os.environ.update(WORLD_SIZE=str(world), LOCAL_WORLD_SIZE=str(world))
    torch.set_num_threads(threads)
    processes = Processes.from_env()
    processes.start(torch.device("cpu"))
    images, labels = du.CustomDataset(*du.sprite_files(data_dir)).tensors()
    config = training_run.TrainConfig(epochs=1, batch_size=batch_size, context=True)
    times = []
    training_run.run(
        config, images, labels, device="cpu", max_steps=n_steps + 2, progress=False, processes=processes,
        callback=lambda state: times.append(time.perf_counter()),
    )  # fmt: skip
    processes.stop()
    if rank == 0:  # two warm-up steps
        results.put(n_steps * batch_size / (times[-1] - times[1]))


def bench_data_parallel(n_steps, batch_size, data_dir, worlds=(1, 2)):
    """images/s of the training run (channels_last, the course model) in 1 and in 2 gloo processes; this
    process's torch threads are shared out among them."""
    context = torch.multiprocessing.get_context("spawn")
    results = {}
    for world in worlds:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        queue = context.SimpleQueue()
        args = (world, port, max(1, torch.get_num_threads() // world), n_steps, batch_size, data_dir, queue)
        torch.multiprocessing.start_processes(_data_parallel_worker, args, nprocs=world, start_method="spawn")
        results[f"{world}_process_img_s"] = queue.get()
    return results


# -- where the time goes ------------------------------------------------------------------------
def model_flops(model, n_sample):
    from torch.utils.flop_counter import FlopCounterMode

    x, t = torch.randn(n_sample, 3, model.h, model.h), torch.rand(n_sample)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x, t)
    return counter.get_total_flops()


DENSE_CONVS = ((16, 1024, 32, 1), (64, 256, 16, 3))  # (batch, channels, size, kernel)


def _conv_name(batch, ch, size, k):
    return f"conv{k}x{k} {ch}ch {size}x{size} b{batch}"


def dense_peak_gflops(sizes=(1024, 2048, 4096), convs=DENSE_CONVS, seconds=1.0):
    """This machine's practical fp32 peak: the best rate (GFLOP/s) of large dense kernels.

    Square matmuls of each size (torch's BLAS) and large convolutions (torch's oneDNN path,
    the one the model's convolutions take; on some CPUs only one of the two libraries uses the
    widest vector units), each convolution in both memory layouts (NCHW and channels_last). Each
    kernel is repeated for about ``seconds`` after one warm-up call. Returns the best rate and
    the rate per kernel.
    """
    kernels = {}
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        kernels[f"matmul {n}"] = (2 * n**3, lambda a=a, b=b: a @ b)
    for (batch, ch, size, k), layout in itertools.product(convs, (torch.contiguous_format, torch.channels_last)):
        name = _conv_name(batch, ch, size, k) + (" NHWC" if layout == torch.channels_last else "")
        kernels[name] = _conv_block(batch, ch, size, k, 1, layout)
    rates = {}
    with torch.inference_mode():
        for name, (flop, fn) in kernels.items():
            one = timed(fn)[0]
            reps = max(1, int(seconds / one))
            best = timed(lambda fn=fn, reps=reps: [fn() for _ in range(reps)], 3)[0]
            rates[name] = flop * reps / best / 1e9
    return max(rates.values()), rates


class _NullModel(torch.nn.Module):
    """Stands in for the U-Net with the same interface and next to no cost: it times the loop alone."""

    def __init__(self, model):
        super().__init__()
        self.in_channels, self.h, self.n_cfeat = model.in_channels, model.h, model.n_cfeat
        self.scale = torch.nn.Parameter(torch.tensor(0.1))

    def forward(self, x, t, c=None):
        return x * self.scale


def bench_breakdown(model, schedule, n_sample, best, runs, peak_flop, repeat=3):
    """Forward time alone, the loops' own cost, FLOP rate, and the dense peak, all in this run.

    The forward times (one per model of ``VARIANTS``) are the best of the rounds of
    ``bench_sampling`` (interleaved with the samplers); the FLOPs are counted once, on the eager
    model (the others do the same convolutions). Fraction of peak, per round and then the median over the
    rounds: the model's GFLOP/s (forward block alone, and inside DDPM-500 with the loop's own
    cost included) over the GFLOP/s of the peak convolution timed in the same round
    (``peak_flop`` FLOPs per run). ``dense_peak_gflops`` is measured once more after the rounds
    over every dense kernel (matmuls included) to show that the round's kernel is the fastest;
    the model is also given against the best BLAS matmul. The loop overhead is given two ways:
    ``1 - steps * forward / wall``, per round, median over rounds (what the sampler's wall time
    adds to its network calls), and the time of the same sampler driving ``_NullModel`` (its
    own arithmetic, noise draws and bookkeeping, measured directly).
    """
    flops = model_flops(model, n_sample)
    peak, per_kernel = dense_peak_gflops()
    matmul = max(v for k, v in per_kernel.items() if k.startswith("matmul"))
    out = {"model_gflop_per_forward": flops / 1e9, "dense_peak_gflops_s": peak, "dense_gflops_s_by_kernel": per_kernel}
    out["peak_conv_gflops_s"] = peak_flop / best["peak_conv"] / 1e9
    out["matmul_peak_gflops_s"] = matmul

    def median_fraction(key, forwards):  # per round: model FLOP rate / peak FLOP rate
        return float(
            np.median(
                [
                    (forwards * flops / wall) / (peak_flop / peak_s)
                    for wall, peak_s in zip(runs[key], runs["peak_conv"], strict=True)
                ]
            )
        )

    for _, suffix, tag in VARIANTS:
        per_forward = best[f"forwards{suffix}"] / FORWARDS_PER_ROUND
        out[f"forward{suffix}_ms"] = per_forward * 1e3
        out[f"model{suffix}_gflops_s"] = flops / per_forward / 1e9
        out[f"fraction{suffix}_of_peak"] = median_fraction(f"forwards{suffix}", FORWARDS_PER_ROUND)
        out[f"fraction{suffix}_of_matmul_peak"] = out[f"model{suffix}_gflops_s"] / matmul
        out[f"ddpm500_{tag}_fraction_of_peak"] = median_fraction(f"ddpm500_{tag}", OUR_STEPS["ddpm500"])
    null_loops = _our_loops(_NullModel(model), schedule, n_sample, tag="null")
    for sampler, steps in OUR_STEPS.items():
        for _, suffix, tag in VARIANTS:
            name = f"{sampler}_{tag}"
            per_round = [
                100 * (1 - steps * (fw / FORWARDS_PER_ROUND) / wall)
                for wall, fw in zip(runs[name], runs[f"forwards{suffix}"], strict=True)
            ]
            out[f"{name}_overhead_pct"] = float(np.median(per_round))
        out[f"{sampler}_loop_only_s"] = loop_only = timed(null_loops[f"{sampler}_null"], repeat)[0]
        out[f"{sampler}_loop_only_pct"] = 100 * loop_only / best[f"{sampler}_ours"]
    return out


# -- quality against cost -----------------------------------------------------------------------
QUALITY_SETTINGS = [("ddpm", 500), ("ddpm", 100), ("ddim", 10), ("ddim", 25), ("ddim", 50), ("ddim", 100)]
QUALITY_SETTINGS += [("dpm", 10), ("dpm", 15), ("dpm", 20), ("dpm-sde", 10), ("dpm-sde", 15), ("dpm-sde", 20)]


def bench_quality(weights, n_per_class, n_fd, progress, eval_dir=None, batch_size=250):
    """Every (sampler, steps) of QUALITY_SETTINGS through ``evaluation.evaluate`` (scripts/evaluation.py).

    The model runs as the scripts run it by default (``speed_up``: eager, channels_last).
    ``seconds_32`` is the wall time of one separate 32-sprite run (what a learner waits for);
    the evaluation itself samples in batches of ``batch_size``. With ``eval_dir`` each setting's full
    evaluation is also written there as ``<sampler><steps>.json`` and ``.md``.
    """
    model = speed_up(du.load_model(weights))
    weights = repo_path(weights)  # as written into the reports
    schedule = du.DDPMSchedule()
    rows = []
    for sampler, steps in QUALITY_SETTINGS:
        n = None if (sampler, steps) == ("ddpm", 500) else steps  # None: DDPM on all T steps
        res = evaluation.evaluate(
            model,
            schedule,
            sampler=sampler,
            steps=n,
            n_per_class=n_per_class,
            n_fd=n_fd,
            progress=progress,
            batch_size=batch_size,
        )
        res = {"weights": str(weights), **res}
        seconds_32 = timed(
            lambda n=n, sampler=sampler: evaluation.draw_sprites(
                model, schedule, 32, sampler=sampler, steps=n, batch_size=32, progress=False
            )
        )[0]
        rows.append(
            {
                "sampler": sampler,
                "steps": steps,
                "seconds_32": seconds_32,
                "context_accuracy": res["context_accuracy"]["overall"],
                "fd": res["fd"]["generated"] if res["fd"] else None,
                "fd_floor": res["fd"]["real_floor"] if res["fd"] else None,
                "fd_floor_new_drawings": res["fd"].get("new_drawings_floor") if res["fd"] else None,
                "evaluation": res,
            }
        )
        if eval_dir is not None:
            stem = Path(eval_dir) / f"{sampler}{steps}"
            stem.parent.mkdir(parents=True, exist_ok=True)
            stem.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n")
            stem.with_suffix(".md").write_text(
                evaluation.evaluation_markdown(res, f"{weights}, {sampler}-{steps}") + "\n"
            )
        if progress:
            print(
                f"  {sampler}-{steps}: accuracy {rows[-1]['context_accuracy']:.3f}, FD {rows[-1]['fd']:.2f}, "
                f"{seconds_32:.2f} s / 32 sprites",
                flush=True,
            )
    return rows


SAMPLER_LABELS = {
    "ddpm": "DDPM",
    "ddpm-strided": "DDPM, post. var.",  # DDPM on a subset of the steps with the posterior variance (older reports)
    "ddim": "DDIM",
    "dpm": "DPM-Solver++(2M)",
    "dpm-sde": "SDE-DPM-Solver++(2M)",
}


def plot_quality(rows, path):
    """Two panels against seconds per 32 sprites (log scale): context accuracy and sprite FD.

    Each point is labelled with its number of steps; the FD panel marks the floors: two random real sets
    (same drawings) and real sets of disjoint designs (new drawings), when the sprite set records designs.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for sampler in dict.fromkeys(r["sampler"] for r in rows):
        sel = [r for r in rows if r["sampler"] == sampler]
        secs = [r["seconds_32"] for r in sel]
        style = "s" if len(sel) == 1 else "o-"
        for ax, key in zip(axes, ["context_accuracy", "fd"], strict=True):
            ax.plot(secs, [r[key] for r in sel], style, label=SAMPLER_LABELS.get(sampler, sampler))
            for r, x in zip(sel, secs, strict=True):
                ax.annotate(str(r["steps"]), (x, r[key]), textcoords="offset points", xytext=(3, 3), fontsize=8)
    floors = [r["fd_floor"] for r in rows if r.get("fd_floor") is not None]
    if floors:
        axes[1].axhline(floors[0], color="grey", ls=":", label=f"floor, same drawings ({floors[0]:.2f})")
        axes[1].set_ylim(bottom=0)
    new_floors = [r["fd_floor_new_drawings"] for r in rows if r.get("fd_floor_new_drawings") is not None]
    if new_floors:
        label = f"floor, new drawings ({new_floors[0]:.2f})"
        axes[1].axhline(new_floors[0], color="grey", ls="--", label=label)
    labels = ["context accuracy, no guidance (higher is better)", "sprite FD (lower is better)"]
    for ax, ylabel in zip(axes, labels, strict=True):
        ax.set_xscale("log")
        ax.set_xlabel("seconds for 32 sprites (numbers: steps)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    axes[1].legend(fontsize=8)
    fig.suptitle("Quality against sampling cost", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


SPEED_KEYS = ("sampling_s", "sampling_s_all_runs", "training", "data_parallel", "breakdown", "speed_table")
QUALITY_KEYS = ("quality", "quality_table", "quality_date")


def speed_report(model, schedule, args, report) -> list[str]:
    """Sections 1-3 of the module docstring: fills ``report`` and returns the table's lines."""
    print(f"Sampling {args.n} sprites (the first fast call compiles) ...", flush=True)
    fast = speed_up(model, freeze=True)
    s, all_times, compile_s, peak_flop = bench_sampling(
        model, fast, schedule, args.n, args.repeat, peak=PEAK_CONV, peak_reps=PEAK_REPS
    )
    report["sampling_s"], report["sampling_s_all_runs"], report["fast_first_call_s"] = s, all_times, compile_s
    print("Training pipelines ...", flush=True)
    report["training"] = tr = bench_training(args.train_steps, 100, args.data)
    print("Data-parallel training (1 and 2 processes) ...", flush=True)
    report["data_parallel"] = dp = bench_data_parallel(args.train_steps, 100, args.data)
    print("Breakdown ...", flush=True)
    report["breakdown"] = br = bench_breakdown(model, schedule, args.n, s, all_times, peak_flop, args.repeat)

    def row(label, key):
        course = s.get(f"{key}_course")
        cells = [f"{course:.3f}" if course else ""] + [f"{s[f'{key}_{tag}']:.3f}" for _, _, tag in VARIANTS]
        cells += [f"{course / s[f'{key}_{tag}']:.2f}x" if course else "" for tag in ("nhwc", "fast")]
        return f"| {label}, {args.n} sprites (s) | " + " | ".join(cells) + " |"

    overhead = ", ".join(
        f"{label} " + " / ".join(f"{br[f'{key}_{tag}_overhead_pct']:.1f}%" for _, _, tag in VARIANTS)
        for label, key in SPEED_LOOPS
    )
    forwards = "; ".join(
        f"{name} {br[f'forward{sfx}_ms']:.2f} ms = {br[f'model{sfx}_gflops_s']:.0f} GFLOP/s = "
        f"{100 * br[f'fraction{sfx}_of_peak']:.0f}% ({100 * br[f'ddpm500_{tag}_fraction_of_peak']:.0f}%)"
        for name, sfx, tag in VARIANTS
    )
    of_matmul = ", ".join(f"{name} {100 * br[f'fraction{sfx}_of_matmul_peak']:.0f}%" for name, sfx, _ in VARIANTS)
    loops = ", ".join(
        f"{label} {br[f'{key}_loop_only_s'] * 1e3:.1f} ms = {br[f'{key}_loop_only_pct']:.1f}%"
        for label, key in SPEED_LOOPS
    )
    lines = [
        "| measurement | course style | ours (eager) | ours (channels_last) | ours (fast) | course / channels_last "
        "| course / fast |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        *(row(label, key) for label, key in SPEED_LOOPS),
        f"| training step, images/s | {tr['course_img_s']:.0f} | | {tr['ours_img_s']:.0f} | | "
        f"{tr['ours_img_s'] / tr['course_img_s']:.2f}x faster | |",
        "",
        "Ours (eager): the module's samplers on the model as loaded. Ours (channels_last): the same on "
        "`speed_up(model)`, eager in the channels_last layout, as the scripts sample on a CPU by default "
        "(the notebooks run the model as loaded, the eager column, unless COURSE_FAST=1). "
        "Ours (fast): the same on `speed_up(model, freeze=True)` (channels_last, compiled with "
        f"frozen weights; its first call took {compile_s:.1f} s). Training, ours: our input pipeline and "
        "`speed_up(model)` (channels_last), as `scripts/train.py` trains it.",
        f"DDIM-25 vs DDPM-500 (ours, eager): {s['ddpm500_ours'] / s['ddim25_ours']:.1f}x faster.",
        f"Data-parallel training (the run of `scripts/train.py`, global batch 100, gloo on this CPU, the "
        f"{torch.get_num_threads()} torch threads shared out): 1 process {dp['1_process_img_s']:.0f} images/s, "
        f"2 processes {dp['2_process_img_s']:.0f} images/s ({dp['2_process_img_s'] / dp['1_process_img_s']:.2f}x). "
        "On a multi-GPU machine, measure "
        "`torchrun --standalone --nproc_per_node=N scripts/train.py --max-steps 200 --no-progress --out runs/ddpN` "
        "for N = 1, 2, 4 (NCCL, one GPU each): images/s = 200 x 100 / wall_time_s of its run.json.",
        f"Model forward, batch {args.n}, {br['model_gflop_per_forward']:.3f} GFLOP; time, rate and share of the "
        f"peak alone (and inside DDPM-500, loop included): {forwards}. Peak: the {_conv_name(*PEAK_CONV)} NHWC "
        f"convolution timed in the same rounds, {br['peak_conv_gflops_s']:.0f} GFLOP/s in its best round (the "
        f"fastest dense kernel measured after the rounds: {br['dense_peak_gflops_s']:.0f}, against which the fast "
        f"forward's best round is {100 * br['model_fast_gflops_s'] / br['dense_peak_gflops_s']:.0f}%); shares "
        f"are the median of the rounds' ratios. Against the best BLAS matmul ({br['matmul_peak_gflops_s']:.0f} "
        f"GFLOP/s): {of_matmul}.",
        f"Sampler loop overhead, eager / channels_last / fast: {overhead} (wall time against the forward passes "
        "timed alone in the same rounds; median of the rounds).",
        f"The loops alone (a no-cost stand-in model): {loops} of the eager sampler's wall time.",
        "Dense kernels, GFLOP/s: "
        + ", ".join(f"{n}: {v:.0f}" for n, v in br["dense_gflops_s_by_kernel"].items())
        + "; runs (s): "
        + "; ".join(f"{k} " + "/".join(f"{v:.2f}" for v in vs) for k, vs in all_times.items())
        + ".",
    ]
    return lines


def quality_report(args, report) -> list[str]:
    """Section 4: the sweep, its plot, and the table's lines."""
    print("Quality sweep ...", flush=True)
    rows = bench_quality(
        args.weights, args.n_per_class, args.n_fd, progress=True, eval_dir=args.eval_dir, batch_size=args.batch_size
    )
    report["quality"] = rows
    plot_quality(rows, Path(args.plot))
    lines = [
        "| sampler | steps | s / 32 sprites | context accuracy | sprite FD |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['sampler']} | {r['steps']} | {r['seconds_32']:.2f} | {r['context_accuracy']:.3f} | {r['fd']:.2f} |"
        )
    if rows and rows[0].get("fd_floor") is not None:
        floors = (
            f"Sprite FD floors for {args.n_fd} sprites: same drawings {rows[0]['fd_floor']:.2f} (two random real sets)"
        )
        if rows[0].get("fd_floor_new_drawings") is not None:
            floors += f", new drawings {rows[0]['fd_floor_new_drawings']:.2f} (real sets of disjoint designs)"
        lines += ["", floors + "."]
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default=str(du.WEIGHTS_DIR / "context_model_trained.pth"))
    p.add_argument("--n", type=int, default=32, help="sprites per sampling run (default 32, like the course)")
    p.add_argument("--repeat", type=int, default=3, help="best of N interleaved sampling runs (default 3)")
    p.add_argument("--train-steps", type=int, default=20, help="timed training steps per pipeline (default 20)")
    p.add_argument("--quality", action="store_true", help="also run the quality-vs-steps sweep (slow)")
    p.add_argument("--n-per-class", type=int, default=100, help="quality sweep: sprites per class (default 100)")
    p.add_argument("--n-fd", type=int, default=1000, help="quality sweep: sprites for the FD (default 1000)")
    p.add_argument("--data", default=None, help="sprite folder (default data/)")
    p.add_argument(
        "--out",
        default=str(du.REPO_ROOT / "runs" / "benchmark" / "benchmark.json"),
        help="JSON output (default runs/benchmark/benchmark.json; the committed one is docs/benchmark.json)",
    )
    p.add_argument(
        "--plot",
        default=str(du.REPO_ROOT / "runs" / "benchmark" / "quality_vs_steps.png"),
        help="quality plot (default runs/benchmark/quality_vs_steps.png; committed: docs/quality_vs_steps.png)",
    )
    p.add_argument("--batch-size", type=int, default=250, help="quality sweep: sprites per sampling batch (250)")
    p.add_argument("--eval-dir", default=None, help="quality sweep: also write each evaluation here (JSON + md)")
    p.add_argument("--skip-speed", action="store_true", help="only the quality sweep (with --quality)")
    args = p.parse_args(argv)
    if args.skip_speed and not args.quality:
        p.error("--skip-speed leaves nothing to measure without --quality")
    try:
        model = du.load_model(args.weights)
    except (FileNotFoundError, ValueError) as err:
        print(f"benchmark.py: error: {err}", file=sys.stderr)
        return 2
    schedule = du.DDPMSchedule()
    report = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, {platform.processor()}".strip(", "),
        "torch": torch.__version__,
        "n_sample": args.n,
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    out = Path(args.out)
    # A run of one part keeps the other part's results from an earlier run in the same file.
    kept = json.loads(out.read_text()) if out.exists() else {}
    if args.skip_speed:
        report.update({k: v for k, v in kept.items() if k in SPEED_KEYS})
    else:
        report["speed_table"] = "\n".join(speed_report(model, schedule, args, report))
    if args.quality:
        report["quality_table"] = "\n".join(quality_report(args, report))
        report["quality_date"] = time.strftime("%Y-%m-%d %H:%M")
    else:
        report.update({k: v for k, v in kept.items() if k in QUALITY_KEYS})
    report["table"] = "\n\n".join(report[k] for k in ("speed_table", "quality_table") if k in report)
    print("\n" + report["table"])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
