"""The samplers: closed-form behaviour on Gaussian data, determinism, guidance, and input checks."""

import numpy as np
import pytest
import torch
from conftest import GaussianOracle, du


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("n", [1, 7, 25, 500])
def test_ddim_with_the_true_noise_lands_exactly_on_the_data(schedule, n):
    """Data = a single point mu: the oracle's eps is the true noise, and DDIM is exact from any start."""
    oracle = GaussianOracle(schedule, mu=0.3, s=0.0)
    x, _ = du.sample_ddim(oracle, schedule, 4, n=n, generator=gen(n), progress=False)
    np.testing.assert_allclose(x.numpy(), 0.3, atol=1e-4)


def test_ddim_is_deterministic_for_a_fixed_start(schedule, small_model):
    x_T = torch.randn(3, 3, 16, 16, generator=gen(1))
    a, _ = du.sample_ddim(small_model, schedule, 3, n=10, x_T=x_T, progress=False)
    b, _ = du.sample_ddim(small_model, schedule, 3, n=10, x_T=x_T, progress=False, generator=gen(99))
    assert torch.equal(a, b)


@pytest.mark.parametrize(
    "sampler, kw", [("ddpm", {}), ("ddim", {"n": 500}), ("dpm", {"n": 25}), ("dpm-sde", {"n": 25})]
)
def test_samplers_with_the_ideal_model_land_on_the_data_distribution(schedule, sampler, kw):
    """x_0 ~ N(0.3, 0.5^2) per pixel: the samples must have that mean and spread."""
    oracle = GaussianOracle(schedule, mu=0.3, s=0.5, height=16)
    x, _ = du.SAMPLERS[sampler](oracle, schedule, 64, generator=gen(3), progress=False, save_rate=None, **kw)
    assert abs(x.mean().item() - 0.3) < 0.01
    assert abs(x.std().item() - 0.5) < 0.015


def test_dpm_solver_is_closer_to_the_data_spread_than_ddim_with_fewer_steps(schedule):
    """The point of a second-order solver: less discretisation error for fewer model calls."""
    oracle = GaussianOracle(schedule, mu=0.3, s=0.5, height=16)
    x_T = torch.randn(64, 3, 16, 16, generator=gen(10))
    for n_dpm, n_ddim in [(15, 25), (25, 100)]:
        ddim, _ = du.sample_ddim(oracle, schedule, 64, n=n_ddim, x_T=x_T, progress=False, save_rate=None)
        dpm, _ = du.sample_dpm_solver(oracle, schedule, 64, n=n_dpm, x_T=x_T, progress=False, save_rate=None)
        assert abs(dpm.std().item() - 0.5) < abs(ddim.std().item() - 0.5)


def test_ddpm_without_extra_noise_collapses_to_the_average(schedule):
    """Lesson 1: dropping the z term leaves samples near the data mean with far too little spread."""
    oracle = GaussianOracle(schedule, mu=0.3, s=0.5, height=16)
    x, _ = du.sample_ddpm(oracle, schedule, 64, add_noise=False, generator=gen(4), progress=False, save_rate=None)
    assert abs(x.mean().item() - 0.3) < 0.01
    assert x.std().item() < 0.5 / 4


def test_dpm_solver_first_order_coincides_with_ddim(schedule, small_model):
    x_T = torch.randn(2, 3, 16, 16, generator=gen(5))
    c = torch.eye(5)[:2]
    a, _ = du.sample_ddim(small_model, schedule, 2, n=12, context=c, x_T=x_T, progress=False)
    b, _ = du.sample_dpm_solver(small_model, schedule, 2, n=12, context=c, x_T=x_T, order=1, progress=False)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_sde_dpm_solver_first_order_is_ddpm_on_the_same_steps(schedule, small_model):
    """With the same noise, first-order SDE-DPM-Solver++ takes exactly DDPM's posterior steps."""
    x_T = torch.randn(2, 3, 16, 16, generator=gen(6))
    c = torch.eye(5)[1:3]
    a, _ = du.sample_ddpm_strided(small_model, schedule, 2, n=12, context=c, x_T=x_T, generator=gen(1), progress=False)
    kw = dict(context=c, x_T=x_T, generator=gen(1), order=1, sde=True, progress=False)
    b, _ = du.sample_dpm_solver(small_model, schedule, 2, n=12, **kw)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    c2, _ = du.sample_dpm_solver(small_model, schedule, 2, n=12, **{**kw, "generator": gen(2)})
    assert not torch.allclose(b, c2)  # the noise matters: it is not the ODE


def test_ddpm_draws_are_reproducible_with_a_generator(schedule, small_model):
    a, _ = du.sample_ddpm(small_model, schedule, 2, generator=gen(7), progress=False, save_rate=None)
    b, _ = du.sample_ddpm(small_model, schedule, 2, generator=gen(7), progress=False, save_rate=None)
    c, _ = du.sample_ddpm(small_model, schedule, 2, generator=gen(8), progress=False, save_rate=None)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_guidance_weight_zero_is_plain_conditional_sampling(schedule, small_model):
    c = torch.eye(5)[[0, 3]]
    a, _ = du.sample_ddpm(small_model, schedule, 2, context=c, guide_w=0.0, generator=gen(2), progress=False)
    b, _ = du.sample_ddpm(small_model, schedule, 2, context=c, generator=gen(2), progress=False)
    assert torch.equal(a, b)


def test_guided_step_uses_one_plus_w_conditional_minus_w_unconditional(schedule, small_model):
    w, c = 2.5, torch.eye(5)[[1, 2]]
    x_T = torch.randn(2, 3, 16, 16, generator=gen(6))
    x, _ = du.sample_ddim(small_model, schedule, 2, n=1, context=c, guide_w=w, x_T=x_T, progress=False)
    t = torch.ones(2)
    with torch.no_grad():
        eps = (1 + w) * small_model(x_T, t, c) - w * small_model(x_T, t, torch.zeros_like(c))
    expected = schedule.denoise_ddim(x_T, 500, 0, eps)
    torch.testing.assert_close(x, expected, atol=1e-5, rtol=1e-5)


def test_intermediate_frames_have_the_documented_shape(schedule, small_model):
    _, inter = du.sample_ddpm(small_model, schedule, 3, save_rate=100, progress=False)
    # kept at t = 500, 400, 300, 200, 100 and the last 7 steps (t = 7..1)
    assert inter.shape == (5 + 7, 3, 3, 16, 16)
    _, inter = du.sample_ddim(small_model, schedule, 3, n=10, progress=False)
    assert inter.shape == (10, 3, 3, 16, 16)
    _, inter = du.sample_ddim(small_model, schedule, 3, n=10, save_rate=None, progress=False)
    assert inter.shape == (0, 3, 3, 16, 16)


def test_callback_sees_every_step(schedule, small_model):
    seen = []
    du.sample_ddim(small_model, schedule, 1, n=9, progress=False, callback=lambda t, x: seen.append(t))
    assert seen == schedule.step_sequence(9)[1:]


def test_samplers_restore_the_models_training_mode(schedule, small_model):
    small_model.train()
    du.sample_ddim(small_model, schedule, 1, n=2, progress=False)
    assert small_model.training


def test_a_single_context_vector_is_used_for_every_sprite(schedule, small_model):
    x_T = torch.randn(3, 3, 16, 16, generator=gen(9))
    a, _ = du.sample_ddim(
        small_model, schedule, 3, n=3, context=torch.tensor([0, 0, 1.0, 0, 0]), x_T=x_T, progress=False
    )
    b, _ = du.sample_ddim(small_model, schedule, 3, n=3, context=torch.eye(5)[[2, 2, 2]], x_T=x_T, progress=False)
    assert torch.equal(a, b)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpm"])
@pytest.mark.parametrize("context", [torch.zeros(3, 4), torch.zeros(2, 5), torch.zeros(6)])
def test_a_context_that_does_not_fit_is_a_value_error(schedule, small_model, sampler, context):
    with pytest.raises(ValueError, match=r"context must have shape \(3, 5\)"):
        du.SAMPLERS[sampler](small_model, schedule, 3, context=context, progress=False)


@pytest.mark.parametrize("n", [0, 501, 1.5])
def test_impossible_step_counts_are_value_errors(schedule, small_model, n):
    with pytest.raises(ValueError, match="from 1 to 500"):
        du.sample_ddim(small_model, schedule, 2, n=n, progress=False)


def test_guidance_without_a_context_is_a_value_error(schedule, small_model):
    with pytest.raises(ValueError, match="needs a context"):
        du.sample_ddim(small_model, schedule, 2, n=2, guide_w=1.0, progress=False)
