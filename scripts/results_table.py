#!/usr/bin/env python
"""README's "How good are the sprites" table, built from the evaluation files the project writes.

    python scripts/results_table.py                  # print the table
    python scripts/results_table.py --write README.md  # replace the table in README.md (only when asked)

Each row reads one JSON file written by scripts/evaluate.py or the quality sweep of
scripts/benchmark.py (docs/eval/): context accuracy, sprite FD (of the sprites drawn without
context, so it is left blank for guided rows, whose FD sprites are the unguided ones) and the
share of near-copies. tests/test_results_table.py fails when README.md's table differs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
EVAL_DIR = REPO_ROOT / "docs" / "eval"
BEGIN = "<!-- results table: written by scripts/results_table.py from docs/eval/ -->"
END = "<!-- end of results table -->"

#: (label, guided, candidate files: the first that exists is read). The DDPM-100 row was written
#: as sampler "ddpm-strided" before that became ("ddpm", 100); both names are read.
ROWS = [
    ("DDPM, 500 steps", False, ["sweep/ddpm500.json"]),
    ("DDPM on 100 of the steps", False, ["sweep/ddpm100.json", "sweep/ddpm-strided100.json"]),
    ("SDE-DPM-Solver++(2M), 15 steps", False, ["sweep/dpm-sde15.json"]),
    ("DPM-Solver++(2M), 15 steps", False, ["sweep/dpm15.json"]),
    ("DDIM, 25 steps", False, ["sweep/ddim25.json"]),
    ("DDIM, 25 steps", True, ["final_ddim25_guided2.json"]),
    ("DDIM, 25 steps", True, ["final_ddim25_guided4.json"]),
    ("DDIM, 25 steps, epoch-0 snapshot", False, ["snapshot0_ddim25.json"]),
    ("DDPM, 500 steps, epoch-0 snapshot", False, ["snapshot0_ddpm500.json"]),
]


def row_file(candidates: list[str]) -> Path:
    """The first of ``candidates`` (relative to docs/eval/) that exists."""
    for name in candidates:
        if (EVAL_DIR / name).exists():
            return EVAL_DIR / name
    raise FileNotFoundError(f"None of {', '.join(candidates)} in {EVAL_DIR}: rerun the evaluation that writes it.")


def evaluations() -> list[tuple[str, bool, Path, dict]]:
    """(label, guided, file, evaluation) for every row of the table."""
    out = []
    for label, guided, candidates in ROWS:
        path = row_file(candidates)
        if path.stem.startswith("ddpm-strided"):  # DDIM with eta = 1: DDPM's posterior variance on each jump
            label += " (posterior variance)"
        out.append((label, guided, path, json.loads(path.read_text())))
    return out


def table() -> str:
    """The markdown table, one line per row, with a link to each row's file."""
    rows = evaluations()
    floor = rows[0][3]["fd"]["real_floor"]
    lines = [
        f"| sampler | guidance | context accuracy | sprite FD (floor {floor:.2f}) | near-copies | file |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for label, guided, path, r in rows:
        fd = "" if guided or not r["fd"] else f"{r['fd']['generated']:.2f}"
        rel = path.relative_to(REPO_ROOT).as_posix()
        cells = [
            label,
            f"{r['guide_w']:g}",
            f"{100 * r['context_accuracy']['overall']:.1f}%",
            fd,
            f"{100 * r['novelty']['share']:.1f}%",
            f"[{path.stem}]({rel})",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def readme_table(readme: str) -> str:
    """The table between the markers in README's text."""
    if BEGIN not in readme or END not in readme:
        raise ValueError(f"README.md lacks the markers {BEGIN!r} ... {END!r} around its results table.")
    return readme.split(BEGIN, 1)[1].split(END, 1)[0].strip()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--write", metavar="README", default=None, help="replace the table between the markers there")
    args = p.parse_args(argv)
    try:
        text = table()
        if args.write:
            path = Path(args.write)
            readme = path.read_text()
            old = readme_table(readme)
            path.write_text(readme.replace(old, text, 1))
            print(f"{'updated' if old != text else 'unchanged'}: {path}")
        else:
            print(text)
    except (FileNotFoundError, ValueError) as err:
        print(f"results_table.py: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
