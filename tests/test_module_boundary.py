"""The shared module's boundary: nothing outside diffusion_utilities.py uses its private names.

Checked on the syntax tree of every script, test and notebook (an attribute ``du._x`` or
``diffusion_utilities._x``, or ``from diffusion_utilities import _x``), not with grep.
"""

import ast

import nbformat
import pytest
from conftest import ROOT

MODULE = "diffusion_utilities"


def python_sources():
    for path in sorted([*ROOT.glob("scripts/*.py"), *ROOT.glob("tests/*.py"), *ROOT.glob("notebooks/*.py")]):
        yield path.relative_to(ROOT).as_posix(), path.read_text()
    for path in sorted(ROOT.glob("notebooks/*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        for i, cell in enumerate(nb.cells):
            if cell.cell_type == "code":
                lines = ["# " + x if x.lstrip().startswith(("%", "!")) else x for x in cell.source.splitlines()]
                yield f"{path.relative_to(ROOT).as_posix()} cell {i}", "\n".join(lines)


def private_uses(source: str) -> list[str]:
    """Private names of the module used in ``source``: via any alias of the module, or imported from it."""
    tree = ast.parse(source)
    aliases = {MODULE}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases |= {a.asname or a.name for a in node.names if a.name == MODULE}
        elif isinstance(node, ast.ImportFrom) and node.module == MODULE:
            found += [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
        elif isinstance(node, ast.ImportFrom) and any(a.name == "du" for a in node.names):
            aliases.add("du")  # e.g. `from conftest import du`
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            found.append(f"{node.value.id}.{node.attr} (line {node.lineno})")
    return found


def test_the_checker_finds_private_names_in_every_form():
    src = (
        "import diffusion_utilities as du\nfrom diffusion_utilities import _x\ndu._start_noise(1)\nprint(du.__name__)\n"
    )
    assert private_uses(src) == ["_x", "du._start_noise (line 3)"]


@pytest.mark.parametrize("where, source", list(python_sources()), ids=lambda v: v if "/" in str(v)[:40] else "")
def test_nothing_outside_the_module_uses_its_private_names(where, source):
    assert private_uses(source) == [], f"{where} uses private names of {MODULE}"
