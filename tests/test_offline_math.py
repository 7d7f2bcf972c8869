"""Build-time math for the pages (scripts/offline_math.py): LaTeX in, MathML out, never raw LaTeX."""

import sys
from pathlib import Path

import nbformat
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

import offline_math


def test_fraction_root_and_bar_become_mathml_elements():
    mathml = offline_math.tex_to_mathml(r"\frac{1}{\sqrt{\bar\alpha_t}}")
    assert mathml.startswith("<math") and "<mfrac>" in mathml and "<msqrt>" in mathml and "<mover>" in mathml
    assert "\\" not in mathml.split("<annotation")[0], "a backslash command survived outside the annotation"


def test_display_math_is_a_block():
    assert 'display="block"' in offline_math.tex_to_mathml("x_t", display=True)


def test_calligraphic_without_braces_is_the_unicode_script_letter():
    # MathML Core ignores mathvariant="script", so the letter itself must be the script one
    assert "\U0001d4a9" in offline_math.tex_to_mathml(r"\mathcal N(0, I)")  # MATHEMATICAL SCRIPT CAPITAL N
    assert "\u2112" in offline_math.tex_to_mathml(r"\mathcal L")  # SCRIPT CAPITAL L


def test_aligned_becomes_a_table_with_right_and_left_columns():
    mathml = offline_math.tex_to_mathml(r"\begin{aligned} a &= b \\ c &= d \end{aligned}", display=True)
    assert mathml.count("<mtr>") == 2 and 'columnalign="right"' in mathml and 'columnalign="left"' in mathml
    assert "<mi>&</mi>" not in mathml


def test_escaped_underscore_in_text_loses_its_backslash():
    shown = offline_math.tex_to_mathml(r"\texttt{perturb\_input}").split("<annotation")[0]
    assert "perturb_input" in shown and "\\" not in shown


@pytest.mark.parametrize("tex", [r"\frac{1}{", r"\foo x"])
def test_formula_that_cannot_be_typeset_is_an_error(tex):
    with pytest.raises(ValueError, match="cannot typeset"):
        offline_math.tex_to_mathml(tex)


def test_notebook_spans_become_placeholders_and_come_back_as_mathml():
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("Noise $x_t$ and\n\n$$x_{t-1} = \\frac{a}{b}$$\n\nin `$HOME` costs $5 or 6$"),
        nbformat.v4.new_code_cell("x = '$a$'"),
    ]
    formulas = offline_math.typeset_notebook(nb)
    assert len(formulas) == 3  # $x_t$, the display formula, "$5 or 6$"; not the code span nor the code cell
    assert "$" not in nb.cells[0].source.replace("`$HOME`", "")
    assert nb.cells[1].source == "x = '$a$'"
    page = "<p>" + nb.cells[0].source + "</p>"
    filled = offline_math.fill_placeholders(page, formulas)
    assert filled.count("<math") == 3 and "mathspan" not in filled


def test_a_lost_placeholder_is_an_error():
    with pytest.raises(ValueError, match="expected once"):
        offline_math.fill_placeholders("<p>nothing here</p>", {"mathspan00000z": "<math></math>"})
