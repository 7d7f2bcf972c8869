#!/usr/bin/env python
"""README's "How good are the sprites" table, built from the evaluation files the project writes.

    python scripts/results_table.py                  # print the table
    python scripts/results_table.py --write README.md  # replace the table in README.md (only when asked)

Each row reads one JSON file written by scripts/evaluate.py or the quality sweep of
scripts/benchmark.py (docs/eval/): context accuracy, sprite FD (of the sprites drawn without
context, so it is left blank for guided rows, whose FD sprites are the unguided ones) and the
share of near-copies. A second table, the yardstick (docs/eval/yardstick/: 2,000 class sprites and
2,000 free sprites, 95% intervals, both FD floors), reads the files written by the commands in
docs/eval/yardstick/README.md. tests/test_results_table.py fails when README.md's tables differ.
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


YARDSTICK_BEGIN = "<!-- yardstick table: written by scripts/results_table.py from docs/eval/yardstick/ -->"
YARDSTICK_END = "<!-- end of yardstick table -->"

#: The yardstick's rows (2,000 class sprites, 2,000 free sprites, 95% intervals): label, file in docs/eval/.
YARDSTICK_ROWS = [
    ("DDPM, 500 steps", "yardstick/ddpm500.json"),
    ("DDIM, 25 steps", "yardstick/ddim25.json"),
    ("DDIM, 25 steps", "yardstick/ddim25_guided2.json"),
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
    n = rows[0][3]["fd"]["n"]
    floors = f"same drawings {rows[0][3]['fd']['real_floor']:.2f}"
    floor_file = EVAL_DIR / f"floors_n{n}.json"  # both floors over 20 seeds (evaluate.py --floors-only)
    if floor_file.exists():
        both = json.loads(floor_file.read_text())
        floors = f"same drawings {both['real_floor']:.2f}, new drawings {both['new_drawings_floor']:.2f}"
    lines = [
        f"| sampler | guidance | context accuracy | sprite FD (floors: {floors}) | near-copies | file |",
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


def yardstick_evaluations() -> list[tuple[str, Path, dict]]:
    """(label, file, evaluation) for each yardstick file that has been written, in YARDSTICK_ROWS's order."""
    out = []
    for label, name in YARDSTICK_ROWS:
        path = EVAL_DIR / name
        if path.exists():
            out.append((label, path, json.loads(path.read_text())))
    if not out:
        raise FileNotFoundError(f"No yardstick evaluation in {EVAL_DIR / 'yardstick'}: run the commands in its README.")
    return out


def _interval(r: list[float] | None, pct: bool) -> str:
    if not r:
        return ""
    return f" ({100 * r[0]:.1f}-{100 * r[1]:.1f})" if pct else f" ({r[0]:.2f}-{r[1]:.2f})"


def yardstick_table() -> str:
    """The yardstick's markdown table: figures with 95% intervals, FD / new-drawings floor, and both floors."""
    rows = yardstick_evaluations()
    lines = [
        "| sampler | guidance | context accuracy (95%) | sprite FD (95%) | FD / new-drawings floor | near-copies "
        "| file |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for label, path, r in rows:
        acc, fd = r["context_accuracy"], r["fd"]
        guided = r["guide_w"] > 0
        cells = [
            label,
            f"{r['guide_w']:g}",
            "n/a (no context)" if acc is None else f"{100 * acc['overall']:.1f}%{_interval(acc['overall_ci95'], True)}",
            "" if guided else f"{fd['generated']:.2f}{_interval(fd['generated_ci95'], False)}",
            "" if guided else f"{fd['ratio_new_drawings']:.2f}",
            f"{100 * r['novelty']['share']:.1f}%",
            f"[{path.stem}]({path.relative_to(REPO_ROOT).as_posix()})",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    fd = rows[0][2]["fd"]
    same, new = fd["real_floor_ci95"], fd["new_drawings_floor_ci95"]
    lines += [
        "",
        f"Floors for two real sets of {fd['n']:,} (mean of {fd.get('floor_seeds', 1)} seeds; 95%: where one "
        f"measurement falls): same drawings {fd['real_floor']:.2f} ({same[0]:.2f}-{same[1]:.2f}), two random sets, "
        f"which share their drawings; new drawings {fd['new_drawings_floor']:.2f} ({new[0]:.2f}-{new[1]:.2f}), "
        "sets from disjoint halves of the designs.",
    ]
    return "\n".join(lines)


def readme_table(readme: str, begin: str = BEGIN, end: str = END) -> str:
    """The table between the markers in README's text."""
    if begin not in readme or end not in readme:
        raise ValueError(f"README.md lacks the markers {begin!r} ... {end!r} around its results table.")
    return readme.split(begin, 1)[1].split(end, 1)[0].strip()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--write", metavar="README", default=None, help="replace the table between the markers there")
    args = p.parse_args(argv)
    try:
        tables = [(table(), BEGIN, END), (yardstick_table(), YARDSTICK_BEGIN, YARDSTICK_END)]
        if args.write:
            path = Path(args.write)
            readme = original = path.read_text()
            for text, begin, end in tables:
                readme_table(readme, begin, end)  # both markers are there
                head, rest = readme.split(begin, 1)
                readme = f"{head}{begin}\n{text}\n{end}{rest.split(end, 1)[1]}"
            path.write_text(readme)
            print(f"{'updated' if readme != original else 'unchanged'}: {path}")
        else:
            print("\n\n".join(text for text, _, _ in tables))
    except (FileNotFoundError, ValueError) as err:
        print(f"results_table.py: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
