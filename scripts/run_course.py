#!/usr/bin/env python
"""Run the whole course: execute the notebooks headlessly and export them as pages (the engine of `make course`).

Every notebooks/L*.ipynb (the four lessons, and the exercise notebooks L1_Exercises ... when they are
there) runs top to bottom in a fresh python3 kernel, at full size with the shipped weights (a training
cell does a short live run, then loads the shipped snapshots). Written to --out (default build/):

    index.html                   the course's front page: the lessons, their key animations, this
                                 run's table (seconds per notebook, device), links to everything
    L1_Sampling.ipynb ...        the executed notebooks, with all outputs
    L1_Sampling.html ...         a page per notebook that works with no network: math typeset as
                                 MathML, animations in plain JavaScript (scripts/course_pages.py)
    L1_Sampling/ ...             the GIFs and PNG grids each notebook saved (the notebooks write
                                 there themselves: COURSE_OUT is set to --out)
    run.json                     each notebook's last run (seconds, status, device, when it finished),
                                 for the index

It ends with a table (notebook, seconds, status, files written) and the page to open, and exits with
status 1 if any cell failed (naming the cell and its error) or a page could not be made offline.
Examples:

    python scripts/run_course.py                      # everything, full size, into build/
    python scripts/run_course.py --quick --out /tmp/c # COURSE_QUICK=1: small, for CI and checks
    python scripts/run_course.py --only L1 L4         # some of them (the index keeps earlier runs)
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import course_index
import course_pages

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = ROOT / "notebooks"
LESSONS = course_index.LESSONS
NEEDED_WEIGHTS = ("model_trained.pth", "context_model_trained.pth")
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="build", help="output folder (default build/, relative to the current folder)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="run with COURSE_QUICK=1: fewer sprites, a few training steps, fewer frames (as CI does)",
    )
    p.add_argument(
        "--only",
        nargs="+",
        metavar="NAME",
        help="run only the notebooks whose names start with these (e.g. L1 L3, L2_Exercises)",
    )
    p.add_argument("--timeout", type=int, default=1800, help="seconds one cell may run before it fails (default 1800)")
    p.add_argument("--kernel", default="python3", help="Jupyter kernel to run them in (default python3: this python)")
    return p.parse_args(argv)


@dataclasses.dataclass
class Outcome:
    name: str
    seconds: float = 0.0
    cells: int = 0
    error: str | None = None
    files: list = dataclasses.field(default_factory=list)
    stopped: bool = False  # the kernel was shut down from outside (Ctrl-C, SIGTERM), not by a failing cell
    finished: str | None = None  # when this notebook's run ended (ISO time, to the second)

    @property
    def status(self) -> str:
        return "ok" if self.error is None else ("STOPPED" if self.stopped else "FAILED")


def preflight() -> str | None:
    """What is missing before any notebook can run (sprites, weights, notebooks), or None."""
    sys.path.insert(0, str(ROOT))
    try:
        import diffusion_utilities as du

        du.sprite_files()
    except FileNotFoundError as err:
        return str(err)
    missing = [name for name in NEEDED_WEIGHTS if not (ROOT / "weights" / name).exists()]
    if missing:
        return (
            f"Missing trained weights in {ROOT / 'weights'}: {', '.join(missing)}. Restore the shipped ones with "
            "`git checkout -- weights/` (or train your own: python scripts/train.py --help)."
        )
    absent = [n for n in LESSONS if not (NOTEBOOK_DIR / f"{n}.ipynb").exists()]
    if absent:
        return f"Missing notebooks in {NOTEBOOK_DIR}: {', '.join(absent)}."
    return None


def course_notebooks() -> list[str]:
    """The names of notebooks/L*.ipynb in course order: each lesson, then its exercise notebook."""
    names = [p.stem for p in NOTEBOOK_DIR.glob("L*.ipynb")]
    return sorted(names, key=lambda n: (n.split("_")[0], "Exercises" in n, n))


def sliced_get_msg(get_msg_once, slice_s: float = 1.0):
    """A channel's get_msg that waits in short slices instead of one long poll.

    With widgets on the page, one long poll of the kernel's shell channel sometimes never wakes up
    although the reply has arrived (nbclient issue 312; seen here: L1's slider cell hung with the kernel
    idle). Polling again every second picks the message up. Same contract: Empty after `timeout` s.
    """
    from queue import Empty

    async def get_msg(timeout: float | None = None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = slice_s if deadline is None else min(slice_s, max(0.0, deadline - time.monotonic()))
            try:
                return await get_msg_once(timeout=wait)
            except Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    raise

    return get_msg


def patient_client(nb, **kwargs):
    """An nbclient NotebookClient whose shell and iopub channels poll in slices (see sliced_get_msg)."""
    from nbclient import NotebookClient

    class PatientClient(NotebookClient):
        async def async_start_new_kernel_client(self):
            kc = await super().async_start_new_kernel_client()
            for channel in (kc.shell_channel, kc.iopub_channel):
                channel.get_msg = sliced_get_msg(channel.get_msg)
            return kc

    return PatientClient(nb, **kwargs)


def describe_failure(nb, name: str, err: Exception) -> tuple[str, bool]:
    """One readable paragraph (which cell failed, how it starts, the error) and whether the run was stopped."""
    code_index, running = 0, None
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        code_index += 1
        first = next((line.strip() for line in cell.source.splitlines() if line.strip()), "")
        where = f"code cell {code_index} (cell {index + 1} of the notebook), which starts `{first[:80]}`,"
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if errors:
            ename, evalue = errors[0].get("ename", "an error"), ANSI.sub("", errors[0].get("evalue", "")).strip()
            if ename == "KeyboardInterrupt":
                return f"{name}: {where} was interrupted: this run received Ctrl-C or SIGTERM.", True
            return f"{name}: {where} raised {ename}: {evalue}", False
        if running is None and cell.get("execution_count") is None:
            running = where
    message = ANSI.sub("", str(err)).strip().splitlines()
    detail = f"{type(err).__name__}: {message[-1] if message else ''}".rstrip(": ")
    if isinstance(err, AssertionError):
        # nbclient shuts the kernel down when this process gets SIGINT or SIGTERM, and then trips on its own asserts
        return (
            f"{name}: the kernel was shut down while {running or 'a cell'} was running: this run received "
            f"Ctrl-C or SIGTERM (nbclient: {detail}).",
            True,
        )
    return f"{name}: {running or 'a cell'} did not finish: {detail}", False


def run_notebook(name: str, out: Path, timeout: int, kernel: str) -> Outcome:
    import nbformat
    from tqdm import tqdm

    nb = nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=4)
    outcome = Outcome(name, cells=sum(c.cell_type == "code" for c in nb.cells))
    bar = tqdm(total=outcome.cells, desc=f"{name:<16}", unit="cell", dynamic_ncols=True)
    client = patient_client(
        nb,
        timeout=timeout,
        kernel_name=kernel,
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},
        on_cell_executed=lambda **_: bar.update(1),
    )
    start = time.perf_counter()
    began = time.time() - 1
    # The kernel's own stderr (start-up warnings, a crash message) goes to a log, not over the progress bar.
    with tempfile.TemporaryFile("w+") as kernel_log:
        try:
            client.execute(stderr=kernel_log)
        except Exception as err:  # a failing cell (CellExecutionError), a timeout or a dead kernel
            outcome.error, outcome.stopped = describe_failure(nb, name, err)
            kernel_log.seek(0)
            tail = [line for line in kernel_log.read().splitlines() if "without encryption" not in line][-5:]
            if tail:
                outcome.error += "\nThe kernel's last words: " + " | ".join(tail)
        finally:
            outcome.seconds = time.perf_counter() - start
            outcome.finished = datetime.datetime.now().isoformat(timespec="seconds")
            bar.close()
    executed = out / f"{name}.ipynb"
    nbformat.write(nb, executed)
    try:
        page = course_pages.export_page(nb, name)
    except ValueError as err:  # a formula that cannot be typeset, or something the page would fetch
        page = f"<!DOCTYPE html><title>{name}</title><p>This page could not be made: {err}</p>"
        outcome.error = (outcome.error + "\n" if outcome.error else "") + f"{name}.html: {err}"
    (out / f"{name}.html").write_text(page, encoding="utf-8")
    saved = sorted(p for p in (out / name).glob("**/*") if p.is_file() and p.stat().st_mtime >= began)
    outcome.files = [executed, out / f"{name}.html", *saved]
    return outcome


def summarise(files: list[Path]) -> str:
    """'.ipynb, .html, 2 gif, 6 png'."""
    kinds: dict[str, int] = {}
    for f in files:
        kinds[f.suffix.lstrip(".")] = kinds.get(f.suffix.lstrip("."), 0) + 1
    return ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))


def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.out).resolve()
    available = course_notebooks()
    names = [n for n in available if not args.only or any(n.startswith(o) for o in args.only)]
    if not names:
        print(f"--only {' '.join(args.only)} matches none of {', '.join(available)}.", file=sys.stderr)
        return 2
    problem = preflight()
    if problem:
        print(f"Cannot run the course: {problem}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    os.environ["COURSE_OUT"] = str(out)
    if args.quick:
        os.environ["COURSE_QUICK"] = "1"
    else:
        os.environ.pop("COURSE_QUICK", None)
    mode = "quick mode (COURSE_QUICK=1)" if args.quick else "full size"
    print(f"Running {len(names)} notebook(s), {mode}, into {out}")

    outcomes = []
    for name in names:
        outcomes.append(run_notebook(name, out, args.timeout, args.kernel))
        if outcomes[-1].stopped:
            print("Stopped from outside: the remaining notebooks are not run.", file=sys.stderr)
            break

    width = max(len(o.name) for o in outcomes) + 6
    print(f"\n{'notebook':<{width}} {'seconds':>8}  {'status':<7} files written")
    for o in outcomes:
        print(f"{o.name + '.ipynb':<{width}} {o.seconds:8.1f}  {o.status:<7} {summarise(o.files)}")
    print(f"{'total':<{width}} {sum(o.seconds for o in outcomes):8.1f}")
    print(f"\nFiles in {out}:")
    for o in outcomes:
        for f in o.files:
            print(f"  {f.relative_to(out)}  ({f.stat().st_size / 1024:,.0f} KiB)")
    failed = [o for o in outcomes if o.error]
    for o in failed:
        print(f"\n{o.status}  {o.error}\nThe executed notebook (with any traceback) is {out / (o.name + '.ipynb')}.")
    if len(outcomes) < len(names):
        print(f"\nNot run: {', '.join(names[len(outcomes) :])}.")
    index = course_index.write_index(out, outcomes, course_index.describe_device(), args.quick)
    print(f"\nOpen the course: {index}")
    return 1 if failed or len(outcomes) < len(names) else 0


if __name__ == "__main__":
    sys.exit(main())
