"""Training: the module's plain loop (du.train) and the resumable run around it (scripts/training_run.py).

The loss goes down, a seeded run gives the losses it gave before the loop moved, a stopped and
resumed run equals one that never stopped, and the pieces (context dropout, EMA, atomic
checkpoints) do what they say. The command line (scripts/train.py) is tested in test_train_cli.py.
"""

import copy
import csv
import os
import signal

import numpy as np
import pytest
import torch
import training_run as tr
from conftest import du


def tiny_set(n=80, seed=0):
    gen = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, 16, 16, generator=gen) * 2 - 1
    labels = torch.eye(5)[torch.randint(0, 5, (n,), generator=gen)]
    return images, labels


def small_config(**kw):
    base = dict(epochs=2, batch_size=20, context=True, save_every=1, n_feat=8, seed=3)
    base.update(kw)
    return tr.TrainConfig(**base)


# Losses of a seeded run (tiny_set(200), TrainConfig(epochs=2, batch_size=50, context=True, context_drop=0.3,
# n_feat=8, seed=3), channels_last on the CPU) taken with du.train as it was before the training run moved
# out of the module (commit 2b412eb); the second list is the same with context=False.
PINNED_CONTEXT = [1.151630163192749, 1.1050459146499634, 1.0961041450500488, 1.0616240501403809,
                  1.0598522424697876, 1.0620224475860596, 1.0624933242797852, 1.0480477809906006]  # fmt: skip
PINNED_UNCONDITIONAL = [1.1475791931152344, 1.1093963384628296, 1.0931037664413452, 1.081562876701355,
                        1.0621626377105713, 1.0651792287826538, 1.0481396913528442, 1.048403263092041]  # fmt: skip


@pytest.mark.parametrize("context, pinned", [(True, PINNED_CONTEXT), (False, PINNED_UNCONDITIONAL)])
def test_a_seeded_run_gives_the_losses_it_gave_before_the_move(context, pinned):
    images, labels = tiny_set(200)
    config = small_config(context=context, context_drop=0.3, batch_size=50)
    result = tr.run(config, images, labels if context else None, progress=False, log_every=1)
    # float rounding differs with the thread count and CPU (about 1e-4 after 8 Adam steps); a change in the
    # random draws or their order moves the losses by percents
    assert result.losses == pytest.approx(pinned, rel=5e-4)
    # the plain loop, on a model built the same way but in the default memory layout: the same draws,
    # so the same losses up to float rounding
    torch.manual_seed(3)
    model = du.ContextUnet(3, 8, 5, 16)
    losses = []
    du.train(
        model, du.DDPMSchedule(), images, labels if context else None, epochs=2, batch_size=50, context_drop=0.3,
        seed=3, progress=False, callback=lambda state: losses.append(state.loss.item()),
    )  # fmt: skip
    assert losses == pytest.approx(pinned, rel=5e-4)


def test_the_plain_loop_lowers_the_loss_on_a_tiny_batch():
    images = tiny_set(8)[0].repeat(10, 1, 1, 1)
    torch.manual_seed(3)
    model = du.ContextUnet(3, 8, 5, 16)
    losses = []
    state = du.train(
        model, du.DDPMSchedule(), images, epochs=20, batch_size=20, progress=False, lr=3e-3,
        callback=lambda s: losses.append(s.loss.item()),
    )  # fmt: skip
    assert state.step == len(losses) == 80
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.6 * first


def test_the_plain_loop_stops_when_the_callback_says_so_and_continues_exactly():
    images, labels = tiny_set(60)
    schedule = du.DDPMSchedule()

    def fresh():
        torch.manual_seed(0)
        return du.ContextUnet(3, 8, 5, 16)

    whole = []
    du.train(fresh(), schedule, images, labels, epochs=2, batch_size=20, progress=False,
             callback=lambda s: whole.append(s.loss.item()))  # fmt: skip
    model, parts = fresh(), []
    state = du.train(model, schedule, images, labels, epochs=2, batch_size=20, progress=False,
                     callback=lambda s: parts.append(s.loss.item()) or s.step == 4)  # fmt: skip
    assert state.step == 4  # stopped inside the second epoch (3 batches an epoch)
    du.train(model, schedule, images, labels, epochs=2, batch_size=20, progress=False, state=state,
             callback=lambda s: parts.append(s.loss.item()))  # fmt: skip
    assert parts == whole and state.step == 6


def test_the_plain_loop_refuses_a_state_stopped_inside_an_epoch_of_other_data():
    images, labels = tiny_set(60)
    torch.manual_seed(0)
    model = du.ContextUnet(3, 8, 5, 16)
    state = du.train(model, du.DDPMSchedule(), images, labels, batch_size=20, progress=False, callback=lambda s: True)
    with pytest.raises(ValueError, match="another data set"):  # the cause of the nan losses of issue 17
        du.train(model, du.DDPMSchedule(), tiny_set(200)[0], batch_size=20, state=state, progress=False)
    with pytest.raises(ValueError, match=r"state\.model is not the model"):
        du.train(du.ContextUnet(3, 8, 5, 16), du.DDPMSchedule(), images, state=state, progress=False)


@pytest.mark.parametrize("stop_after", [4, 6])  # at an epoch boundary, and inside an epoch
def test_a_stopped_and_resumed_run_equals_one_that_never_stopped(tmp_path, stop_after):
    images, labels = tiny_set()
    whole = tr.run(small_config(), images, labels, out_dir=tmp_path / "a", progress=False, log_every=1)
    part = tr.run(small_config(), images, labels, out_dir=tmp_path / "b", progress=False, max_steps=stop_after)
    assert part.stopped_by == "max_steps" and part.step == stop_after and not part.finished
    resumed = tr.run(
        small_config(), images, labels, out_dir=tmp_path / "b", resume=tmp_path / "b" / "checkpoint.pt", progress=False
    )
    assert resumed.step == whole.step == 8 and resumed.finished
    assert resumed.losses == pytest.approx(whole.losses, abs=1e-6)  # the resumed run's first losses come from its CSV
    assert (tmp_path / "a" / "loss_log.csv").read_text() == (tmp_path / "b" / "loss_log.csv").read_text()
    for (k, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    for a, b in zip(whole.ema_model.state_dict().values(), resumed.ema_model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    final_a = du.load_model(tmp_path / "a" / "context_model_trained.pth", model=du.ContextUnet(3, 8, 5, 16))
    final_b = du.load_model(tmp_path / "b" / "context_model_trained.pth", model=du.ContextUnet(3, 8, 5, 16))
    assert torch.equal(final_a.out[3].weight, final_b.out[3].weight)
    rows = list(csv.DictReader(open(tmp_path / "b" / "loss_log.csv")))
    assert [int(r["step"]) for r in rows] == list(range(8))


def test_sigterm_stops_after_the_step_saves_and_resumes_exactly(tmp_path):
    images, labels = tiny_set()
    whole = tr.run(small_config(), images, labels, progress=False, log_every=1)

    def kill_at_step_3(state):
        if state.step == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    previous = signal.getsignal(signal.SIGTERM)
    part = tr.run(small_config(), images, labels, out_dir=tmp_path, progress=False, callback=kill_at_step_3)
    assert signal.getsignal(signal.SIGTERM) is previous  # the handler is given back
    assert part.stopped_by == "SIGTERM" and part.interrupted and part.step == 3
    resumed = tr.run(
        small_config(), images, labels, out_dir=tmp_path, resume=tmp_path / "checkpoint.pt", progress=False
    )
    assert resumed.losses == pytest.approx(whole.losses, abs=1e-6)
    assert torch.equal(resumed.model.out[3].weight, whole.model.out[3].weight)


def test_resuming_with_a_different_recipe_is_refused(tmp_path):
    images, labels = tiny_set()
    tr.run(small_config(), images, labels, out_dir=tmp_path, progress=False, max_steps=2)
    with pytest.raises(ValueError, match="different recipe"):
        tr.run(small_config(lr=5e-4), images, labels, resume=tmp_path / "checkpoint.pt", progress=False)


@pytest.mark.parametrize("other", ["fewer sprites", "other sprites"])
def test_resuming_on_other_data_is_refused(tmp_path, other):
    images, labels = tiny_set()
    tr.run(small_config(), images, labels, out_dir=tmp_path, progress=False, max_steps=2)
    if other == "fewer sprites":
        images, labels = images[:60], labels[:60]
    else:
        images = images.flip(0)
    with pytest.raises(ValueError, match="trained on other data"):
        tr.run(small_config(), images, labels, out_dir=tmp_path, resume=tmp_path / "checkpoint.pt", progress=False)


def test_a_folder_that_holds_a_run_is_refused_unless_resumed_or_overwritten(tmp_path):
    images, labels = tiny_set()
    tr.run(small_config(), images, labels, out_dir=tmp_path, progress=False, max_steps=2)
    before = (tmp_path / "checkpoint.pt").read_bytes()
    with pytest.raises(ValueError, match=r"holds another run .*--resume .*checkpoint\.pt.*--overwrite"):
        tr.run(small_config(), images, labels, out_dir=tmp_path, progress=False, max_steps=1)
    assert (tmp_path / "checkpoint.pt").read_bytes() == before  # nothing touched
    with pytest.raises(ValueError, match="continues in its own folder"):
        tr.run(small_config(), images, labels, out_dir=tmp_path / "elsewhere", resume=tmp_path / "checkpoint.pt")
    (tmp_path / "context_model_7.pth").write_bytes(b"an old snapshot")
    result = tr.run(small_config(), images, labels, out_dir=tmp_path, progress=False, max_steps=1, overwrite=True)
    assert result.step == 1 and not (tmp_path / "context_model_7.pth").exists()
    assert len(list(csv.DictReader(open(tmp_path / "loss_log.csv")))) == 1
    assert tr.claim_out_dir(tmp_path / "new", overwrite=True) == []  # --overwrite of a folder not made yet


def test_a_weights_file_cannot_be_resumed(tmp_path):
    path = du.save_model(du.course_model(), tmp_path / "m.pth")
    with pytest.raises(ValueError, match="not a training checkpoint"):
        tr.run(small_config(), *tiny_set(), resume=path, progress=False)
    (tmp_path / "README.md").write_text("# not a checkpoint\n")
    with pytest.raises(ValueError, match="not a training checkpoint") as err:
        tr.load_checkpoint(tmp_path / "README.md")
    assert "weights_only=False" not in str(err.value)


def test_learning_rate_decays_linearly_to_zero(tmp_path):
    tr.run(small_config(lr=1e-3), *tiny_set(), out_dir=tmp_path, progress=False, log_every=1)
    lrs = [float(r["lr"]) for r in csv.DictReader(open(tmp_path / "loss_log.csv"))]
    assert lrs == pytest.approx([1e-3 * (1 - k / 8) for k in range(8)], rel=1e-5)  # CSV keeps 6 digits


def test_snapshots_and_final_weights_are_written(tmp_path):
    tr.run(small_config(epochs=3, save_every=2), *tiny_set(), out_dir=tmp_path, progress=False)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(
        ["checkpoint.pt", "context_model_0.pth", "context_model_2.pth", "context_model_trained.pth", "loss_log.csv"]
    )


def test_the_training_run_trains_in_channels_last():
    result = tr.run(small_config(epochs=1), *tiny_set(40), progress=False)
    assert result.model.init_conv.conv1[0].weight.is_contiguous(memory_format=torch.channels_last)


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


class NormOfTheInput(torch.nn.Module):
    """A stand-in model whose only BatchNorm sees x_t itself, so its statistics have a closed form."""

    def __init__(self):
        super().__init__()
        self.norm = torch.nn.BatchNorm2d(3)

    def forward(self, x, t, c=None):
        return self.norm(x)


def test_measured_batchnorm_statistics_match_the_closed_form_of_x_t():
    # all-zero images: x_t = sqrt(1 - ab_t) eps, so E[x_t] = 0 and E[x_t^2] = mean over t ~ U{1..T} of (1 - ab_t)
    schedule = du.DDPMSchedule()
    ab = np.cumprod(1 - np.linspace(1e-4, 0.02, 501))[1:]  # the course's alpha-bar for t = 1..500
    images = torch.zeros(50, 3, 16, 16)
    model = NormOfTheInput()
    with torch.no_grad():
        model.norm.running_mean.fill_(5.0)  # stale statistics, as copied from another model
        model.norm.running_var.fill_(9.0)
    measured = tr.measure_batchnorm(model, schedule, images, None, 0.0, batches=200)
    expected_var = (1 - ab).mean()
    # 20,000 draws of t: the standard error of the mean of (1 - ab_t) is about 0.0025
    assert measured.norm.running_mean.abs().max().item() < 0.01
    assert measured.norm.running_var.tolist() == pytest.approx([expected_var] * 3, abs=0.01)
    assert measured.norm.momentum == 0.1 and not measured.training
    assert model.norm.running_mean.tolist() == [5.0] * 3  # the model given is left as it is
    # images of a constant 0.5: E[x_t] = 0.5 E[sqrt(ab_t)]
    measured = tr.measure_batchnorm(model, schedule, torch.full((50, 3, 16, 16), 0.5), None, 0.0, batches=200)
    assert measured.norm.running_mean.tolist() == pytest.approx([0.5 * np.sqrt(ab).mean()] * 3, abs=0.01)


def test_batchnorm_is_measured_without_syncing_processes():
    # NCCL runs train with SyncBatchNorm; rank 0 measures alone, so its copy must hold plain BatchNorm
    images, labels = tiny_set()
    model = du.ContextUnet(3, 8, 5, 16)
    synced = torch.nn.SyncBatchNorm.convert_sync_batchnorm(copy.deepcopy(model))
    measured = tr.measure_batchnorm(synced, du.DDPMSchedule(), images, labels, 0.1, batches=2)
    assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in measured.modules())
    assert any(isinstance(m, torch.nn.SyncBatchNorm) for m in synced.modules())  # the model given is unchanged
    plain = tr.measure_batchnorm(model, du.DDPMSchedule(), images, labels, 0.1, batches=2)
    for (k, a), b in zip(plain.state_dict().items(), measured.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


def test_snapshots_carry_measured_batchnorm_statistics_and_the_checkpoint_the_ema_as_it_is(tmp_path):
    images, labels = tiny_set()
    plain = tr.run(small_config(epochs=1), images, labels, out_dir=tmp_path / "a", progress=False)
    measured = tr.run(small_config(epochs=1, bn_batches=3), images, labels, out_dir=tmp_path / "b", progress=False)
    a = torch.load(tmp_path / "a" / "context_model_trained.pth", weights_only=True)
    b = torch.load(tmp_path / "b" / "context_model_trained.pth", weights_only=True)
    key = "init_conv.conv1.1.running_mean"
    assert torch.equal(a["init_conv.conv1.0.weight"], b["init_conv.conv1.0.weight"])  # the same EMA weights
    assert torch.equal(a[key], plain.ema_model.state_dict()[key])  # bn_batches=0: the raw model's statistics
    assert not torch.allclose(a[key], b[key])
    again = tr.measure_batchnorm(
        plain.ema_model, du.DDPMSchedule(), images, labels, 0.1, batches=3, seed=3
    )  # what the run measured: its recipe's context dropout, batches and seed
    assert torch.equal(again.state_dict()[key], b[key])
    checkpoint = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    assert torch.equal(checkpoint["ema"]["model"][key], measured.ema_model.state_dict()[key])
    assert torch.equal(checkpoint["ema"]["model"][key], a[key])


def test_atomic_save_leaves_no_partial_file(tmp_path):
    target = tmp_path / "x.pt"
    with pytest.raises(Exception):  # noqa: B017 - any pickling failure
        du.atomic_torch_save({"f": lambda: 0}, target)
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_resuming_with_more_epochs_continues_the_linear_decay_over_the_new_length(tmp_path):
    images, labels = tiny_set()
    tr.run(small_config(), images, labels, out_dir=tmp_path, progress=False, max_steps=4, log_every=1)
    result = tr.run(
        small_config(epochs=3), images, labels, out_dir=tmp_path, resume=tmp_path / "checkpoint.pt", progress=False
    )
    assert result.step == 12
    lrs = [float(r["lr"]) for r in csv.DictReader(open(tmp_path / "loss_log.csv"))]
    assert lrs[:4] == pytest.approx([1e-3 * (1 - k / 8) for k in range(4)], rel=1e-5)  # CSV keeps 6 digits
    assert lrs[4:] == pytest.approx([1e-3 * (1 - k / 12) for k in range(4, 12)], rel=1e-5)
