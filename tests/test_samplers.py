"""The samplers: closed-form behaviour on Gaussian data, determinism, guidance, and input checks."""

import numpy as np
import pytest
import torch
from conftest import GaussianOracle, du
from evaluation import SAMPLERS


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("n", [1, 7, 25, 500])
def test_ddim_with_the_true_noise_lands_exactly_on_the_data(schedule, n):
    """Data = a single point mu: the oracle's eps is the true noise, and DDIM is exact from any start."""
    oracle = GaussianOracle(schedule, mu=0.3, s=0.0)
    x, _, _ = du.sample_ddim(oracle, schedule, 4, steps=n, generator=gen(n), progress=False)
    np.testing.assert_allclose(x.numpy(), 0.3, atol=1e-4)


def test_ddim_is_deterministic_for_a_fixed_start(schedule, small_model):
    x_T = torch.randn(3, 3, 16, 16, generator=gen(1))
    a, _, _ = du.sample_ddim(small_model, schedule, 3, steps=10, x_T=x_T, progress=False)
    b, _, _ = du.sample_ddim(small_model, schedule, 3, steps=10, x_T=x_T, progress=False, generator=gen(99))
    assert torch.equal(a, b)


@pytest.mark.parametrize(
    "sampler, kw", [("ddpm", {}), ("ddim", {"steps": 500}), ("dpm", {"steps": 25}), ("dpm-sde", {"steps": 25})]
)
def test_samplers_with_the_ideal_model_land_on_the_data_distribution(schedule, sampler, kw):
    """x_0 ~ N(0.3, 0.5^2) per pixel: the samples must have that mean and spread."""
    oracle = GaussianOracle(schedule, mu=0.3, s=0.5, height=16)
    x, _, _ = SAMPLERS[sampler](oracle, schedule, 64, generator=gen(3), progress=False, save_rate=None, **kw)
    assert abs(x.mean().item() - 0.3) < 0.01
    assert abs(x.std().item() - 0.5) < 0.015


def test_dpm_solver_is_closer_to_the_data_spread_than_ddim_with_fewer_steps(schedule):
    """The point of a second-order solver: less discretisation error for fewer model calls."""
    oracle = GaussianOracle(schedule, mu=0.3, s=0.5, height=16)
    x_T = torch.randn(64, 3, 16, 16, generator=gen(10))
    for n_dpm, n_ddim in [(15, 25), (25, 100)]:
        ddim, _, _ = du.sample_ddim(oracle, schedule, 64, steps=n_ddim, x_T=x_T, progress=False, save_rate=None)
        dpm, _, _ = du.sample_dpm_solver(oracle, schedule, 64, steps=n_dpm, x_T=x_T, progress=False, save_rate=None)
        assert abs(dpm.std().item() - 0.5) < abs(ddim.std().item() - 0.5)


def test_ddpm_without_extra_noise_collapses_to_the_average(schedule):
    """Lesson 1: the DDPM loop with z = 0 leaves samples near the data mean with far too little spread."""
    oracle = GaussianOracle(schedule, mu=0.3, s=0.5, height=16)
    x = torch.randn(64, 3, 16, 16, generator=gen(4))
    for t in range(schedule.T, 0, -1):
        eps = oracle(x, torch.full((1,), t / schedule.T))
        x = schedule.denoise_add_noise(x, t, eps, z=torch.zeros_like(x))
    assert abs(x.mean().item() - 0.3) < 0.01
    assert x.std().item() < 0.5 / 4
    with_noise, _, _ = du.sample_ddpm(oracle, schedule, 64, generator=gen(4), progress=False, save_rate=None)
    assert abs(with_noise.std().item() - 0.5) < 0.015  # the control: the same loop with fresh noise keeps the spread


def test_dpm_solver_first_order_coincides_with_ddim(schedule, small_model):
    x_T = torch.randn(2, 3, 16, 16, generator=gen(5))
    c = torch.eye(5)[:2]
    a, _, _ = du.sample_ddim(small_model, schedule, 2, steps=12, context=c, x_T=x_T, progress=False)
    b, _, _ = du.sample_dpm_solver(small_model, schedule, 2, steps=12, context=c, x_T=x_T, order=1, progress=False)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_sde_dpm_solver_first_order_is_ddpm_with_the_posterior_variance_on_the_same_steps(schedule, small_model):
    """With the same noise, first-order SDE-DPM-Solver++ takes exactly DDPM's posterior steps."""
    x_T = torch.randn(2, 3, 16, 16, generator=gen(6))
    c = torch.eye(5)[1:3]
    kw0 = dict(context=c, x_T=x_T, generator=gen(1), posterior_variance=True, progress=False)
    a, _, _ = du.sample_ddpm(small_model, schedule, 2, 12, **kw0)
    kw = dict(context=c, x_T=x_T, generator=gen(1), order=1, progress=False)
    b, _, _ = du.sample_dpm_solver_sde(small_model, schedule, 2, steps=12, **kw)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    c2, _, _ = du.sample_dpm_solver_sde(small_model, schedule, 2, steps=12, **{**kw, "generator": gen(2)})
    assert not torch.allclose(b, c2)  # the noise matters: it is not the ODE


def test_ddpm_draws_are_reproducible_with_a_generator(small_model):
    schedule = du.DDPMSchedule(50)  # any T: fewer steps keep the test short
    a, _, _ = du.sample_ddpm(small_model, schedule, 2, generator=gen(7), progress=False, save_rate=None)
    b, _, _ = du.sample_ddpm(small_model, schedule, 2, generator=gen(7), progress=False, save_rate=None)
    c, _, _ = du.sample_ddpm(small_model, schedule, 2, generator=gen(8), progress=False, save_rate=None)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_guidance_weight_zero_is_plain_conditional_sampling(small_model):
    schedule, c = du.DDPMSchedule(50), torch.eye(5)[[0, 3]]
    a, _, _ = du.sample_ddpm(small_model, schedule, 2, context=c, guide_w=0.0, generator=gen(2), progress=False)
    b, _, _ = du.sample_ddpm(small_model, schedule, 2, context=c, generator=gen(2), progress=False)
    assert torch.equal(a, b)


def test_guided_step_uses_one_plus_w_conditional_minus_w_unconditional(schedule, small_model):
    w, c = 2.5, torch.eye(5)[[1, 2]]
    x_T = torch.randn(2, 3, 16, 16, generator=gen(6))
    x, _, _ = du.sample_ddim(small_model, schedule, 2, steps=1, context=c, guide_w=w, x_T=x_T, progress=False)
    t = torch.ones(2)
    with torch.no_grad():
        eps = (1 + w) * small_model(x_T, t, c) - w * small_model(x_T, t, torch.zeros_like(c))
    expected = schedule.denoise_ddim(x_T, 500, 0, eps)
    torch.testing.assert_close(x, expected, atol=1e-5, rtol=1e-5)


def test_intermediate_frames_start_at_x_T_and_carry_their_timesteps(schedule, small_model):
    x_T = torch.randn(3, 3, 16, 16, generator=gen(12))
    x, inter, ts = du.sample_ddpm(small_model, schedule, 3, x_T=x_T, save_rate=100, progress=False)
    # x_T, then after every 100th step, down to the samples themselves
    assert ts == [500, 400, 300, 200, 100, 0]
    assert inter.shape == (6, 3, 3, 16, 16)
    np.testing.assert_array_equal(inter[0], x_T.numpy())
    np.testing.assert_array_equal(inter[-1], x.numpy())
    _, inter, ts = du.sample_ddim(small_model, schedule, 3, 10, progress=False)
    assert inter.shape == (11, 3, 3, 16, 16) and ts == schedule.step_sequence(10)
    _, inter, ts = du.sample_dpm_solver(small_model, schedule, 3, 10, save_rate=4, progress=False)
    assert ts == [500, 300, 100, 0]  # steps 4 and 8, and the last one
    _, inter, ts = du.sample_ddim(small_model, schedule, 3, 10, save_rate=None, progress=False)
    assert inter.shape == (0, 3, 3, 16, 16) and ts == []


def test_callback_sees_every_step(schedule, small_model):
    seen = []
    du.sample_ddim(small_model, schedule, 1, steps=9, progress=False, callback=lambda t, x: seen.append(t))
    assert seen == schedule.step_sequence(9)[1:]


def test_samplers_restore_the_models_training_mode(schedule, small_model):
    small_model.train()
    du.sample_ddim(small_model, schedule, 1, steps=2, progress=False)
    assert small_model.training


def test_a_single_context_vector_is_used_for_every_sprite(schedule, small_model):
    x_T = torch.randn(3, 3, 16, 16, generator=gen(9))
    a, _, _ = du.sample_ddim(
        small_model, schedule, 3, steps=3, context=torch.tensor([0, 0, 1.0, 0, 0]), x_T=x_T, progress=False
    )
    b, _, _ = du.sample_ddim(
        small_model, schedule, 3, steps=3, context=torch.eye(5)[[2, 2, 2]], x_T=x_T, progress=False
    )
    assert torch.equal(a, b)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpm"])
@pytest.mark.parametrize("context", [torch.zeros(3, 4), torch.zeros(2, 5), torch.zeros(6)])
def test_a_context_that_does_not_fit_is_a_value_error(schedule, small_model, sampler, context):
    with pytest.raises(ValueError, match=r"context must have shape \(3, 5\)"):
        SAMPLERS[sampler](small_model, schedule, 3, context=context, progress=False)


@pytest.mark.parametrize("n", [0, 501, 1.5])
def test_impossible_step_counts_are_value_errors(schedule, small_model, n):
    with pytest.raises(ValueError, match="from 1 to 500"):
        du.sample_ddim(small_model, schedule, 2, steps=n, progress=False)


def test_guidance_without_a_context_is_a_value_error(schedule, small_model):
    with pytest.raises(ValueError, match="needs a context"):
        du.sample_ddim(small_model, schedule, 2, steps=2, guide_w=1.0, progress=False)


# Values of one seeded run of each sampler on the shipped context model, taken with the samplers as
# they were before they were rewritten into one shape (issue 11): the mean of both sprites and the
# pixel (4, 9) of each channel. The rewrite must draw the same sprites.
PINNED_BEFORE_THE_REWRITE = {
    "ddpm": (0.475742, [-0.77281, -0.61368, -0.57016, 0.79431, 0.82871, 0.78324]),
    "ddpm_posterior": (0.474601, [-0.77109, -0.61767, -0.57411, 0.79718, 0.82288, 0.78831]),
    "ddpm_guided": (0.415450, [-0.95783, -0.95045, -0.94399, 0.87111, 0.8977, 0.85048]),
    "ddim20": (0.646137, [0.99242, 0.99395, 0.99229, -0.12618, -0.1548, -0.19312]),
    "ddim25_guided": (0.514491, [0.23122, 0.17712, 0.11806, 0.00197, -0.01593, -0.17328]),
    "ddim20_eta1": (0.580475, [-0.50306, -0.61662, -0.74347, 0.11048, 0.00676, -0.80832]),
    "dpm15": (0.642245, [0.98967, 0.99457, 0.99383, -0.15486, -0.18721, -0.22426]),
    "dpm_sde20": (0.572118, [-0.59212, -0.70826, -0.82116, 0.14425, 0.06149, -0.80257]),
    # was sample_ddpm_strided(n=100): DDIM with eta = 1, i.e. DDPM's posterior step on 100 of the steps
    "ddpm100_posterior": (0.431895, [1.00041, 0.99209, 0.99986, 0.65496, 0.63148, 0.63367]),
}


@pytest.fixture(scope="module")
def shipped_model():
    return du.load_model(du.WEIGHTS_DIR / "context_model_trained.pth")


@pytest.mark.parametrize("name", sorted(PINNED_BEFORE_THE_REWRITE))
def test_samplers_draw_the_same_sprites_as_before_the_rewrite(shipped_model, name):
    schedule = du.DDPMSchedule()
    x_T = torch.randn(2, 3, 16, 16, generator=gen(7))
    ctx = torch.eye(5)[[0, 2]]
    kw = dict(x_T=x_T, save_rate=None, progress=False)
    runs = {
        "ddpm": lambda: du.sample_ddpm(shipped_model, schedule, 2, generator=gen(11), **kw),
        "ddpm_posterior": lambda: du.sample_ddpm(
            shipped_model, schedule, 2, posterior_variance=True, generator=gen(11), **kw
        ),
        "ddpm_guided": lambda: du.sample_ddpm(
            shipped_model, schedule, 2, context=ctx, guide_w=2.0, generator=gen(11), **kw
        ),
        "ddim20": lambda: du.sample_ddim(shipped_model, schedule, 2, 20, **kw),
        "ddim25_guided": lambda: du.sample_ddim(shipped_model, schedule, 2, 25, context=ctx, guide_w=2.0, **kw),
        "ddim20_eta1": lambda: du.sample_ddim(shipped_model, schedule, 2, 20, eta=1.0, generator=gen(11), **kw),
        "dpm15": lambda: du.sample_dpm_solver(shipped_model, schedule, 2, 15, **kw),
        "dpm_sde20": lambda: du.sample_dpm_solver_sde(shipped_model, schedule, 2, 20, generator=gen(11), **kw),
        "ddpm100_posterior": lambda: du.sample_ddpm(
            shipped_model, schedule, 2, 100, posterior_variance=True, generator=gen(11), **kw
        ),
    }
    x = runs[name]()[0]
    mean, pixels = PINNED_BEFORE_THE_REWRITE[name]
    assert x.mean().item() == pytest.approx(mean, abs=2e-4)
    np.testing.assert_allclose(x[:, :, 4, 9].flatten().numpy(), pixels, atol=5e-4)


def test_ddpm_on_fewer_steps_jumps_with_the_signal_kept_over_the_jump(schedule):
    """A jump from t to s keeps sqrt(ab_t / ab_s) of the signal: with the true noise (data = one point mu),
    the noise-free posterior step from x_t lands exactly on the forward process's mean at s."""
    mu, t, s = 0.3, 400, 300
    eps = torch.randn(2, 3, 8, 8, generator=gen(13))
    ab_t, ab_s = schedule.ab_t[t], schedule.ab_t[s]
    x_t = ab_t.sqrt() * mu + (1 - ab_t).sqrt() * eps
    x_s = schedule.denoise_add_noise(x_t, t, eps, torch.zeros_like(eps), t_prev=s, posterior_variance=True)
    # the posterior mean of x_s given x_0 = mu and x_t (Ho et al. eq. 7, for a jump)
    a = ab_t / ab_s
    expected = (ab_s.sqrt() * (1 - a) * mu + a.sqrt() * (1 - ab_s) * x_t) / (1 - ab_t)
    torch.testing.assert_close(x_s, expected, atol=1e-5, rtol=1e-5)


def test_contextunet_takes_one_time_for_the_whole_batch(small_model):
    """The original course's loop passes t as torch.tensor([t / T])[:, None, None, None] for the batch."""
    x = torch.randn(3, 3, 16, 16, generator=gen(14))
    with torch.no_grad():
        one = small_model(x, torch.tensor([0.4])[:, None, None, None])
        each = small_model(x, torch.full((3,), 0.4))
    torch.testing.assert_close(one, each, atol=1e-6, rtol=1e-6)
    with pytest.raises(ValueError, match="one time for the whole batch"):
        small_model(x, torch.full((2,), 0.4))
