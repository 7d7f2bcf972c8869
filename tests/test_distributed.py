"""Data-parallel training under torchrun (scripts/distributed.py, issue 15).

Two gloo processes on the CPU train one model: after a few steps its weights are those of one process
that accumulates the gradients of the same per-rank micro-batches with the same draws (written out
below, not through the training code); rank 0's checkpoint resumes in one process and in two; the
second process writes nothing; and without torchrun a run gives the losses it gave before.

One launch of `torchrun --nproc_per_node=2 scripts/train.py` and one resume under torchrun are shared
by the tests (a module fixture): each process starts in its own folder (rank0/, rank1/) and the run's
--out is relative, so a file rank 1 wrote would land in rank1/.
"""

import contextlib
import csv
import io
import itertools
import json
import os
import subprocess
import sys
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import train
import training_run as tr
from conftest import ROOT, du, write_sprites
from distributed import Processes

# 16 sprites of 8x8, global batch 8: 2 steps an epoch
RECIPE = ["--context", "--context-drop", "0.5", "--n-feat", "8", "--batch-size", "8", "--seed", "5", "--no-progress"]
SEED, N, SIZE, BATCH, DROP, STEPS = 5, 16, 8, 8, 0.5, 4  # the recipe's numbers; 2 epochs = 4 steps

# The losses of `train.py RECIPE --epochs 2` in one process, taken before data-parallel training was added
# (commit 1ff3a24); the loss log keeps 6 digits, and float rounding differs with the thread count and CPU.
PINNED = [1.096477, 1.118754, 1.039797, 1.141705]

# Each process starts in rank<LOCAL_RANK>/ of the test's folder and runs train.py's main twice (one launch):
# a new run stopped at step 3, in a process group the harness below makes (train.py uses a group it finds),
# then its resume, which makes its own group as under torchrun. Between the two, rank 0 (the harness, not
# the training code) copies the run at step 3 to at_step_3/, for the reference and a resume in one process.
IN_OWN_FOLDER = 'cd "rank$LOCAL_RANK" && exec "$0" "$@"'
RUN_THEN_RESUME = """
import os, shutil, sys
import torch.distributed as dist
import train
# the first group on keys of its own in torchrun's store: a second default group made in the same process
# would share the first one's keys and could read its stale addresses
store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False)
rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
dist.init_process_group("gloo", store=dist.PrefixStore("first", store), rank=rank, world_size=world_size)
cut = sys.argv.index("--then")
code = train.main(sys.argv[1:cut])
if code == 0 and rank == 0:
    shutil.copytree("run", "../at_step_3")
dist.destroy_process_group()
sys.exit(code or train.main(sys.argv[cut + 1 :]))
"""


def losses(out_dir):
    return [float(r["loss"]) for r in csv.DictReader(open(out_dir / "loss_log.csv"))]


@pytest.fixture(scope="module")
def launch(tmp_path_factory):
    """`torchrun --nproc_per_node=2`: a run of 2 epochs (4 steps) stopped at step 3 (inside the second
    epoch) and resumed to the end in place; then, in this process, the copy at step 3 resumed in one."""
    root = tmp_path_factory.mktemp("ddp")
    data = root / "data"
    data.mkdir()
    write_sprites(data, n=N, size=SIZE)
    for r in (0, 1):
        (root / f"rank{r}").mkdir()
    first = [*RECIPE, "--epochs", "2", "--max-steps", "3", "--data", data, "--out", "run"]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "--no-python"]
    command += ["sh", "-c", IN_OWN_FOLDER, sys.executable, "-c", RUN_THEN_RESUME, *first]
    command += ["--then", "--resume", "run/checkpoint.pt", "--no-progress"]
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "scripts"), env.get("PYTHONPATH", "")])
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    _, printed_first, printed_resume = done.stdout.split("Training on ")
    run, one = root / "rank0" / "run", root / "at_step_3"
    checkpoint_at_3, log_at_3 = torch.load(one / "checkpoint.pt", weights_only=True), losses(one)
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        one_code = train.main(["--resume", str(one / "checkpoint.pt"), "--no-progress"])
    return types.SimpleNamespace(**locals(), printed_one=printed.getvalue())


def cancelled_biases() -> set:
    """The names of the convolution biases that a per-channel normalisation follows directly.

    A BatchNorm (in training mode), or a GroupNorm with one channel per group, subtracts each
    channel's mean, so the loss does not depend on such a bias: its gradient is rounding noise, and
    Adam (which divides by the gradient's own size) turns that noise into steps of about lr in a
    direction set by the rounding. Two correct runs that add their gradients in another order (one
    process vs DDP, 1 vs 2 torch threads) then disagree there, and only there, so the comparison
    leaves these parameters out.
    """

    def per_channel(norm) -> bool:
        group_norm = isinstance(norm, torch.nn.GroupNorm) and norm.num_groups == norm.num_channels
        return isinstance(norm, torch.nn.BatchNorm2d) or group_norm

    names = set()
    for name, module in du.ContextUnet(3, 8, 5, SIZE).named_modules():
        children = list(module.named_children()) if isinstance(module, torch.nn.Sequential) else []
        for (conv_name, conv), (_, norm) in itertools.pairwise(children):
            if isinstance(conv, torch.nn.Conv2d | torch.nn.ConvTranspose2d) and per_channel(norm):
                names.add(f"{name}.{conv_name}.bias")
    return names


def parameters(state_dict):
    """The learned weights that the loss depends on: no BatchNorm running statistics, and none of
    the biases a normalisation cancels (see cancelled_biases)."""
    stats = ("running_mean", "running_var", "num_batches_tracked")
    cancelled = cancelled_biases()
    return {k: v for k, v in state_dict.items() if not k.endswith(stats) and k not in cancelled}


def seed_of(step, stream):
    """The documented seeding: stream 0 the order, 1 + r rank r's draws, from (seed, step where it began)."""
    return int(np.random.SeedSequence([SEED, step, stream]).generate_state(1)[0])


def reference_weights(data_dir, phases):
    """What the data-parallel run computes, written out in one process: every step takes the next global
    batch of one shared order, each rank r of W its micro-batch batch[r::W] with its own generator
    (dropout, then t, then noise), and the gradient is the mean of the ranks' gradients (accumulated).
    ``phases``: (until_step, W); each phase seeds its ranks' generators at the step it begins.
    Returns the weights and their EMA (of the model itself, updated after every step)."""
    images, labels = du.CustomDataset(data_dir / "sprites_16x16.npy", data_dir / "sprite_labels_16x16.npy").tensors()
    schedule = du.DDPMSchedule()
    torch.manual_seed(SEED)
    model = du.ContextUnet(3, 8, 5, SIZE).to(memory_format=torch.channels_last)  # as the training run builds it
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    ema = du.EMA(model, 0.999)
    order = torch.Generator().manual_seed(seed_of(0, 0))
    begin = 0
    for until, world in phases:
        generators = [torch.Generator().manual_seed(seed_of(begin, 1 + r)) for r in range(world)]
        for step in range(begin, until):
            if step % 2 == 0:  # a new epoch
                perm = torch.randperm(N, generator=order)
            batch = perm[(step % 2) * BATCH : (step % 2 + 1) * BATCH]
            for group in optimizer.param_groups:
                group["lr"] = 1e-3 * (1 - step / STEPS)
            optimizer.zero_grad()
            for r, gen in enumerate(generators):
                idx = batch[r::world]
                x0 = images[idx]
                keep = (torch.rand(len(idx), generator=gen) >= DROP).float()
                t = torch.randint(1, schedule.T + 1, (len(idx),), generator=gen)
                noise = torch.randn(x0.shape, generator=gen)
                ab = schedule.ab_t[t].view(-1, 1, 1, 1)
                pred = model(
                    ab.sqrt() * x0 + (1 - ab).sqrt() * noise, t.float() / schedule.T, labels[idx] * keep[:, None]
                )
                (F.mse_loss(pred, noise) / world).backward()
            optimizer.step()
            ema.update(model)
        begin = until
    return parameters(model.state_dict()), parameters(ema.model.state_dict())


def assert_same_weights(checkpoint, reference):
    """The checkpoint's weights and EMA weights are the reference's (BatchNorm running statistics aside)."""
    for state_dict, expected in zip((checkpoint["model"], checkpoint["ema"]["model"]), reference, strict=True):
        got = parameters(state_dict)
        assert got.keys() == expected.keys()
        for k, v in expected.items():
            # atol: 1% of one Adam step (lr 1e-3); adding the gradients in another order moves a few
            # weights with tiny gradients by up to ~3e-6, a wrong batch or noise by ~lr
            torch.testing.assert_close(got[k], v, rtol=1e-5, atol=1e-5, msg=lambda m, k=k: f"{k}: {m}")


def test_two_processes_train_the_weights_of_one_that_accumulates_their_micro_batches(launch):
    at_3 = launch.checkpoint_at_3
    assert at_3["step"] == 3 and at_3["world_size"] == 2 and len(at_3["generators"]) == 2
    assert_same_weights(at_3, reference_weights(launch.data, [(3, 2)]))
    # and not those of one process training on the whole batches (what a run that did not shard would give)
    whole, _ = reference_weights(launch.data, [(3, 1)])
    assert not all(torch.allclose(at_3["model"][k], v, atol=1e-6) for k, v in whole.items())


def test_the_run_says_how_it_runs(launch):
    first_line = launch.printed_first.splitlines()[0]
    assert "in 2 processes (torchrun; DistributedDataParallel over gloo), batch 8 = 2 x 4 per process" in first_line
    assert "BatchNorm statistics per process" in first_line
    info = json.loads((launch.run / "run.json").read_text())
    assert (info["world_size"], info["backend"], info["per_process_batch"]) == (2, "gloo", 4)
    assert info["command"].startswith("torchrun --standalone --nproc_per_node=2 scripts/train.py")
    assert "Resume with: torchrun --standalone --nproc_per_node=2 " in launch.printed_first


def test_rank_0s_checkpoint_resumes_exactly_in_two_processes(launch):
    assert "Done: 4 steps" in launch.printed_resume
    assert losses(launch.run)[:3] == launch.log_at_3 and len(losses(launch.run)) == STEPS
    final = torch.load(launch.run / "checkpoint.pt", weights_only=True)
    assert_same_weights(final, reference_weights(launch.data, [(STEPS, 2)]))  # its generators went on
    assert (launch.run / "context_model_trained.pth").exists()


def test_rank_0s_checkpoint_resumes_in_one_process_with_reseeded_draws(launch):
    assert launch.one_code == 0, launch.printed_one
    assert "written by 2 process(es), this run has 1" in launch.printed_one and "re-seeded" in launch.printed_one
    assert losses(launch.one)[:3] == launch.log_at_3 and len(losses(launch.one)) == STEPS
    final = torch.load(launch.one / "checkpoint.pt", weights_only=True)
    assert final["world_size"] == 1 and final["step"] == STEPS
    assert_same_weights(final, reference_weights(launch.data, [(3, 2), (STEPS, 1)]))
    assert (launch.one / "context_model_trained.pth").exists()


def test_the_second_process_writes_nothing(launch):
    assert (launch.run / "checkpoint.pt").exists()  # rank 0 wrote into its folder's run/
    assert list((launch.root / "rank1").iterdir()) == []  # rank 1, started in its own folder, wrote nothing


def test_the_global_batch_must_split_over_the_processes():
    assert tr.per_process_batch(8, 16, Processes(2)) == 4
    assert tr.per_process_batch(100, 16, Processes(4)) == 4  # a batch larger than the data set is the data set
    with pytest.raises(ValueError, match="does not split over 3 processes"):
        tr.per_process_batch(8, 16, Processes(3))


def test_torchrun_s_environment_names_the_process():
    p = Processes.from_env({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"})
    assert (p.world_size, p.rank, p.local_rank, p.local_world_size) == (4, 3, 1, 2)
    assert p.distributed and not p.is_main
    assert not Processes.from_env({}).distributed and not Processes.from_env({"WORLD_SIZE": "1"}).distributed


def test_without_torchrun_a_run_gives_the_losses_it_gave_before(tmp_path, capsys):
    write_sprites(tmp_path, n=N, size=SIZE)
    assert train.main([*RECIPE, "--epochs", "2", "--data", str(tmp_path), "--out", str(tmp_path / "run")]) == 0
    assert losses(tmp_path / "run") == pytest.approx(PINNED, rel=5e-4)
    assert "in 1 process, batch 8" in capsys.readouterr().out.splitlines()[0]
