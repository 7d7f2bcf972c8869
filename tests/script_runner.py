"""Run several command-line scripts in one Python process, as the tests' stand-in for one process each.

    python tests/script_runner.py JOBS.json RESULTS.json

JOBS.json: a list of {"script": "sample.py", "args": [...], "cwd": null or a folder}. Each job runs
scripts/<script> as ``__main__`` with that argv (and in that folder), its stdout and stderr captured,
its exit status taken from SystemExit; an exception that escapes the script is written to its stderr
as the traceback Python would print, with status 1. RESULTS.json: one {"returncode", "stdout",
"stderr"} per job, in order. Importing torch once instead of once per job is the point.
"""

import contextlib
import io
import json
import os
import runpy
import sys
import traceback
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def run_job(script: str, args: list, cwd: str | None) -> dict:
    out, err, code = io.StringIO(), io.StringIO(), 0
    here, argv = os.getcwd(), sys.argv
    sys.argv = [str(SCRIPTS / script), *args]
    try:
        if cwd:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                runpy.run_path(str(SCRIPTS / script), run_name="__main__")
            except SystemExit as exit_:
                if isinstance(exit_.code, str):
                    print(exit_.code, file=sys.stderr)
                code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
            except BaseException:
                traceback.print_exc()
                code = 1
    finally:
        os.chdir(here)
        sys.argv = argv
    return {"returncode": code, "stdout": out.getvalue(), "stderr": err.getvalue()}


if __name__ == "__main__":
    sys.path[0] = str(SCRIPTS)  # what `python scripts/x.py` puts first on the path
    jobs = json.loads(Path(sys.argv[1]).read_text())
    results = [run_job(j["script"], j.get("args", []), j.get("cwd")) for j in jobs]
    Path(sys.argv[2]).write_text(json.dumps(results))
