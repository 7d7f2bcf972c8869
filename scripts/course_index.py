"""The course's front page, build/index.html, and the record of each notebook's last run (used by run_course.py).

index.html shows the four lessons with a line each on what they teach and each lesson's key animation
(a GIF the lesson saved, linking to the lesson's page), a link to a lesson's exercise page when one was
built, and the table of the runs: seconds per notebook, status, device, quick or full size, when each
notebook finished, with links to the executed notebooks. Everything it links is a file beside it; it
loads nothing from the network.

run.json keeps each notebook's last run, so that `run_course.py --only L2` rewrites L2's row and keeps
the others.
"""

from __future__ import annotations

import datetime
import html
import json
import os
from pathlib import Path

LESSONS = ("L1_Sampling", "L2_Training", "L3_Context", "L4_FastSampling")
LESSON_LINES = {
    "L1_Sampling": (
        "Sampling",
        "The noise schedule, and DDPM sampling: 32 sprites drawn out of pure noise step by step, "
        "and why the samples collapse to blurry averages without the extra noise.",
    ),
    "L2_Training": (
        "Training",
        "Noise a sprite at a random step, predict the noise, minimise the squared error: a short live "
        "training run, then samples from snapshots along the full run.",
    ),
    "L3_Context": (
        "Context",
        "Steer the model with a context (hero, non-hero, food, spell, side-facing): chosen and mixed "
        "classes, and classifier-free guidance.",
    ),
    "L4_FastSampling": (
        "Fast sampling",
        "DDIM and DPM-Solver++: sprites in 15-25 steps instead of 500, side by side with DDPM from the "
        "same noise, timed, and what the fewer steps cost in quality.",
    ),
}
# the animation that shows what each lesson is about (a GIF the lesson writes to build/<lesson>/)
KEY_ANIMATIONS = {
    "L1_Sampling": "ddpm_denoising.gif",
    "L2_Training": "snapshots_denoising.gif",
    "L3_Context": "random_context.gif",
    "L4_FastSampling": "ddpm_vs_ddim.gif",
}
CREDIT = (
    "The sprites are drawn by the course's model, trained on OpenMoji emoji: all emojis designed by "
    'OpenMoji, the open-source emoji and icon project, <a href="https://openmoji.org">openmoji.org</a>, '
    "licence CC BY-SA 4.0."
)
STYLE = """
body { font-family: system-ui, sans-serif; max-width: 68em; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.2em; }
.lead { color: #444; margin-top: 0; }
.lessons { display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 1.2em; margin: 1.5em 0; }
@media (max-width: 44em) { .lessons { grid-template-columns: 1fr; } }
.lesson { border: 1px solid #ddd; border-radius: 8px; padding: 0.8em 1em; }
.lesson h2 { font-size: 1.15em; margin: 0.2em 0 0.4em 0; }
.lesson img { display: block; max-width: 100%; max-height: 22em; margin: 0.6em auto; image-rendering: pixelated; }
.lesson .links { font-size: 0.95em; }
.missing { color: #999; }
table { border-collapse: collapse; margin: 0.8em 0; }
th, td { border-bottom: 1px solid #ddd; padding: 0.3em 0.8em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.failed { color: #b00; font-weight: bold; }
footer { color: #666; font-size: 0.9em; margin-top: 2em; }
"""


def describe_device() -> str:
    """What the notebooks ran on: the device du.get_device() picks in this environment, with its name."""
    import torch

    if torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(0)})"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps (Apple GPU)"
    return f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"


def record_runs(out: Path, outcomes, device: str, quick: bool) -> dict:
    """Merge this run's outcomes into out/run.json and return all recorded runs, by notebook name."""
    path = out / "run.json"
    try:
        runs = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    except json.JSONDecodeError:
        runs = {}
    now = datetime.datetime.now().isoformat(timespec="seconds")
    for o in outcomes:
        runs[o.name] = {
            "seconds": round(o.seconds, 1),
            "status": o.status,
            "device": device,
            "mode": "quick" if quick else "full",
            "finished": getattr(o, "finished", None) or now,  # the notebook's own end (now, if not recorded)
        }
    path.write_text(json.dumps(runs, indent=2) + "\n", encoding="utf-8")
    return runs


def link(href: str, text: str, out: Path) -> str:
    """<a> to a file beside the index, or the text greyed out if the file is not there."""
    if (out / href).exists():
        return f'<a href="{html.escape(href)}">{text}</a>'
    return f'<span class="missing" title="not built yet: make course">{text}</span>'


def lesson_card(name: str, out: Path) -> str:
    title, line = LESSON_LINES[name]
    number = name.split("_")[0]
    heading = link(f"{name}.html", f"{number} · {html.escape(title)}", out)
    gif = f"{name}/{KEY_ANIMATIONS[name]}"
    picture = ""
    if (out / gif).exists():
        picture = f'<a href="{name}.html"><img src="{gif}" alt="{html.escape(title)}: the lesson\'s animation"></a>'
    links = [link(f"{name}.html", "page", out), link(f"{name}.ipynb", "executed notebook", out)]
    exercises = f"{number}_Exercises"
    if (out / f"{exercises}.html").exists():
        links.append(link(f"{exercises}.html", "exercises", out))
    return (
        f'<section class="lesson"><h2>{heading}</h2><p>{html.escape(line)}</p>{picture}'
        f'<p class="links">{" · ".join(links)}</p></section>'
    )


def runs_table(runs: dict, out: Path) -> str:
    rows, total = [], 0.0
    for name, run in sorted(runs.items(), key=lambda item: (item[0].split("_")[0], "Exercises" in item[0])):
        if not (out / f"{name}.ipynb").exists():
            continue
        total += run["seconds"]
        status = html.escape(run["status"])
        status = status if status == "ok" else f'<span class="failed">{status}</span>'
        rows.append(
            f"<tr><td>{link(f'{name}.html', html.escape(name), out)}</td>"
            f"<td>{link(f'{name}.ipynb', 'notebook', out)}</td>"
            f'<td class="num">{run["seconds"]:.1f}</td><td>{status}</td>'
            f"<td>{html.escape(run['device'])}</td><td>{run['mode']}</td><td>{run.get('finished', '')}</td></tr>"
        )
    columns = ("page", "executed", "seconds", "status", "device", "size", "finished")
    head = "<tr>" + "".join(f"<th>{c}</th>" for c in columns) + "</tr>"
    foot = f'<tr><td>total</td><td></td><td class="num">{total:.1f}</td><td colspan="4"></td></tr>'
    return f"<table>{head}{''.join(rows)}{foot}</table>"


def write_index(out: Path, outcomes, device: str, quick: bool) -> Path:
    """Record this run and write out/index.html; returns its path."""
    runs = record_runs(out, outcomes, device, quick)
    quick_note = ""
    if any(run["mode"] == "quick" for run in runs.values()):
        quick_note = (
            "<p><strong>Quick mode</strong> (COURSE_QUICK=1): fewer sprites, a few training steps, fewer "
            "frames. <code>make course</code> builds the full-size pages.</p>"
        )
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>Sprite Diffusion: the course</title>
<style>{STYLE}</style>
</head>
<body>
<h1>Sprite Diffusion</h1>
<p class="lead">How diffusion models work, hands-on: four lessons that build a small U-Net which draws
16x16 game sprites out of pure noise. Each page below is a lesson run top to bottom, with its outputs;
its math and animations work offline. To change the code and run it yourself, open the notebook in
Jupyter (<code>make lab</code>).</p>
{quick_note}
<div class="lessons">
{"".join(lesson_card(name, out) for name in LESSONS)}
</div>
<h2>This build</h2>
<p>How long each notebook took and where it ran. The executed notebooks (with every output) are
linked in the second column; open them in Jupyter to run them again.</p>
{runs_table(runs, out)}
<footer>{CREDIT}</footer>
</body>
</html>
"""
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
