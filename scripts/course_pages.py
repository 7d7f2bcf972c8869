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


def render_widget(model_id: str, models: dict, depth: int = 0) -> str:
    """A widget and its children (boxes, sliders, outputs) as static HTML, from the saved widget state."""
    model = models.get(model_id)
    if model is None or depth > 20:
        return ""
    name, state = model.get("model_name", ""), model.get("state", {})
    if name == "OutputModel":
        return "".join(render_output(o) for o in state.get("outputs", []))
    children = [c.removeprefix("IPY_MODEL_") for c in state.get("children", [])]
    if children:
        inner = "".join(render_widget(c, models, depth + 1) for c in children)
        return f'<div class="frozen-row">{inner}</div>' if name == "HBoxModel" else f"<div>{inner}</div>"
    label = html.escape(str(state.get("description", "")))
    if "SliderModel" in name and not isinstance(state.get("value"), list):
        bounds = " ".join(f'{k}="{state[k]}"' for k in ("min", "max", "step") if k in state)
        value = state.get("value", "")
        return f'<label>{label} <input type="range" disabled {bounds} value="{value}"> {value}</label>'
    if "value" in state:
        return f"<label>{label} {html.escape(str(state['value']))}</label>"
    return ""


def freeze_widgets(nb) -> None:
    """Replace each widget output of nb (in place) by a still picture of its first state."""
    models = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    for cell in nb.cells:
        for index, output in enumerate(cell.get("outputs", [])):
            view = output.get("data", {}).get(WIDGET_VIEW)
            if view is None:
                continue
            picture = render_widget(view.get("model_id", ""), models)
            if not picture:
                plain = "".join(output["data"].get("text/plain", ""))
                picture = f"<pre>{html.escape(plain)}</pre>"
            frozen = f'<div class="frozen-widget"><p class="frozen-note">{FROZEN_NOTE}</p>{picture}</div>'
            cell.outputs[index] = {"output_type": "display_data", "data": {"text/html": frozen}, "metadata": {}}
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
