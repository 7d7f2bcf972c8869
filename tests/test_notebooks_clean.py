"""The notebooks as committed: valid, without outputs, and importing (never redefining) the shared module.

Besides the four lessons there is one exercise notebook per lesson (L1_Exercises ...). A learner's own
version of a course function belongs in a code cell tagged "exercise" (cell metadata tags): only there
may a notebook define a function with a shared name, and such a cell ships unattempted.
"""

import ast
import inspect
from pathlib import Path

import nbformat
import pytest
from conftest import ROOT, du

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
LESSONS = ["L1_Sampling", "L2_Training", "L3_Context", "L4_FastSampling"]
EXERCISES = ["L1_Exercises", "L2_Exercises", "L3_Exercises", "L4_Exercises"]
MAX_CELL_LINES = 30  # about one screen


def shared_names() -> set[str]:
    """Every public class and function the module defines, and the schedule's step functions."""
    names = {
        name
        for name, obj in vars(du).items()
        if (inspect.isclass(obj) or inspect.isfunction(obj)) and getattr(obj, "__module__", None) == du.__name__
    }
    names |= {name for name, _ in inspect.getmembers(du.DDPMSchedule, inspect.isfunction)}
    return {name for name in names if not name.startswith("_")}


def code_of(cell) -> str:
    """A code cell's source as plain Python: IPython magics and shell lines become comments."""
    return "\n".join("# " + line if line.lstrip().startswith(("%", "!")) else line for line in cell.source.splitlines())


def read(path: Path):
    return nbformat.read(path, as_version=nbformat.NO_CONVERT)


def test_the_four_lessons_and_their_exercise_notebooks_are_there():
    assert sorted(p.stem for p in NOTEBOOKS) == sorted(LESSONS + EXERCISES)


def is_exercise(cell) -> bool:
    return cell.cell_type == "code" and "exercise" in cell.get("metadata", {}).get("tags", [])


def test_shared_names_cover_the_course_names():
    assert {"ContextUnet", "DDPMSchedule", "sample_ddpm", "sample_ddim", "perturb_input", "denoise_add_noise"} <= (
        shared_names()
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_valid_nbformat(path):
    nbformat.validate(read(path))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_without_outputs_or_execution_counts(path):
    dirty = [
        i
        for i, cell in enumerate(read(path).cells)
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count") is not None)
    ]
    assert not dirty, f"{path.name}: cells {dirty} carry outputs or execution counts; clear them before committing."


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_defines_no_class_or_function_of_the_shared_module(path):
    shared = shared_names()
    found = []
    for i, cell in enumerate(read(path).cells):
        if cell.cell_type != "code":
            continue
        for node in ast.walk(ast.parse(code_of(cell))):
            is_function = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            learners_own = is_function and is_exercise(cell)  # a learner's version, in an exercise cell
            if (is_function or isinstance(node, ast.ClassDef)) and node.name in shared and not learners_own:
                found.append(f"cell {i}: {node.name}")
            if isinstance(node, ast.ClassDef) and any("Module" in ast.unparse(base) for base in node.bases):
                found.append(f"cell {i}: a network class {node.name}")
    assert not found, f"{path.name} redefines what diffusion_utilities provides: {found}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_sets_up_with_course_setup_in_its_first_code_cell(path):
    cells = read(path).cells
    first_code = next(c.source for c in cells if c.cell_type == "code")
    tree = ast.parse(code_of(first_code_cell(cells)))
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "course_setup"
        for alias in node.names
    }
    assert {"du", "QUICK", "device", "output_folder"} <= imported, (
        f"{path.name}: the first code cell must import du, QUICK, device and output_folder from course_setup "
        f"(it imports {sorted(imported)})"
    )
    assert f'output_folder("{path.stem}")' in first_code, f"{path.name}: OUT must be output_folder({path.stem!r})"
    for clutter in ("sys.path", "os.environ", "speed_up", "Path.cwd"):
        assert clutter not in first_code, f"{path.name}: {clutter} belongs in course_setup.py, not the lesson"
    intro = cells[0].source
    assert cells[0].cell_type == "markdown" and "COURSE_QUICK=1" in intro
    assert "course_setup.py" in intro, f"{path.name}: the first cell must say what the setup line does"
    assert "OpenMoji" in intro and "CC BY-SA 4.0" in intro, f"{path.name}: the first cell must credit the sprites"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_exercise_cells_ship_unattempted(path):
    """An exercise cell defines functions whose bodies raise NotImplementedError, so its check says "not attempted"."""
    for i, cell in enumerate(read(path).cells):
        if not is_exercise(cell):
            continue
        functions = [node for node in ast.parse(code_of(cell)).body if isinstance(node, ast.FunctionDef)]
        assert functions, f"{path.name} cell {i} is tagged 'exercise' but defines no function"
        for fn in functions:
            raises = [n for n in ast.walk(fn) if isinstance(n, ast.Raise) and "NotImplementedError" in ast.unparse(n)]
            assert raises, f"{path.name} cell {i}: {fn.name} must ship as a stub that raises NotImplementedError"


@pytest.mark.parametrize("name", EXERCISES)
def test_exercise_notebook_has_exercises_each_followed_by_its_check(name):
    cells = read(ROOT / "notebooks" / f"{name}.ipynb").cells
    exercises = [i for i, cell in enumerate(cells) if is_exercise(cell)]
    assert 2 <= len(exercises) <= 3, f"{name}: {len(exercises)} exercise cells"
    for i in exercises:
        (fn,) = [n.name for n in ast.parse(code_of(cells[i])).body if isinstance(n, ast.FunctionDef)]
        assert cells[i + 1].source.strip() == f"check_{fn}({fn})", f"{name}: the cell after {fn} must check it"


def first_code_cell(cells):
    return next(c for c in cells if c.cell_type == "code")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_cell_is_longer_than_a_screen(path):
    long = [
        f"cell {i}: {len(cell.source.splitlines())} lines"
        for i, cell in enumerate(read(path).cells)
        if len(cell.source.splitlines()) > MAX_CELL_LINES
    ]
    assert not long, f"{path.name}: cells longer than {MAX_CELL_LINES} lines (split them): {long}"
