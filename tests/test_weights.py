"""Saving and loading weights: round trips, safe loading, and errors that say what is wrong."""

import pickle

import pytest
import torch
from conftest import du


def test_save_then_load_gives_the_same_weights(tmp_path):
    model = du.course_model()
    path = du.save_model(model, tmp_path / "m.pth")
    loaded = du.load_model(path)
    assert not loaded.training
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), k


def test_a_missing_file_says_where_weights_come_from(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothere\.pth.*weights/.*scripts/train\.py"):
        du.load_model(tmp_path / "nothere.pth")


def test_a_corrupt_file_is_a_value_error_naming_it(tmp_path):
    path = tmp_path / "broken.pth"
    du.save_model(du.course_model(), path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match=r"broken\.pth.*corrupt"):
        du.load_model(path)


class Sneaky:
    """Unpickling this would call print: a stand-in for a file that runs code."""

    def __reduce__(self):
        return (print, ("this ran at load time",))


def test_a_file_that_would_run_code_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    torch.save({"weight": torch.zeros(1), "payload": Sneaky()}, path, pickle_protocol=pickle.DEFAULT_PROTOCOL)
    with pytest.raises(ValueError, match=r"evil\.pth.*refused"):
        du.load_model(path)
    assert "this ran" not in capsys.readouterr().out


def test_a_different_architecture_names_the_sizes_that_differ(tmp_path):
    path = du.save_model(du.ContextUnet(3, 32, 10, 16), tmp_path / "other.pth")
    with pytest.raises(ValueError, match=r"other\.pth.*different architecture.*sizes differ.*\(64, 3, 3, 3\)"):
        du.load_model(path)


def test_a_checkpoint_with_extra_or_missing_layers_is_refused(tmp_path):
    state = du.course_model().state_dict()
    state.pop("out.3.bias")
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "odd.pth"
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"1 missing \(out\.3\.bias\).*1 unexpected \(extra\.weight\)"):
        du.load_model(path)


def test_a_non_state_dict_is_refused(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([1, 2, 3], path)
    with pytest.raises(ValueError, match="not a state dict"):
        du.load_model(path)


def test_load_model_fills_a_given_model(tmp_path):
    small = du.ContextUnet(3, 16, 5, 20)
    path = du.save_model(small, tmp_path / "small.pth")
    target = du.ContextUnet(3, 16, 5, 20)
    assert du.load_model(path, model=target) is target
    assert torch.equal(target.out[3].weight, small.out[3].weight)


def _load_error(path) -> str:
    with pytest.raises((ValueError, FileNotFoundError)) as err:
        du.load_model(path)
    return str(err.value)


@pytest.mark.parametrize("kind", ["text", "npy", "npz"])
def test_a_file_that_is_not_a_checkpoint_says_so_and_not_that_it_runs_code(tmp_path, kind):
    import numpy as np

    if kind == "text":
        path = tmp_path / "README.md"
        path.write_text("# not weights\n")
    elif kind == "npy":
        path = tmp_path / "sprites.npy"
        np.save(path, np.zeros((2, 3)))
    else:
        path = tmp_path / "arrays.npz"
        np.savez(path, a=np.zeros(2))
    message = _load_error(path)
    assert "not a PyTorch weights file" in message and path.name in message
    assert "run code" not in message and "refused" not in message
    assert "weights_only" not in message and "likely succeed" not in message
    assert len(message.splitlines()) == 1


def test_a_code_pickle_is_refused_without_advising_an_unsafe_load(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"weight": torch.zeros(1), "payload": Sneaky()}, path, pickle_protocol=pickle.DEFAULT_PROTOCOL)
    message = _load_error(path)
    assert "refused" in message and "print" in message  # names what it would have called
    assert "weights_only=False" not in message and "likely succeed" not in message and "trust" not in message
    assert "\x1b" not in message and len(message.splitlines()) == 1


def test_only_the_repositorys_own_missing_weights_are_restored_with_git(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # "weights/..." relative to another folder does not exist there
    message = _load_error("weights/context_model_trained.pth")
    assert "git checkout" not in message
    assert str(tmp_path) in message and str(du.WEIGHTS_DIR / "context_model_trained.pth") in message
    shipped = _load_error(du.WEIGHTS_DIR / "no_such_snapshot.pth")
    assert "git checkout -- weights/" in shipped
