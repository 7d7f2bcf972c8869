"""The schedule and the one-step formulas, against closed forms computed independently here."""

import itertools

import numpy as np
import pytest
import torch

T, B1, B2 = 500, 1e-4, 0.02


def reference_schedule():
    """b_t, a_t, ab_t from the definitions, with plain Python floats."""
    b = [B1 + (B2 - B1) * i / T for i in range(T + 1)]
    a = [1 - x for x in b]
    ab, prod = [], 1.0
    for x in a:
        prod *= x
        ab.append(prod)
    ab[0] = 1.0
    return np.array(b), np.array(a), np.array(ab)


def test_schedule_values_match_the_definitions(schedule):
    b, a, ab = reference_schedule()
    assert schedule.b_t.shape == schedule.a_t.shape == schedule.ab_t.shape == (T + 1,)
    np.testing.assert_allclose(schedule.b_t.numpy(), b, rtol=1e-6)
    np.testing.assert_allclose(schedule.a_t.numpy(), a, rtol=1e-6)
    np.testing.assert_allclose(schedule.ab_t.numpy(), ab, rtol=1e-5)
    assert schedule.ab_t[0] == 1.0
    # nearly pure noise at T: log ab_T = sum log(1 - b_t) ~ -sum b_t - sum b_t^2 / 2, with the sums
    # of a linear ramp in closed form (a_t[0] counts in ab_t[T] although ab_t[0] itself is set to 1)
    sum_b = (T + 1) * (B1 + B2) / 2
    sum_b2 = (T + 1) * (B1 * B1 + B1 * B2 + B2 * B2) / 3
    assert float(schedule.ab_t[T]) == pytest.approx(np.exp(-sum_b - sum_b2 / 2), rel=0.005)


def test_posterior_variance_matches_its_closed_form(schedule):
    b, _, ab = reference_schedule()
    t = np.arange(2, T + 1)
    expected = b[t] * (1 - ab[t - 1]) / (1 - ab[t])
    np.testing.assert_allclose(schedule.b_tilde_t.numpy()[t], expected, rtol=1e-5)


@pytest.mark.parametrize("t", [1, 50, 250, 500])
def test_perturb_input_variance_given_x0_zero_is_one_minus_ab_t(schedule, t):
    gen = torch.Generator().manual_seed(t)
    noise = torch.randn(4000, 3, 4, 4, generator=gen)
    x_t = schedule.perturb_input(torch.zeros_like(noise), torch.full((4000,), t), noise)
    expected = 1 - reference_schedule()[2][t]
    assert abs(x_t.var().item() - expected) < 0.03 * expected + 1e-6


def test_perturb_input_has_unit_variance_at_T_and_keeps_sqrt_ab_of_the_signal(schedule):
    noise = torch.randn(20000, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    x0 = torch.full_like(noise, 0.7)
    x_t = schedule.perturb_input(x0, torch.full((20000,), T), noise)
    assert abs(x_t.var().item() - 1) < 0.02
    x_t = schedule.perturb_input(x0, torch.full((20000,), 100), noise)
    ab = reference_schedule()[2][100]
    assert abs(x_t.mean().item() - 0.7 * np.sqrt(ab)) < 0.01
    # the course's bug scaled noise by (1 - ab_t): this pins sqrt(1 - ab_t)
    assert abs(x_t.std().item() - np.sqrt(1 - ab)) < 0.01


@pytest.mark.parametrize(
    "t, match",
    [
        (torch.full((2,), 0.5), "integer tensor"),
        (torch.tensor([1, 2, 3]), r"shape \(2,\)"),
        (torch.tensor([1, 501]), "1..500"),
    ],
)
def test_perturb_input_rejects_bad_timesteps(schedule, t, match):
    with pytest.raises(ValueError, match=match):
        schedule.perturb_input(torch.zeros(2, 3, 4, 4), t, torch.zeros(2, 3, 4, 4))


@pytest.mark.parametrize("t", [2, 10, 250, 500])
def test_ddpm_step_mean_is_the_posterior_mean(schedule, t):
    """With the true noise and z = 0 the step returns mu~_t(x_t, x_0) (Ho et al. eq. 7)."""
    b, a, ab = reference_schedule()
    gen = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(4, 3, 4, 4, generator=gen).double(), torch.randn(4, 3, 4, 4, generator=gen).double()
    x_t = np.sqrt(ab[t]) * x0 + np.sqrt(1 - ab[t]) * eps
    mu = (np.sqrt(ab[t - 1]) * b[t] / (1 - ab[t])) * x0 + (np.sqrt(a[t]) * (1 - ab[t - 1]) / (1 - ab[t])) * x_t
    out = schedule.denoise_add_noise(x_t.float(), t, eps.float(), z=torch.zeros(4, 3, 4, 4))
    np.testing.assert_allclose(out.numpy(), mu.numpy(), atol=2e-4)


@pytest.mark.parametrize("posterior", [False, True])
def test_ddpm_step_noise_has_the_chosen_variance(schedule, posterior):
    b, _, ab = reference_schedule()
    t = 300
    z = torch.ones(1, 3, 2, 2)
    out = schedule.denoise_add_noise(
        torch.zeros(1, 3, 2, 2), t, torch.zeros(1, 3, 2, 2), z, posterior_variance=posterior
    )
    var = b[t] * (1 - ab[t - 1]) / (1 - ab[t]) if posterior else b[t]
    np.testing.assert_allclose(out.numpy(), np.sqrt(var), rtol=1e-5)


@pytest.mark.parametrize("t, t_prev", [(500, 475), (300, 100), (20, 0)])
def test_ddim_step_with_the_true_noise_lands_on_the_forward_process(schedule, t, t_prev):
    _, _, ab = reference_schedule()
    gen = torch.Generator().manual_seed(2)
    x0, eps = torch.randn(3, 3, 4, 4, generator=gen), torch.randn(3, 3, 4, 4, generator=gen)
    x_t = np.sqrt(ab[t]) * x0 + np.sqrt(1 - ab[t]) * eps
    expected = np.sqrt(ab[t_prev]) * x0 + np.sqrt(1 - ab[t_prev]) * eps
    out = schedule.denoise_ddim(x_t, t, t_prev, eps)
    np.testing.assert_allclose(out.numpy(), expected.numpy(), atol=1e-4)


@pytest.mark.parametrize("n", [1, 7, 20, 25, 333, 499, 500])
def test_step_sequence_works_for_any_n(schedule, n):
    steps = schedule.step_sequence(n)
    assert len(steps) == n + 1 and steps[0] == T and steps[-1] == 0
    assert all(s > p for s, p in itertools.pairwise(steps))
    gaps = np.diff(steps)
    assert gaps.min() >= -np.ceil(T / n) and gaps.max() <= -np.floor(T / n)


@pytest.mark.parametrize("n", [0, -3, 501, 2.5, "10"])
def test_step_sequence_refuses_impossible_step_counts(schedule, n):
    with pytest.raises(ValueError, match="from 1 to 500"):
        schedule.step_sequence(n)


@pytest.mark.parametrize("t", [2, 100, 500])
def test_ddim_with_eta_one_on_consecutive_steps_is_the_ddpm_posterior_step(schedule, t):
    b, _, ab = reference_schedule()
    gen = torch.Generator().manual_seed(t)
    x_t, eps, z = (torch.randn(2, 3, 4, 4, generator=gen) for _ in range(3))
    x0 = (x_t.double() - np.sqrt(1 - ab[t]) * eps.double()) / np.sqrt(ab[t])
    a_t = 1 - b[t]
    mean = (np.sqrt(ab[t - 1]) * b[t] / (1 - ab[t])) * x0 + (
        np.sqrt(a_t) * (1 - ab[t - 1]) / (1 - ab[t])
    ) * x_t.double()
    std = np.sqrt(b[t] * (1 - ab[t - 1]) / (1 - ab[t]))
    out = schedule.denoise_ddim(x_t, t, t - 1, eps, eta=1.0, z=z)
    np.testing.assert_allclose(out.numpy(), (mean + std * z.double()).numpy(), atol=3e-4)
