"""notebooks/course_setup.py: the one setup line of every lesson."""

import sys
import warnings

import pytest
import torch
from conftest import ROOT, du

sys.path.insert(0, str(ROOT / "notebooks"))
import course_setup


def test_course_setup_finds_the_repository_and_the_shared_module():
    assert course_setup.ROOT == ROOT
    assert course_setup.du is du


def test_output_folder_is_the_lesson_folder_under_COURSE_OUT(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_OUT", str(tmp_path))
    folder = course_setup.output_folder("L9_Test")
    assert folder == tmp_path / "L9_Test" and folder.is_dir()


def test_fast_returns_the_model_itself_unless_COURSE_FAST(monkeypatch, small_model):
    monkeypatch.setattr(course_setup, "FAST", False)
    assert course_setup.fast(small_model) is small_model


def test_fast_falls_back_to_the_plain_model_with_one_warning_when_compiling_fails(monkeypatch, small_model):
    def failing_compile(model, **kwargs):
        def compiled(*args, **kw):
            raise RuntimeError("backend compiler failed: no C compiler found")

        return compiled

    monkeypatch.setattr(course_setup, "FAST", True)
    monkeypatch.setattr(torch, "compile", failing_compile)
    model = course_setup.fast(small_model)
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([0.5, 0.9])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = model(x, t)
        second = model(x, t)
    with torch.no_grad():
        expected = small_model(x, t)
    torch.testing.assert_close(first, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(second, expected, rtol=1e-4, atol=1e-5)
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1 and "no C compiler" in messages[0]
    assert model.h == small_model.h and model.config() == small_model.config()  # attributes of the model


def test_fast_passes_a_wrong_input_error_through(monkeypatch, small_model):
    monkeypatch.setattr(course_setup, "FAST", True)
    model = course_setup.fast(small_model)
    with pytest.raises(ValueError, match="expected x of shape"):
        model(torch.randn(2, 3, 8, 8), torch.tensor([0.5, 0.9]))
