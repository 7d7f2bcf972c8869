"""Lesson 2 writes the training loop out in a code cell; du.train must be that loop plus bookkeeping.

The test reads the loop cell from the notebook, checks with its syntax tree that the loop does the
steps itself (no module training function or sampler inside), runs it for a few steps on a few
sprites with a tiny network, and compares its losses and weights with du.train on the same seed.
"""

import ast
import json

import pytest
import torch
import torch.nn.functional as F
from conftest import ROOT, du

NOTEBOOK = ROOT / "notebooks" / "L2_Training.ipynb"
FORBIDDEN = {"train", "diffusion_loss", "sample_ddpm", "sample_ddim", "sample_dpm_solver", "sample_dpm_solver_sde"}


def loop_cell() -> str:
    """The one code cell of lesson 2 with a training loop: a `for` loop calling backward()."""
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    found = [
        "".join(c["source"]) for c in cells if c["cell_type"] == "code" and "loss.backward()" in "".join(c["source"])
    ]
    assert len(found) == 1, f"expected one training-loop cell in {NOTEBOOK.name}, found {len(found)}"
    return found[0]


def calls(node) -> set[str]:
    """Names of the functions called under ``node``: `f` for f(...), `a.b` for a.b(...)."""
    out = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Call):
            f = n.func
            if isinstance(f, ast.Name):
                out.add(f.id)
            elif isinstance(f, ast.Attribute):
                out.add(f"{f.value.id}.{f.attr}" if isinstance(f.value, ast.Name) else f.attr)
    return out


def test_the_loop_cell_does_each_step_itself():
    tree = ast.parse(loop_cell())
    loops = [n for n in ast.walk(tree) if isinstance(n, ast.For)]
    assert len(loops) >= 1
    inside = calls(loops[0])
    assert not {f"du.{name}" for name in FORBIDDEN} & inside, inside
    for needed in ["torch.randint", "torch.randn", "schedule.perturb_input", "model", "F.mse_loss", "loss.backward",
                   "optimizer.step", "ema.update"]:  # fmt: skip
        assert needed in inside, f"the loop does not call {needed}"
    lines = [line for line in loop_cell().splitlines() if line.strip()]
    assert len(lines) <= 16, f"the loop cell should be short enough to read at once ({len(lines)} lines)"


def test_the_loop_cell_gives_the_losses_of_du_train_on_the_same_seed():
    steps, batch, lr = 4, 8, 1e-3
    gen_data = torch.Generator().manual_seed(0)
    train_images = torch.rand(steps * batch, 3, 16, 16, generator=gen_data) * 2 - 1
    schedule = du.DDPMSchedule(500, 1e-4, 0.02)

    def fresh():
        torch.manual_seed(0)
        return du.ContextUnet(3, 8, 5, 16)

    class Live:  # stands in for the notebook's display handle
        def update(self, fig):
            pass

    # the notebook's setup cell, with a tiny network and a few random sprites
    model = fresh()
    gen = torch.Generator("cpu").manual_seed(0)
    env = {
        "torch": torch, "F": F, "du": du, "schedule": schedule, "device": torch.device("cpu"), "QUICK": False,
        "STEPS": steps, "BATCH": batch, "LR": lr, "train_images": train_images, "model": model,
        "optimizer": torch.optim.Adam(model.parameters(), lr=lr), "ema": du.EMA(model), "gen": gen,
        "perm": torch.randperm(len(train_images), generator=gen), "losses": [], "live": Live(),
    }  # fmt: skip
    exec(compile(loop_cell(), str(NOTEBOOK), "exec"), env)

    twin, twin_losses = fresh(), []
    state = du.train(
        twin, schedule, train_images, epochs=1, batch_size=batch, lr=lr, seed=0, progress=False,
        callback=lambda s: twin_losses.append(s.loss.item()),
    )  # fmt: skip
    assert len(env["losses"]) == len(twin_losses) == steps
    assert env["losses"] == pytest.approx(twin_losses, rel=1e-5)
    for a, b in zip(env["ema"].model.parameters(), state.ema.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
