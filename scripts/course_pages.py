"""An executed notebook -> one self-contained HTML page that works with no network (used by run_course.py).

What a plain nbconvert export loads from the internet, and what this page does instead:

- MathJax (the math): the LaTeX is typeset at build time into MathML, which browsers draw natively
  (scripts/offline_math.py);
- require.js and the Jupyter widget manager (the sliders): a widget needs a running kernel anyway, so
  the page shows each widget as a still picture of its first state (its sliders greyed out, the plot it
  drew) with a note saying the sliders move in Jupyter;
- Font Awesome (the icons on matplotlib's animation players): the buttons get text symbols from the
  page's own CSS (course_page.html.j2). The players themselves are plain JavaScript with the frames
  inlined as data: URLs.

`remote_assets(page)` lists what a page would still fetch; `export_page` refuses to return a page
with any.
"""

from __future__ import annotations

import copy
import html
import re
from pathlib import Path

import offline_math

TEMPLATE_DIR = Path(__file__).resolve().parent
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
# a stylesheet or script fetched from the web (links the reader clicks, <a href="https://...">, are fine)
REMOTE_LINK = re.compile(r"<link\b[^>]*\bhref=[\"']https?://[^>]*>\s*", re.I)
REMOTE_ASSET = re.compile(
    r"<(?:script|img|link|iframe|source|video|audio)\b[^>]*\b(?:src|href)=[\"']((?:https?:)?//[^\"']+)", re.I
)
FROZEN_NOTE = "Interactive in Jupyter (the sliders need a running Python kernel): shown here at its first setting."


def remote_assets(page: str) -> list[str]:
    """The URLs of scripts, stylesheets, images and frames that `page` would fetch from the network."""
    return REMOTE_ASSET.findall(page)


def render_output(output: dict) -> str:
    """One nbformat output (from an Output widget's state) as HTML: a picture, HTML, or text."""
    data = output.get("data", {})
    if output.get("output_type") == "stream":
        return f"<pre>{html.escape(''.join(output.get('text', '')))}</pre>"
    if "image/png" in data:
        return f'<img alt="plot" src="data:image/png;base64,{"".join(data["image/png"]).strip()}">'
    if "text/html" in data:
        return "".join(data["text/html"])
    if "text/plain" in data:
        return f"<pre>{html.escape(''.join(data['text/plain']))}</pre>"
    return ""


def render_widget(model_id: str, models: dict, depth: int = 0) -> tuple[str, bool]:
    """A widget and its children as static HTML from the saved widget state, and whether any is a control.

    Boxes lay out their children, an Output shows what it captured, a slider is drawn greyed out at its
    value, a progress bar (tqdm's) as a <progress> element; a control is anything the reader would move.
    """
    model = models.get(model_id)
    if model is None or depth > 20:
        return "", False
    name, state = model.get("model_name", ""), model.get("state", {})
    if name == "OutputModel":
        return "".join(render_output(o) for o in state.get("outputs", [])), False
    children = [c.removeprefix("IPY_MODEL_") for c in state.get("children", [])]
    if children:
        parts = [render_widget(c, models, depth + 1) for c in children]
        inner = "".join(part for part, _ in parts)
        layout = "frozen-row" if name == "HBoxModel" else "frozen-column"
        return f'<div class="{layout}">{inner}</div>', any(c for _, c in parts)
    label = html.escape(str(state.get("description", "")))
    value = state.get("value", "")
    if name in ("HTMLModel", "HTMLMathModel"):
        return f"<span>{value}</span>", False  # already HTML (tqdm writes its counters this way)
    if "ProgressModel" in name:
        return f'<progress max="{state.get("max", 100)}" value="{value}"></progress>', False
    if "SliderModel" in name and not isinstance(value, list):
        bounds = " ".join(f'{k}="{state[k]}"' for k in ("min", "max", "step") if k in state)
        return f'<label>{label} <input type="range" disabled {bounds} value="{value}"> {value}</label>', True
    if "value" in state:
        return f"<label>{label} {html.escape(str(value))}</label>", name not in ("LabelModel", "ValidModel")
    return "", False


def vanished_progress_bar(model_id: str, models: dict) -> bool:
    """Whether a widget is a tqdm bar that Jupyter no longer shows: one closed with ``leave=False``.

    tqdm styles a bar it leaves on screen when it closes ("success", or "danger" if stopped early); a
    bar closed with leave=False is removed instead, and its saved state is its last throttled update
    (a finished 500-step sampler read 498/500), so the page leaves it out as Jupyter does.
    """
    state = models.get(model_id, {}).get("state", {})
    for child in state.get("children", []):
        model = models.get(child.removeprefix("IPY_MODEL_"), {})
        if "ProgressModel" in model.get("model_name", ""):
            return not model.get("state", {}).get("bar_style")
    return False


def freeze_widgets(nb) -> None:
    """Replace each widget output of nb (in place) by a still picture of its first state.

    Widgets with controls (sliders) get a note that they move in Jupyter; a progress bar is just drawn,
    unless it is one Jupyter removed when it finished (``vanished_progress_bar``).
    """
    models = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    for cell in nb.cells:
        if "outputs" in cell:
            cell.outputs = [
                o
                for o in cell.outputs
                if not vanished_progress_bar(o.get("data", {}).get(WIDGET_VIEW, {}).get("model_id", ""), models)
            ]
        for index, output in enumerate(cell.get("outputs", [])):
            view = output.get("data", {}).get(WIDGET_VIEW)
            if view is None:
                continue
            picture, has_controls = render_widget(view.get("model_id", ""), models)
            if not picture:
                picture = f"<pre>{html.escape(''.join(output['data'].get('text/plain', '')))}</pre>"
            if has_controls:
                picture = f'<div class="frozen-widget"><p class="frozen-note">{FROZEN_NOTE}</p>{picture}</div>'
            cell.outputs[index] = {"output_type": "display_data", "data": {"text/html": picture}, "metadata": {}}
    nb.metadata.pop("widgets", None)


def export_page(nb, name: str) -> str:
    """The offline HTML page of an executed notebook (nb itself is left as it is).

    Raises ValueError if a formula cannot be typeset or the page would still fetch something.
    """
    from nbconvert import HTMLExporter

    page_nb = copy.deepcopy(nb)
    formulas = offline_math.typeset_notebook(page_nb, where=f"{name}.ipynb")
    freeze_widgets(page_nb)
    exporter = HTMLExporter(
        template_name="lab", extra_template_paths=[str(TEMPLATE_DIR)], template_file="course_page.html.j2"
    )
    page, _ = exporter.from_notebook_node(page_nb, resources={"metadata": {"name": name}})
    page = offline_math.fill_placeholders(page, formulas)
    page = REMOTE_LINK.sub("", page)  # matplotlib's to_jshtml links Font Awesome from a CDN
    leftover = remote_assets(page)
    if leftover:
        raise ValueError(f"{name}.html would still load from the network: {', '.join(sorted(set(leftover)))}")
    return page
