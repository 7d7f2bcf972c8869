"""The lessons' written-out loops: plain torch in the cell, calling no module sampler, agreeing with the module.

Each test takes a loop cell out of its notebook (found by a line only that cell has), checks with the
syntax tree that it calls no sampler or training function of diffusion_utilities, runs it on a small
untrained ContextUnet(3, 8, 5, 16) with a fixed seed, and compares its result with the module's
function on the same noise.
"""

import ast
import difflib
import math
import time

import nbformat
import numpy as np
import pytest
import torch
import torch.nn as nn
from conftest import ROOT, du
from matplotlib.animation import AbstractMovieWriter

NOTEBOOKS = ROOT / "notebooks"
#: What a lesson's own loop must not call: the module's samplers and its training machinery.
FORBIDDEN = {"train", "diffusion_loss", "drop_context", "SAMPLERS", "EMA"}


def loop_cell(lesson: str, marker: str) -> str:
    """The source of the one code cell of notebooks/<lesson>.ipynb that contains ``marker``."""
    nb = nbformat.read(NOTEBOOKS / f"{lesson}.ipynb", as_version=4)
    found = [c.source for c in nb.cells if c.cell_type == "code" and marker in c.source]
    assert len(found) == 1, f"{lesson}: expected one code cell containing {marker!r}, found {len(found)}"
    return found[0]


def module_calls(source: str) -> set[str]:
    """Names of du.<name> that the code calls or refers to."""
    return {
        node.attr
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "du"
    }


def assert_calls_no_module_sampler(source: str):
    used = module_calls(source)
    bad = {name for name in used if name.startswith("sample_") or name in FORBIDDEN}
    assert not bad, f"the lesson's loop calls the module's {sorted(bad)}; it must write the algorithm out"
    loops = [node for node in ast.walk(ast.parse(source)) if isinstance(node, ast.For)]
    assert loops, "the cell has no for loop"


def run(source: str, **names) -> dict:
    namespace = {
        "torch": torch,
        "F": torch.nn.functional,
        "math": math,
        "du": du,
        "time": time,
        "tqdm": lambda iterable, **kwargs: iterable,  # no progress bars in tests
        "device": torch.device("cpu"),
        **names,
    }
    exec(compile(source, "<lesson cell>", "exec"), namespace)
    return namespace


@pytest.fixture
def tiny_model():
    """A small untrained ContextUnet(3, 8, 5, 16), fixed seed. Its layers are re-initialised to keep the
    variance (Kaiming), so that the context reaches the output and guidance visibly changes it
    (with PyTorch's default init the decoder's signal, and with it the context, almost vanishes)."""
    torch.manual_seed(0)
    model = du.ContextUnet(3, 8, 5, 16).eval()
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
                nn.init.kaiming_normal_(layer.weight)
    return model


def test_the_forbidden_call_check_can_fail():
    with pytest.raises(AssertionError, match="sample_ddpm"):
        assert_calls_no_module_sampler("for t in range(3):\n    x = du.sample_ddpm(model, schedule, 4)[0]\n")


# -- L1: DDPM --------------------------------------------------------------------------------------


L1_LOOP = "x, kept = x_T, {T: x_T.cpu()}"
L1_NO_NOISE = "x, kept_nn = x_T, {T: x_T.cpu()}"


def test_l1_ddpm_loop_matches_du_sample_ddpm_on_the_same_noise(tiny_model):
    source = loop_cell("L1_Sampling", L1_LOOP)
    assert "for t in tqdm(range(T, 0, -1)" in source and "schedule.denoise_add_noise" in source
    assert_calls_no_module_sampler(source)
    schedule = du.DDPMSchedule(30, 1e-4, 0.02)
    x_T = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(11))
    ns = run(
        source,
        model=tiny_model,
        schedule=schedule,
        N=3,
        T=schedule.T,
        x_T=x_T,
        gen=torch.Generator().manual_seed(12),
    )
    expected = du.sample_ddpm(
        tiny_model, schedule, 3, x_T=x_T, generator=torch.Generator().manual_seed(12), progress=False
    )[0]
    torch.testing.assert_close(ns["samples"], expected, rtol=1e-4, atol=1e-5)
    assert list(ns["kept"]) == [30, 20, 0], "kept holds x_T and every 20th state, keyed by timestep"
    torch.testing.assert_close(ns["kept"][0], expected)


def test_l1_loop_differs_from_a_different_generator(tiny_model):
    """The comparison above can fail: another draw of z gives other samples."""
    source = loop_cell("L1_Sampling", L1_LOOP)
    schedule = du.DDPMSchedule(30, 1e-4, 0.02)
    x_T = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(11))
    ns = run(source, model=tiny_model, schedule=schedule, N=3, T=30, x_T=x_T, gen=torch.Generator().manual_seed(13))
    other = du.sample_ddpm(
        tiny_model, schedule, 3, x_T=x_T, generator=torch.Generator().manual_seed(12), progress=False
    )[0]
    assert (ns["samples"] - other).abs().max() > 1e-3


def test_l1_no_noise_run_is_a_one_line_edit_of_the_loop(tiny_model):
    loop = loop_cell("L1_Sampling", L1_LOOP)
    no_noise = loop_cell("L1_Sampling", L1_NO_NOISE)
    assert_calls_no_module_sampler(no_noise)
    body = [line for line in loop.splitlines() if line.startswith("        ")]
    body_nn = [line.replace("kept_nn", "kept") for line in no_noise.splitlines() if line.startswith("        ")]
    changed = [d for d in difflib.ndiff(body, body_nn) if d[:1] in "+-"]
    assert len(changed) == 2, f"the loop bodies should differ in one line, got {changed}"
    assert "torch.zeros_like(x)" in changed[1] and "randn" not in changed[1]
    # and it runs the noise-free chain: x_{t-1} = (x_t - eps (1 - a_t) / sqrt(1 - ab_t)) / sqrt(a_t)
    schedule = du.DDPMSchedule(30, 1e-4, 0.02)
    x_T = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    ns = run(no_noise, model=tiny_model, schedule=schedule, N=2, T=30, x_T=x_T)
    x = x_T
    with torch.no_grad():
        for t in range(30, 0, -1):
            eps = tiny_model(x, torch.full((2,), t / 30))
            a, ab = schedule.a_t[t], schedule.ab_t[t]
            x = (x - eps * (1 - a) / (1 - ab).sqrt()) / a.sqrt()
    torch.testing.assert_close(ns["collapsed"], x, rtol=1e-4, atol=1e-5)


# -- L3: context dropout and guidance --------------------------------------------------------------


L3_STEP = "c_in = c * keep[:, None]"
L3_GUIDANCE = "eps = (1 + w) * eps_c - w * eps_0"


def fake_sprites(n=120):
    g = torch.Generator().manual_seed(5)
    images = torch.rand(n, 3, 16, 16, generator=g) * 2 - 1
    labels = torch.eye(5)[torch.randint(0, 5, (n,), generator=g)]
    return images, labels


@pytest.mark.parametrize("p_drop", [0.0, 1.0])
def test_l3_training_step_drops_the_context_with_the_mask(p_drop):
    source = loop_cell("L3_Context", L3_STEP)
    assert "optimizer.step()" in source and "loss.backward()" in source
    used = module_calls(source)
    assert not ({n for n in used if n.startswith("sample_")} | (used & FORBIDDEN)), used
    images, labels = fake_sprites()
    ns = run(source, images=images, labels=labels, p_drop=p_drop, schedule=du.DDPMSchedule(500, 1e-4, 0.02))
    if p_drop == 0.0:
        assert torch.equal(ns["c_in"], ns["c"])
    else:
        assert not ns["c_in"].any(), "with p = 1 every context must be the zero vector"
    assert math.isfinite(ns["loss"].item())


def test_l3_guidance_loop_matches_du_sample_ddim_with_guide_w(tiny_model):
    source = loop_cell("L3_Context", L3_GUIDANCE)
    assert_calls_no_module_sampler(source)
    schedule = du.DDPMSchedule(500, 1e-4, 0.02)
    ns = run(source, model=tiny_model, schedule=schedule, QUICK=True)
    ctx, w = ns["ctx"], ns["w"]
    assert w > 0
    expected = du.sample_ddim(
        tiny_model, schedule, len(ctx), 25, context=ctx, x_T=ns["x_T_g"], guide_w=w, progress=False
    )[0]
    # two model calls against one batched call: the convolutions round differently (1e-5 is too tight)
    torch.testing.assert_close(ns["guided_ours"], expected, rtol=1e-4, atol=1e-4)
    unguided = du.sample_ddim(tiny_model, schedule, len(ctx), 25, context=ctx, x_T=ns["x_T_g"], progress=False)[0]
    assert (ns["guided_ours"] - unguided).abs().max() > 1e-3, "guidance must change the result"


# -- L4: DDIM and DPM-Solver++(2M) -----------------------------------------------------------------


L4_DDIM = "x0_hat = (x - (1 - ab_t).sqrt() * eps) / ab_t.sqrt()"
L4_DPM = "math.expm1(-h) * D"


def test_l4_ddim_loop_matches_du_sample_ddim_and_keeps_its_sketches(tiny_model):
    source = loop_cell("L4_FastSampling", L4_DDIM)
    assert_calls_no_module_sampler(source)
    schedule = du.DDPMSchedule(500, 1e-4, 0.02)
    x_T = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(21))
    ns = run(source, model=tiny_model, schedule=schedule, N=3, T=500, x_T=x_T)
    expected = du.sample_ddim(tiny_model, schedule, 3, 25, x_T=x_T, progress=False)[0]
    torch.testing.assert_close(ns["samples"], expected, rtol=1e-4, atol=1e-5)
    assert len(ns["states"]) == 26 and torch.equal(ns["states"][0], x_T)
    # the first sketch is the closed form x0_hat = (x_T - sqrt(1 - ab_T) eps) / sqrt(ab_T)
    with torch.no_grad():
        eps = tiny_model(x_T, torch.ones(3))
    ab = schedule.ab_t[500]
    torch.testing.assert_close(ns["sketches"][0], (x_T - (1 - ab).sqrt() * eps) / ab.sqrt(), rtol=1e-4, atol=1e-4)


def test_l4_dpm_solver_loop_matches_du_sample_dpm_solver(tiny_model):
    source = loop_cell("L4_FastSampling", L4_DPM)
    assert_calls_no_module_sampler(source)
    schedule = du.DDPMSchedule(500, 1e-4, 0.02)
    x_T = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(22))
    ns = run(source, model=tiny_model, schedule=schedule, N=3, T=500, x_T=x_T)
    expected = du.sample_dpm_solver(tiny_model, schedule, 3, 15, x_T=x_T, progress=False)[0]
    torch.testing.assert_close(ns["dpm_ours"], expected, rtol=1e-4, atol=1e-4)
    first_order = du.sample_ddim(tiny_model, schedule, 3, 15, x_T=x_T, progress=False)[0]
    assert (ns["dpm_ours"] - first_order).abs().max() > 1e-4, "the second-order update must differ from DDIM"


# -- Animations: timesteps on every frame, x_T first, a fixed value range ---------------------------


class FrameRecorder(AbstractMovieWriter):
    """A movie writer that keeps, for every frame the animation draws, its title and its image data."""

    def __init__(self):
        super().__init__(fps=10)
        self.titles, self.images = [], []

    def setup(self, fig, outfile, dpi=None):
        super().setup(fig, outfile, dpi)

    def grab_frame(self, **savefig_kwargs):
        ax = self.fig.axes[0]
        self.titles.append(ax.get_title())
        self.images.append(np.array(ax.images[0].get_array(), dtype=np.float64))

    def finish(self):
        pass


def drawn_frames(ani, tmp_path) -> FrameRecorder:
    recorder = FrameRecorder()
    ani.save(tmp_path / "unused.gif", writer=recorder)
    return recorder


def sprite_pixels(grid: np.ndarray, size: int = 16, pad: int = 1) -> np.ndarray:
    """The pixels of a sprite grid without its padding lines."""
    keep_rows = np.arange(grid.shape[0]) % (size + pad) != 0
    keep_cols = np.arange(grid.shape[1]) % (size + pad) != 0
    return grid[keep_rows][:, keep_cols]


def test_animation_frames_start_at_x_T_and_carry_their_timesteps(tiny_model, tmp_path):
    schedule = du.DDPMSchedule(40, 1e-4, 0.02)
    x_T = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(31))
    _, frames, timesteps = du.sample_ddpm(
        tiny_model, schedule, 2, x_T=x_T, generator=torch.Generator().manual_seed(1), save_rate=10, progress=False
    )
    assert timesteps == [40, 30, 20, 10, 0], "x_T, then every 10th step: evenly spaced, no run of frames at the end"
    np.testing.assert_array_equal(frames[0], x_T.numpy())
    recorder = drawn_frames(du.plot_sample(frames, nrows=1, timesteps=timesteps), tmp_path)
    assert recorder.titles == [f"t = {t}" for t in timesteps]
    # the L1 loop keeps the same frames under the same timesteps
    ns = run(
        loop_cell("L1_Sampling", L1_LOOP),
        model=tiny_model,
        schedule=du.DDPMSchedule(40, 1e-4, 0.02),
        N=2,
        T=40,
        x_T=x_T,
        gen=torch.Generator().manual_seed(1),
    )
    assert list(ns["kept"]) == [40, 20, 0]
    np.testing.assert_allclose(ns["kept"][20].numpy(), frames[timesteps.index(20)], rtol=1e-4, atol=1e-5)


def test_fixed_range_keeps_the_contrast_that_stretching_hides(tmp_path):
    """A collapsed, low-contrast run (pixels of std 0.1 around 0): drawn on the fixed range [-1, 1] its
    contrast stays as it is, (x + 1) / 2 has std 0.05; stretched frame by frame it looks full-contrast."""
    g = torch.Generator().manual_seed(41)
    frames = (0.1 * torch.randn(3, 4, 3, 16, 16, generator=g)).numpy()
    fixed = drawn_frames(du.plot_sample(frames, nrows=1, fixed_range=True, timesteps=[20, 10, 0]), tmp_path)
    stretched = drawn_frames(du.plot_sample(frames, nrows=1, timesteps=[20, 10, 0]), tmp_path)
    for frame, drawn_fixed, drawn_stretched in zip(frames, fixed.images, stretched.images, strict=True):
        expected_std = np.clip((frame + 1) / 2, 0, 1).std()
        assert abs(sprite_pixels(drawn_fixed).std() - expected_std) < 1e-3 * expected_std + 1e-6
        assert sprite_pixels(drawn_stretched).std() > 2.5 * expected_std
