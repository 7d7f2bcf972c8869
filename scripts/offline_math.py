"""Typeset a notebook's LaTeX as MathML at build time, so its HTML page needs no math script and no network.

Browsers render MathML natively (MathML Core: Chromium 109+, Firefox, Safari). The notebooks write math
as `$...$` (inline) and `$$...$$` (display) in markdown cells; `typeset_notebook` swaps each span for a
placeholder word before nbconvert turns the markdown into HTML, and `fill_placeholders` puts the MathML
into the exported page. Used by scripts/run_course.py; the conversion itself is the PyPI package
latex2mathml, with a few fixes for what MathML Core renders:

- `aligned` becomes `split` (the same right/left column pairs; latex2mathml knows only the latter),
  `gathered` a one-column array;
- `\\mathcal N` without braces becomes the Unicode script letter (MathML Core ignores mathvariant);
- `\\_`, `\\%`, `\\&`, `\\#`, `\\$` inside `\\text{}` lose their backslash.

A formula latex2mathml cannot parse, or one that leaves a command it does not know (`\\foo` shown as
text), raises ValueError naming the notebook cell and the formula: a page never ships raw LaTeX.
"""

from __future__ import annotations

import html
import re

from latex2mathml.converter import convert

# $$...$$ first (may span lines), then $...$ on one line; a backslash-escaped \$ is not a delimiter.
MATH_SPAN = re.compile(r"(?<!\\)\$\$(.+?)(?<!\\)\$\$|(?<![\\$])\$(?!\s)([^$\n]+?)(?<![\s\\])\$(?!\$)", re.S)
# Fenced code blocks and inline code spans: a `$` in them is code, not math.
CODE = re.compile(r"^(```|~~~).*?^\1[ \t]*$|`[^`\n]+`", re.S | re.M)
PLACEHOLDER = "mathspan{:05d}z"
SCRIPT_CAPITALS = {"B": "ℬ", "E": "ℰ", "F": "ℱ", "H": "ℋ", "I": "ℐ", "L": "ℒ", "M": "ℳ", "R": "ℛ"}
TEXT_ESCAPES = re.compile(r"\\([_%&#$])")
UNKNOWN_COMMAND = re.compile(r"\\[A-Za-z]+")


def script_letter(letter: str) -> str:
    """'N' -> '𝒩' (Mathematical Script Capital N); letters outside A-Z are returned unchanged."""
    if letter in SCRIPT_CAPITALS:
        return SCRIPT_CAPITALS[letter]
    if "A" <= letter <= "Z":
        return chr(0x1D49C + ord(letter) - ord("A"))
    return letter


def tex_to_mathml(tex: str, display: bool = False) -> str:
    """One formula (without its $ delimiters) -> a `<math>` element; ValueError if it cannot be typeset."""
    source = tex.strip()
    source = re.sub(r"\\(begin|end)\{aligned\}", r"\\\1{split}", source)
    source = re.sub(r"\\begin\{gathered\}", r"\\begin{array}{c}", source).replace(r"\end{gathered}", r"\end{array}")
    try:
        mathml = convert(source, display="block" if display else "inline")
    except Exception as err:  # latex2mathml raises its own exception types (unbalanced braces, no tokens ...)
        raise ValueError(f"cannot typeset ${tex}$: {type(err).__name__} {err}".rstrip()) from None
    mathml = re.sub(r'<mi mathvariant="script">([A-Za-z])</mi>', lambda m: f"<mi>{script_letter(m[1])}</mi>", mathml)
    mathml = re.sub(r"(<mtext[^>]*>)([^<]*)(</mtext>)", lambda m: m[1] + TEXT_ESCAPES.sub(r"\1", m[2]) + m[3], mathml)
    mathml = mathml.replace('width="negativethinmathspace"', 'width="-0.167em"')
    text = html.unescape(re.sub(r"<[^>]+>", "", mathml))
    unknown = UNKNOWN_COMMAND.findall(text)
    if unknown:
        raise ValueError(f"cannot typeset ${tex}$: unknown command {unknown[0]}")
    # the TeX source rides along as an annotation: copy-paste and screen readers get the formula back
    annotation = f'<annotation encoding="application/x-tex">{html.escape(tex.strip())}</annotation>'
    opening, body = mathml.split(">", 1)
    return f"{opening}><semantics>{body.removesuffix('</math>')}{annotation}</semantics></math>"


def math_spans(markdown: str) -> list[re.Match]:
    """The `$...$` and `$$...$$` spans of one markdown cell, outside code blocks and code spans."""
    code = [m.span() for m in CODE.finditer(markdown)]
    return [m for m in MATH_SPAN.finditer(markdown) if not any(a <= m.start() < b for a, b in code)]


def typeset_notebook(nb, where: str = "notebook") -> dict[str, str]:
    """Replace each math span of nb's markdown cells (in place) by a placeholder; returns placeholder -> MathML.

    nb is an nbformat notebook (changed in place: export a copy, not the executed notebook you save).
    """
    formulas: dict[str, str] = {}
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        pieces, last = [], 0
        for span in math_spans(cell.source):
            display = span[1] is not None
            try:
                mathml = tex_to_mathml(span[1] if display else span[2], display)
            except ValueError as err:
                raise ValueError(f"{where}, markdown cell {index + 1}: {err}") from None
            key = PLACEHOLDER.format(len(formulas))
            formulas[key] = mathml
            pieces += [cell.source[last : span.start()], key]
            last = span.end()
        cell.source = "".join(pieces) + cell.source[last:]
    return formulas


def fill_placeholders(page: str, formulas: dict[str, str]) -> str:
    """Put each formula's MathML where its placeholder landed in the exported HTML.

    A placeholder inside a tag (a heading's anchor id) becomes plain 'math'; ValueError if one went missing.
    """
    page = re.sub(r"<[^>]*mathspan\d{5}z[^>]*>", lambda m: re.sub(r"mathspan\d{5}z", "math", m[0]), page)
    for key, mathml in formulas.items():
        if page.count(key) != 1:
            raise ValueError(f"formula {key} appears {page.count(key)} times in the exported page, expected once")
        page = page.replace(key, mathml)
    return page
