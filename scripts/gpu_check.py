#!/usr/bin/env python
"""`make gpu-check`: try the course on a CUDA GPU and print one report to paste into an issue.

The course's compiled path (torch.compile, CUDA graphs) has not been measured on a GPU by the
project, so the notebooks run eagerly unless COURSE_FAST=1. On a CUDA machine this script runs:

1. the four lessons in quick mode, eager and then with COURSE_FAST=1 (scripts/run_course.py --quick);
2. the benchmark's speed table (scripts/benchmark.py), which times the samplers eager, in
   channels_last and compiled-and-frozen side by side;
3. a forced compile failure, which must fall back to eager with one warning and the same samples.

It writes everything under --out (default runs/gpu-check/) and prints the report. On a machine
without CUDA it says so and exits 0.

    python scripts/gpu_check.py                  # what `make gpu-check` runs
    python scripts/gpu_check.py --skip-lessons   # only the benchmark and the fallback
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from speed import speed_up  # noqa: E402

import diffusion_utilities as du  # noqa: E402


def run(cmd: list[str], env_extra: dict | None = None) -> tuple[int, float, str]:
    """Run a command from the repository root: (exit status, seconds, the last lines of its output)."""
    import os

    env = {**os.environ, **(env_extra or {})}
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-25:])
    return done.returncode, time.perf_counter() - start, tail


def forced_fallback(device: torch.device) -> str:
    """Compile with a backend that always fails: the model must run eagerly, warn once, draw the same sprites."""

    def failing_backend(graph_module, example_inputs):
        raise RuntimeError("forced failure (gpu_check)")

    model = du.load_model(du.WEIGHTS_DIR / "context_model_trained.pth", device=device)
    x_T = torch.randn(8, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    eager = du.sample_ddim(model, du.DDPMSchedule(device=device), 8, 10, x_T=x_T, progress=False)[0]
    fast = speed_up(model, compile=True, backend=failing_backend)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = du.sample_ddim(fast, du.DDPMSchedule(device=device), 8, 10, x_T=x_T, progress=False)[0]
    n_warn = sum(issubclass(w.category, RuntimeWarning) for w in caught)
    gap = (again - eager).abs().max().item()
    ok = n_warn == 1 and gap < 1e-4
    return f"{'ok' if ok else 'FAILED'}: {n_warn} warning(s), largest difference to eager {gap:.2e}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(ROOT / "runs" / "gpu-check"), help="folder for its files (runs/gpu-check/)")
    p.add_argument("--skip-lessons", action="store_true", help="do not run the four lessons")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu-check: no CUDA device here (torch.cuda.is_available() is False); nothing to check.")
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device("cuda")
    lines = [
        "## gpu-check report",
        f"- GPU: {torch.cuda.get_device_name(0)}; torch {torch.__version__}, CUDA {torch.version.cuda}; "
        f"{platform.machine()}, Python {platform.python_version()}",
    ]
    failed = False
    if not args.skip_lessons:
        for label, extra in (("eager", {}), ("COURSE_FAST=1", {"COURSE_FAST": "1"})):
            build = out / ("lessons-fast" if extra else "lessons-eager")
            code, secs, tail = run([sys.executable, "scripts/run_course.py", "--quick", "--out", str(build)], extra)
            failed |= code != 0
            lines.append(f"- lessons in quick mode, {label}: {'ok' if code == 0 else 'FAILED'} in {secs:.0f} s")
            if code != 0:
                lines.append("```\n" + tail + "\n```")
    bench_json = out / "benchmark.json"
    code, secs, tail = run([sys.executable, "scripts/benchmark.py", "--out", str(bench_json), "--repeat", "2"])
    failed |= code != 0
    lines.append(f"- benchmark (eager, channels_last, compiled): {'ok' if code == 0 else 'FAILED'} in {secs:.0f} s")
    if code == 0:
        import json

        lines.append("```\n" + json.loads(bench_json.read_text()).get("speed_table", "") + "\n```")
    else:
        lines.append("```\n" + tail + "\n```")
    fallback = forced_fallback(device)
    failed |= not fallback.startswith("ok")
    lines.append(f"- forced compile failure falls back to eager: {fallback}")
    report = "\n".join(lines)
    (out / "report.md").write_text(report + "\n")
    print(report)
    print(f"\n(also in {out / 'report.md'})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
