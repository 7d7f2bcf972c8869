"""Training: the loss goes down, a stopped-and-resumed run equals an uninterrupted one, and
the pieces (context dropout, EMA, atomic checkpoints) do what they say."""

import csv

import pytest
import torch
from conftest import du


def tiny_set(n=200, seed=0):
    gen = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, 16, 16, generator=gen) * 2 - 1
    labels = torch.eye(5)[torch.randint(0, 5, (n,), generator=gen)]
    return images, labels


def small_config(**kw):
    base = dict(epochs=2, batch_size=50, context=True, save_every=1, n_feat=16, seed=3)
    base.update(kw)
    return du.TrainConfig(**base)


def test_a_short_run_on_a_tiny_batch_lowers_the_loss():
    images = tiny_set(8)[0].repeat(25, 1, 1, 1)
    result = du.train(small_config(epochs=15, batch_size=20, context=False), images, progress=False, log_every=5)
    first, last = sum(result.losses[:15]) / 15, sum(result.losses[-15:]) / 15
    assert last < 0.6 * first


@pytest.mark.parametrize("stop_after", [4, 6])  # at an epoch boundary, and inside an epoch
def test_a_stopped_and_resumed_run_equals_one_that_never_stopped(tmp_path, stop_after):
    images, labels = tiny_set()
    whole = du.train(small_config(), images, labels, out_dir=tmp_path / "a", progress=False, log_every=1)
    du.train(small_config(), images, labels, out_dir=tmp_path / "b", progress=False, max_steps=stop_after, log_every=1)
    resumed = du.train(
        small_config(), images, labels, out_dir=tmp_path / "b", resume=tmp_path / "b" / "checkpoint.pt", progress=False
    )
    assert resumed.step == whole.step == 8
    for (k, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    for a, b in zip(whole.ema_model.state_dict().values(), resumed.ema_model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    final_a = du.load_model(tmp_path / "a" / "context_model_trained.pth", model=du.ContextUnet(3, 16, 5, 16))
    final_b = du.load_model(tmp_path / "b" / "context_model_trained.pth", model=du.ContextUnet(3, 16, 5, 16))
    assert torch.equal(final_a.out[3].weight, final_b.out[3].weight)
    rows = list(csv.DictReader(open(tmp_path / "b" / "loss_log.csv")))
    assert [int(r["step"]) for r in rows] == list(range(8))


def test_resuming_with_a_different_recipe_is_refused(tmp_path):
    images, labels = tiny_set()
    du.train(small_config(), images, labels, out_dir=tmp_path, progress=False, max_steps=2)
    with pytest.raises(ValueError, match="different recipe"):
        du.train(small_config(lr=5e-4), images, labels, resume=tmp_path / "checkpoint.pt", progress=False)


def test_a_weights_file_cannot_be_resumed(tmp_path):
    path = du.save_model(du.course_model(), tmp_path / "m.pth")
    with pytest.raises(ValueError, match="not a training checkpoint"):
        du.train(small_config(), *tiny_set(), resume=path, progress=False)


def test_learning_rate_decays_linearly_to_zero(tmp_path):
    du.train(small_config(lr=1e-3), *tiny_set(), out_dir=tmp_path, progress=False, log_every=1)
    lrs = [float(r["lr"]) for r in csv.DictReader(open(tmp_path / "loss_log.csv"))]
    assert lrs == pytest.approx([1e-3 * (1 - k / 8) for k in range(8)], rel=1e-5)  # CSV keeps 6 digits


def test_snapshots_and_final_weights_are_written(tmp_path):
    du.train(small_config(epochs=3, save_every=2), *tiny_set(), out_dir=tmp_path, progress=False)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(
        ["checkpoint.pt", "context_model_0.pth", "context_model_2.pth", "context_model_trained.pth", "loss_log.csv"]
    )


def test_context_dropout_zeroes_about_the_requested_share():
    c = torch.ones(100_000, 5)
    dropped = du.drop_context(c, 0.1, torch.Generator().manual_seed(0))
    share = (dropped.sum(1) == 0).float().mean().item()
    assert abs(share - 0.1) < 0.005
    assert torch.equal(dropped[dropped.sum(1) > 0], torch.ones_like(dropped[dropped.sum(1) > 0]))


def test_ema_follows_the_moving_average_formula():
    model = torch.nn.Linear(1, 1, bias=False)
    ema = du.EMA(model, decay=0.9)
    with torch.no_grad():
        model.weight.fill_(0.0)
    start = ema.model.weight.item()
    for _ in range(30):
        ema.update(model)
    expected = start
    for k in range(30):
        d = min(0.9, (1 + k) / (10 + k))
        expected = d * expected
    assert ema.model.weight.item() == pytest.approx(expected, rel=1e-5)


def test_atomic_save_leaves_no_partial_file(tmp_path):
    target = tmp_path / "x.pt"
    with pytest.raises(Exception):  # noqa: B017 - any pickling failure
        du.atomic_torch_save({"f": lambda: 0}, target)
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_resuming_with_more_epochs_continues_the_linear_decay_over_the_new_length(tmp_path):
    images, labels = tiny_set()
    du.train(small_config(), images, labels, out_dir=tmp_path, progress=False, max_steps=4, log_every=1)
    result = du.train(
        small_config(epochs=3), images, labels, out_dir=tmp_path, resume=tmp_path / "checkpoint.pt", progress=False
    )
    assert result.step == 12
    lrs = [float(r["lr"]) for r in csv.DictReader(open(tmp_path / "loss_log.csv"))]
    assert lrs[:4] == pytest.approx([1e-3 * (1 - k / 8) for k in range(4)], rel=1e-5)  # CSV keeps 6 digits
    assert lrs[4:] == pytest.approx([1e-3 * (1 - k / 12) for k in range(4, 12)], rel=1e-5)
