"""scripts/run_course.py and its front page: which notebooks run, what the index links, failing cells fail."""

import json
import sys
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

import course_index
import run_course


def test_exercise_notebooks_run_right_after_their_lesson(tmp_path, monkeypatch):
    for name in ("L2_Training", "L1_Sampling", "L1_Exercises", "L2_Exercises", "README"):
        (tmp_path / f"{name}.ipynb").write_text("{}")
    monkeypatch.setattr(run_course, "NOTEBOOK_DIR", tmp_path)
    assert run_course.course_notebooks() == ["L1_Sampling", "L1_Exercises", "L2_Training", "L2_Exercises"]


def test_index_links_what_was_built_and_keeps_earlier_runs(tmp_path):
    for name in course_index.LESSONS:
        (tmp_path / f"{name}.ipynb").write_text("{}")
        (tmp_path / f"{name}.html").write_text("<p>page</p>")
    (tmp_path / "L1_Exercises.html").write_text("<p>exercises</p>")
    (tmp_path / "L1_Sampling").mkdir()
    (tmp_path / "L1_Sampling" / "ddpm_denoising.gif").write_bytes(b"GIF89a")
    first = [run_course.Outcome(name, seconds=10.0) for name in course_index.LESSONS]
    course_index.write_index(tmp_path, first, "cpu (test)", quick=True)
    # a later run of L2 only (--only L2) rewrites L2's row and keeps the others
    course_index.write_index(tmp_path, [run_course.Outcome("L2_Training", seconds=99.0)], "cpu (test)", quick=False)
    runs = json.loads((tmp_path / "run.json").read_text())
    assert runs["L2_Training"]["seconds"] == 99.0 and runs["L2_Training"]["mode"] == "full"
    assert runs["L1_Sampling"]["seconds"] == 10.0 and runs["L1_Sampling"]["mode"] == "quick"
    page = (tmp_path / "index.html").read_text()
    assert 'href="L1_Exercises.html"' in page and 'href="L2_Exercises.html"' not in page
    assert 'src="L1_Sampling/ddpm_denoising.gif"' in page and "L2_Training/snapshots_denoising.gif" not in page
    assert page.count('class="lesson"') == 4 and "OpenMoji" in page


def test_each_row_shows_when_its_own_notebook_finished(tmp_path):
    for name in ("L1_Sampling", "L2_Training"):
        (tmp_path / f"{name}.ipynb").write_text("{}")
    outcomes = [
        run_course.Outcome("L1_Sampling", seconds=5.0, finished="2026-01-02T10:00:05"),
        run_course.Outcome("L2_Training", seconds=7.0, finished="2026-01-02T10:00:12"),
    ]
    course_index.write_index(tmp_path, outcomes, "cpu (test)", quick=True)
    runs = json.loads((tmp_path / "run.json").read_text())
    assert runs["L1_Sampling"]["finished"] == "2026-01-02T10:00:05"
    assert runs["L2_Training"]["finished"] == "2026-01-02T10:00:12"
    page = (tmp_path / "index.html").read_text()
    assert "2026-01-02T10:00:05" in page and "2026-01-02T10:00:12" in page


def test_a_failing_cell_fails_the_notebook_and_is_named(tmp_path, monkeypatch):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("Half of $x$"), nbformat.v4.new_code_cell("x = 1 / 0")]
    notebooks, out = tmp_path / "notebooks", tmp_path / "out"
    notebooks.mkdir()
    (out / "L9_Broken").mkdir(parents=True)
    nbformat.write(nb, notebooks / "L9_Broken.ipynb")
    monkeypatch.setattr(run_course, "NOTEBOOK_DIR", notebooks)
    outcome = run_course.run_notebook("L9_Broken", out, timeout=120, kernel="python3")
    assert outcome.status == "FAILED"
    assert "ZeroDivisionError" in outcome.error and "code cell 1" in outcome.error
    assert "<math" in (out / "L9_Broken.html").read_text()  # the page is still written, math typeset


def test_every_lesson_saves_the_animation_its_index_card_shows():
    """The front page's picture of a lesson is a GIF that lesson writes: plot_sample(..., fn=NAME, save=True)."""
    for name, gif in course_index.KEY_ANIMATIONS.items():
        nb = nbformat.read(run_course.NOTEBOOK_DIR / f"{name}.ipynb", as_version=4)
        code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
        assert f'fn="{gif.removesuffix(".gif")}"' in code, f"{name} never saves {gif}, the GIF its index card shows"


def test_pages_leave_out_the_progress_bars_jupyter_removed_and_keep_the_others():
    import course_pages

    def bar(n, value, style):  # tqdm's notebook bar: HBox(HTML, FloatProgress, HTML)
        return {
            f"box{n}": {"model_name": "HBoxModel", "state": {"children": [f"IPY_MODEL_p{n}"]}},
            f"p{n}": {"model_name": "FloatProgressModel", "state": {"value": value, "max": 500, "bar_style": style}},
        }

    models = {**bar(1, 498, ""), **bar(2, 300, "success"), **bar(3, 120, "danger")}
    view = course_pages.WIDGET_VIEW
    outputs = [
        {"output_type": "display_data", "data": {view: {"model_id": f"box{n}"}}, "metadata": {}} for n in (1, 2, 3)
    ]
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("sample()", outputs=outputs)]
    nb.metadata["widgets"] = {course_pages.WIDGET_STATE: {"state": models}}
    course_pages.freeze_widgets(nb)
    shown = [o["data"]["text/html"] for o in nb.cells[0].outputs]
    assert shown == ['<div class="frozen-row"><progress max="500" value="300"></progress></div>',
                     '<div class="frozen-row"><progress max="500" value="120"></progress></div>']  # fmt: skip
