"""The exercise checks (notebooks/exercise_checks.py): right answers pass, known mistakes get their hint.

Every exercise: the reference solution and two more correct solutions written differently pass;
each known mistake, written out here as a learner would write it, gets its own hint; the shipped
stub reports "not attempted" without raising; an unknown wrong answer gets a general "not yet".
"""

import math
import sys
from itertools import pairwise

import pytest
import torch
import torch.nn.functional as F
from conftest import ROOT

sys.path.insert(0, str(ROOT / "notebooks"))
import exercise_checks as ec
import exercise_solutions as es


def stub(*args):
    raise NotImplementedError("Exercise: write this function, then run the check below.")


def assert_correct(verdict):
    assert verdict.status == "correct", verdict.message


def assert_hint(verdict, *words):
    assert verdict.status == "mistake", verdict.message
    for word in words:
        assert word in verdict.message, verdict.message


@pytest.mark.parametrize("name", list(ec.CHECKS))
def test_reference_solution_passes_its_check(name):
    assert_correct(ec.CHECKS[name](getattr(es, name)))


@pytest.mark.parametrize("name", list(ec.CHECKS))
def test_unattempted_exercise_reports_not_attempted_without_raising(name):
    verdict = ec.CHECKS[name](stub)
    assert verdict.status == "not attempted"
    assert "NotImplementedError" in verdict.message and "def " not in verdict.message  # no solution shown


@pytest.mark.parametrize("name", list(ec.CHECKS))
def test_a_function_that_raises_gets_not_yet_with_the_error(name):
    def broken(*args):
        raise KeyError("oops")

    verdict = ec.CHECKS[name](broken)
    assert verdict.status == "not yet" and "KeyError" in verdict.message


@pytest.mark.parametrize("name", list(ec.CHECKS))
def test_a_function_that_returns_none_is_told_to_return(name):
    verdict = ec.CHECKS[name](lambda *args: None)
    assert verdict.status == "not yet" and "return" in verdict.message


def test_show_solution_prints_the_source_only_when_asked(capsys):
    ec.show_solution("perturb_input")
    shown = capsys.readouterr().out
    assert "def perturb_input" in shown and "sqrt" in shown
    ec.show_solution("no_such_exercise")
    assert "perturb_input" in capsys.readouterr().out  # lists the names


def test_verdict_shows_its_message_in_a_notebook():
    verdict = ec.check_perturb_input(stub)
    assert repr(verdict) == str(verdict) == verdict.message


# =================================================================================================
# L1.1 perturb_input
# =================================================================================================
def perturb_input_sqrt_function(x0, t, noise, schedule):
    ab = schedule.ab_t[t][:, None, None, None]
    return torch.sqrt(ab) * x0 + torch.sqrt(1 - ab) * noise


def perturb_input_loop(x0, t, noise, schedule):
    rows = []
    for i in range(len(t)):
        ab = float(schedule.ab_t[int(t[i])])
        rows.append(math.sqrt(ab) * x0[i] + math.sqrt(1 - ab) * noise[i])
    return torch.stack(rows)


@pytest.mark.parametrize("fn", [perturb_input_sqrt_function, perturb_input_loop])
def test_perturb_input_other_correct_solutions_pass(fn):
    assert_correct(ec.check_perturb_input(fn))


def test_perturb_input_noise_scaled_by_one_minus_ab_gets_its_hint():
    def wrong(x0, t, noise, schedule):
        ab = schedule.ab_t[t].view(-1, 1, 1, 1)
        return ab.sqrt() * x0 + (1 - ab) * noise

    assert_hint(ec.check_perturb_input(wrong), "(1 - ab_t) instead of sqrt(1 - ab_t)", "variance")


def test_perturb_input_sprite_scaled_by_ab_gets_its_hint():
    def wrong(x0, t, noise, schedule):
        ab = schedule.ab_t[t].view(-1, 1, 1, 1)
        return ab * x0 + (1 - ab).sqrt() * noise

    assert_hint(ec.check_perturb_input(wrong), "scaled by ab_t instead of sqrt(ab_t)")


def test_perturb_input_swapped_coefficients_get_their_hint():
    def wrong(x0, t, noise, schedule):
        ab = schedule.ab_t[t].view(-1, 1, 1, 1)
        return (1 - ab).sqrt() * x0 + ab.sqrt() * noise

    assert_hint(ec.check_perturb_input(wrong), "swapped")


def test_perturb_input_a_t_instead_of_ab_t_gets_its_hint():
    def wrong(x0, t, noise, schedule):
        a = schedule.a_t[t].view(-1, 1, 1, 1)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    assert_hint(ec.check_perturb_input(wrong), "a_t, one step's share")


def test_perturb_input_off_by_one_index_gets_its_hint():
    def wrong(x0, t, noise, schedule):
        ab = schedule.ab_t[t - 1].view(-1, 1, 1, 1)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    assert_hint(ec.check_perturb_input(wrong), "step t - 1")


def test_perturb_input_coefficient_not_reshaped_gets_its_hint():
    def wrong(x0, t, noise, schedule):
        return schedule.ab_t[t].sqrt() * x0 + (1 - schedule.ab_t[t]).sqrt() * noise

    assert_hint(ec.check_perturb_input(wrong), "(B, 1, 1, 1)")


def test_perturb_input_unknown_mistake_gets_not_yet_with_the_first_input_that_differs():
    def wrong(x0, t, noise, schedule):
        ab = schedule.ab_t[t].view(-1, 1, 1, 1)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise + (t == 250).view(-1, 1, 1, 1) * 0.5

    verdict = ec.check_perturb_input(wrong)
    assert verdict.status == "not yet"
    assert "t = 250" in verdict.message and "0.5" in verdict.message


def test_perturb_input_wrong_shape_is_named():
    verdict = ec.check_perturb_input(lambda x0, t, noise, schedule: x0[0])
    assert verdict.status == "not yet" and "(3, 4, 4)" in verdict.message and "(4, 3, 4, 4)" in verdict.message


# =================================================================================================
# L1.2 ddpm_sample
# =================================================================================================
def ddpm_sample_with_module_step(model, x_T, schedule, z):
    x = x_T
    for t in reversed(range(1, schedule.T + 1)):
        eps = model(x, torch.tensor([t / schedule.T]).repeat(len(x)))
        x = schedule.denoise_add_noise(x, t, eps, z[t] if t > 1 else torch.zeros_like(x))
    return x


def ddpm_sample_b_t_form(model, x_T, schedule, z):
    x = x_T.clone()
    T = schedule.T
    for t in range(T, 0, -1):
        time = torch.ones(x.shape[0], 1, 1, 1) * t / T
        eps = model(x, time)
        mean = (x - schedule.b_t[t] / torch.sqrt(1 - schedule.ab_t[t]) * eps) / torch.sqrt(schedule.a_t[t])
        x = mean + (torch.sqrt(schedule.b_t[t]) * z[t] if t != 1 else 0)
    return x


@pytest.mark.parametrize("fn", [ddpm_sample_with_module_step, ddpm_sample_b_t_form])
def test_ddpm_sample_other_correct_solutions_pass(fn):
    assert_correct(ec.check_ddpm_sample(fn))


def test_ddpm_sample_fresh_noise_at_the_last_step_gets_its_hint():
    def wrong(model, x_T, schedule, z):
        x = x_T
        for t in range(schedule.T, 0, -1):
            eps = model(x, torch.full((len(x),), t / schedule.T))
            a, ab, b = schedule.a_t[t], schedule.ab_t[t], schedule.b_t[t]
            x = (x - eps * (1 - a) / (1 - ab).sqrt()) / a.sqrt() + b.sqrt() * z[t]
        return x

    assert_hint(ec.check_ddpm_sample(wrong), "last step")


def test_ddpm_sample_integer_time_gets_its_hint():
    def wrong(model, x_T, schedule, z):
        x = x_T
        for t in range(schedule.T, 0, -1):
            eps = model(x, torch.full((len(x),), t))
            a, ab, b = schedule.a_t[t], schedule.ab_t[t], schedule.b_t[t]
            x = (x - eps * (1 - a) / (1 - ab).sqrt()) / a.sqrt()
            if t > 1:
                x = x + b.sqrt() * z[t]
        return x

    assert_hint(ec.check_ddpm_sample(wrong), "integer t", "t / T")


def test_ddpm_sample_without_fresh_noise_gets_its_hint():
    def wrong(model, x_T, schedule, z):
        x = x_T
        for t in range(schedule.T, 0, -1):
            eps = model(x, torch.full((len(x),), t / schedule.T))
            x = (x - eps * (1 - schedule.a_t[t]) / (1 - schedule.ab_t[t]).sqrt()) / schedule.a_t[t].sqrt()
        return x

    assert_hint(ec.check_ddpm_sample(wrong), "no fresh noise", "collapse")


def test_ddpm_sample_noise_scaled_by_the_variance_gets_its_hint():
    def wrong(model, x_T, schedule, z):
        x = x_T
        for t in range(schedule.T, 0, -1):
            eps = model(x, torch.full((len(x),), t / schedule.T))
            a, ab, b = schedule.a_t[t], schedule.ab_t[t], schedule.b_t[t]
            x = (x - eps * (1 - a) / (1 - ab).sqrt()) / a.sqrt()
            if t > 1:
                x = x + b * z[t]
        return x

    assert_hint(ec.check_ddpm_sample(wrong), "variance b_t", "sqrt(b_t)")


def test_ddpm_sample_eps_weight_without_square_root_gets_its_hint():
    def wrong(model, x_T, schedule, z):
        x = x_T
        for t in range(schedule.T, 0, -1):
            eps = model(x, torch.full((len(x),), t / schedule.T))
            a, ab, b = schedule.a_t[t], schedule.ab_t[t], schedule.b_t[t]
            x = (x - eps * (1 - a) / (1 - ab)) / a.sqrt()
            if t > 1:
                x = x + b.sqrt() * z[t]
        return x

    assert_hint(ec.check_ddpm_sample(wrong), "sqrt(1 - ab_t)")


def test_ddpm_sample_python_number_for_time_gets_the_network_error():
    def wrong(model, x_T, schedule, z):
        return model(x_T, 0.5)

    verdict = ec.check_ddpm_sample(wrong)
    assert verdict.status == "not yet" and "t / T" in verdict.message and "float" in verdict.message


# =================================================================================================
# L2.1 sample_timesteps
# =================================================================================================
def sample_timesteps_from_floats(batch_size, T, generator=None):
    return (torch.rand(batch_size, generator=generator) * T).long() + 1


def sample_timesteps_by_choice(batch_size, T, generator=None):
    values = torch.arange(1, T + 1)
    return values[torch.randint(len(values), (batch_size,), generator=generator)]


@pytest.mark.parametrize("fn", [sample_timesteps_from_floats, sample_timesteps_by_choice])
def test_sample_timesteps_other_correct_solutions_pass(fn):
    assert_correct(ec.check_sample_timesteps(fn))


def test_sample_timesteps_zero_to_T_minus_one_gets_its_hint():
    def wrong(batch_size, T, generator=None):
        return torch.randint(0, T, (batch_size,), generator=generator)

    assert_hint(ec.check_sample_timesteps(wrong), "can be 0", "1..T")


def test_sample_timesteps_never_T_gets_its_hint():
    def wrong(batch_size, T, generator=None):
        return torch.randint(1, T, (batch_size,), generator=generator)

    assert_hint(ec.check_sample_timesteps(wrong), "never reaches T", "exclusive")


def test_sample_timesteps_one_t_for_the_batch_gets_its_hint():
    def wrong(batch_size, T, generator=None):
        return torch.randint(1, T + 1, (1,), generator=generator)

    assert_hint(ec.check_sample_timesteps(wrong), "one t for the whole batch")


def test_sample_timesteps_one_t_repeated_over_the_batch_gets_its_hint():
    def wrong(batch_size, T, generator=None):
        return torch.randint(1, T + 1, (1,), generator=generator).repeat(batch_size)

    assert_hint(ec.check_sample_timesteps(wrong), "same t")


def test_sample_timesteps_fractional_times_get_their_hint():
    def wrong(batch_size, T, generator=None):
        return 1 + (T - 1) * torch.rand(batch_size, generator=generator)

    assert_hint(ec.check_sample_timesteps(wrong), "whole numbers", "torch.randint")


def test_sample_timesteps_that_ignore_the_generator_get_their_hint():
    def wrong(batch_size, T, generator=None):
        return torch.randint(1, T + 1, (batch_size,))  # the global generator: not repeatable

    assert_hint(ec.check_sample_timesteps(wrong), "same seed", "generator=generator")


def test_sample_timesteps_non_uniform_draw_gets_not_yet():
    def wrong(batch_size, T, generator=None):
        u = torch.rand(batch_size, generator=generator)
        return (u**2 * T).long() + 1  # favours small t

    verdict = ec.check_sample_timesteps(wrong)
    assert verdict.status == "not yet" and "not uniform" in verdict.message


# =================================================================================================
# L2.2 batch_loss
# =================================================================================================
def batch_loss_by_hand(model, x0, t, noise, schedule):
    ab = schedule.ab_t[t].reshape(len(t), 1, 1, 1)
    x_t = torch.sqrt(ab) * x0 + torch.sqrt(1 - ab) * noise
    pred = model(x_t, t.float().view(-1, 1, 1, 1) / schedule.T)
    return ((pred - noise) ** 2).mean()


def batch_loss_per_image(model, x0, t, noise, schedule):
    x_t = schedule.perturb_input(x0, t, noise)
    pred = model(x_t, t / schedule.T)
    per_image = ((pred - noise) ** 2).flatten(1).mean(1)
    return per_image.mean()


@pytest.mark.parametrize("fn", [batch_loss_by_hand, batch_loss_per_image])
def test_batch_loss_other_correct_solutions_pass(fn):
    assert_correct(ec.check_batch_loss(fn))


def test_batch_loss_integer_time_gets_its_hint():
    def wrong(model, x0, t, noise, schedule):
        return F.mse_loss(model(schedule.perturb_input(x0, t, noise), t), noise)

    assert_hint(ec.check_batch_loss(wrong), "integer t", "t / schedule.T")


def test_batch_loss_noise_scaled_by_one_minus_ab_gets_its_hint():
    def wrong(model, x0, t, noise, schedule):
        ab = schedule.ab_t[t].view(-1, 1, 1, 1)
        x_t = ab.sqrt() * x0 + (1 - ab) * noise
        return F.mse_loss(model(x_t, t / schedule.T), noise)

    assert_hint(ec.check_batch_loss(wrong), "(1 - ab_t)", "sqrt(1 - ab_t)")


def test_batch_loss_target_x0_gets_its_hint():
    def wrong(model, x0, t, noise, schedule):
        return F.mse_loss(model(schedule.perturb_input(x0, t, noise), t / schedule.T), x0)

    assert_hint(ec.check_batch_loss(wrong), "clean sprite x0")


def test_batch_loss_target_x_t_gets_its_hint():
    def wrong(model, x0, t, noise, schedule):
        x_t = schedule.perturb_input(x0, t, noise)
        return F.mse_loss(model(x_t, t / schedule.T), x_t)

    assert_hint(ec.check_batch_loss(wrong), "noisy input x_t")


def test_batch_loss_sum_gets_its_hint():
    def wrong(model, x0, t, noise, schedule):
        return F.mse_loss(model(schedule.perturb_input(x0, t, noise), t / schedule.T), noise, reduction="sum")

    assert_hint(ec.check_batch_loss(wrong), "sum")


def test_batch_loss_absolute_error_gets_its_hint():
    def wrong(model, x0, t, noise, schedule):
        return F.l1_loss(model(schedule.perturb_input(x0, t, noise), t / schedule.T), noise)

    assert_hint(ec.check_batch_loss(wrong), "absolute errors")


# =================================================================================================
# L3.1 drop_context
# =================================================================================================
def drop_context_bernoulli(c, p, generator=None):
    keep = torch.bernoulli(torch.full((c.shape[0], 1), 1 - p), generator=generator)
    return c * keep


def drop_context_where(c, p, generator=None):
    dropped = torch.rand(len(c), generator=generator) < p
    return torch.where(dropped.unsqueeze(1), torch.zeros_like(c), c)


def drop_context_clone_and_assign(c, p, generator=None):
    out = c.clone()
    out[torch.rand(len(c), generator=generator) < p] = 0
    return out


@pytest.mark.parametrize("fn", [drop_context_bernoulli, drop_context_where, drop_context_clone_and_assign])
def test_drop_context_other_correct_solutions_pass(fn):
    assert_correct(ec.check_drop_context(fn))


def test_drop_context_mask_that_keeps_what_it_should_drop_gets_its_hint():
    def wrong(c, p, generator=None):
        keep = torch.rand(c.shape[0], generator=generator) < p
        return c * keep[:, None]

    assert_hint(ec.check_drop_context(wrong), "keeps what it should drop", "rand >= p")


def test_drop_context_single_entries_get_their_hint():
    def wrong(c, p, generator=None):
        return c * (torch.rand(c.shape, generator=generator) >= p)

    assert_hint(ec.check_drop_context(wrong), "single entries", "(B, 1)")


def test_drop_context_with_dropout_scaling_gets_its_hint():
    def wrong(c, p, generator=None):
        keep = (torch.rand(c.shape[0], 1, generator=generator) >= p).float()
        return c * keep / (1 - p)

    assert_hint(ec.check_drop_context(wrong), "1 / (1 - p)", "F.dropout")


def test_drop_context_that_ignores_the_generator_gets_its_hint():
    def wrong(c, p, generator=None):
        return c * (torch.rand(c.shape[0], 1) >= p)  # the global generator: not repeatable

    assert_hint(ec.check_drop_context(wrong), "same seed", "generator=generator")


def test_drop_context_one_draw_for_the_batch_gets_its_hint():
    def wrong(c, p, generator=None):
        return c * (torch.rand(1, generator=generator) >= p)

    assert_hint(ec.check_drop_context(wrong), "as a whole", "one random number per sprite")


def test_drop_context_in_place_gets_its_hint():
    def wrong(c, p, generator=None):
        c[torch.rand(len(c), generator=generator) < p] = 0
        return c

    assert_hint(ec.check_drop_context(wrong), "in place")


def test_drop_context_wrong_rate_gets_not_yet():
    def wrong(c, p, generator=None):
        return c * (torch.rand(len(c), 1, generator=generator) >= p / 2)

    verdict = ec.check_drop_context(wrong)
    assert verdict.status == "not yet" and "at p = 0.1" in verdict.message


# =================================================================================================
# L3.2 guided_noise
# =================================================================================================
def guided_noise_one_call(model, x, t, c, s):
    eps = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([c, torch.zeros_like(c)]))
    eps_c, eps_0 = eps.chunk(2)
    return eps_0 + s * (eps_c - eps_0)


def guided_noise_lesson_form(model, x, t, c, s):
    w = s - 1
    return (1 + w) * model(x, t, c) - w * model(x, t, None)


@pytest.mark.parametrize("fn", [guided_noise_one_call, guided_noise_lesson_form])
def test_guided_noise_other_correct_solutions_pass(fn):
    assert_correct(ec.check_guided_noise(fn))


def test_guided_noise_counts_the_network_calls():
    assert "called the network 8 times with 5 images each" in ec.check_guided_noise(es.guided_noise).message
    assert "4 times with 10 images each" in ec.check_guided_noise(guided_noise_one_call).message


def test_guided_noise_swapped_weights_get_their_hint():
    def wrong(model, x, t, c, s):
        eps_c, eps_0 = model(x, t, c), model(x, t, None)
        return eps_c + s * (eps_0 - eps_c)

    assert_hint(ec.check_guided_noise(wrong), "swapped")


def test_guided_noise_wrong_sign_gets_its_hint():
    def wrong(model, x, t, c, s):
        eps_c, eps_0 = model(x, t, c), model(x, t, None)
        return eps_0 - s * (eps_c - eps_0)

    assert_hint(ec.check_guided_noise(wrong), "wrong sign")


def test_guided_noise_lesson_form_with_w_equal_s_gets_its_hint():
    def wrong(model, x, t, c, s):
        return (1 + s) * model(x, t, c) - s * model(x, t, torch.zeros_like(c))

    assert_hint(ec.check_guided_noise(wrong), "s = 1 + w")


def test_guided_noise_unconditional_pass_with_the_context_gets_its_hint():
    def wrong(model, x, t, c, s):
        eps_c, eps_0 = model(x, t, c), model(x, t, c)
        return eps_0 + s * (eps_c - eps_0)

    assert_hint(ec.check_guided_noise(wrong), "eps_0 equals eps_c")


# =================================================================================================
# L4.1 ddim_step
# =================================================================================================
def ddim_step_via_variance(x_t, t, t_prev, eps, z, eta, schedule):
    ab, ab_prev = schedule.ab_t[t], schedule.ab_t[t_prev]
    var = eta**2 * (1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)
    x0_hat = (x_t - torch.sqrt(1 - ab) * eps) / torch.sqrt(ab)
    return torch.sqrt(ab_prev) * x0_hat + torch.sqrt(1 - ab_prev - var) * eps + torch.sqrt(var) * z


def ddim_step_in_floats(x_t, t, t_prev, eps, z, eta, schedule):
    ab, ab_prev = float(schedule.ab_t[t]), float(schedule.ab_t[t_prev])
    sigma = eta * math.sqrt((1 - ab_prev) / (1 - ab)) * math.sqrt(1 - ab / ab_prev)
    x0_hat = (x_t - math.sqrt(1 - ab) * eps) / math.sqrt(ab)
    return math.sqrt(ab_prev) * x0_hat + math.sqrt(1 - ab_prev - sigma**2) * eps + sigma * z


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_ddim_step_right_answer_is_the_module_step(eta):
    x, eps, z = torch.randn(3, 2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    for t, t_prev in [(500, 480), (300, 100), (20, 0)]:
        want = ec.SCHEDULE.denoise_ddim(x, t, t_prev, eps, eta=eta, z=z)
        assert torch.allclose(ec._ddim(x, t, t_prev, eps, z, eta), want, atol=1e-6)


@pytest.mark.parametrize("fn", [ddim_step_via_variance, ddim_step_in_floats])
def test_ddim_step_other_correct_solutions_pass(fn):
    assert_correct(ec.check_ddim_step(fn))


def test_ddim_step_ab_t_for_ab_prev_in_the_signal_gets_its_hint():
    def wrong(x_t, t, t_prev, eps, z, eta, schedule):
        ab, ab_prev = schedule.ab_t[t], schedule.ab_t[t_prev]
        x0_hat = (x_t - (1 - ab).sqrt() * eps) / ab.sqrt()
        sigma = eta * ((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)).sqrt()
        return ab.sqrt() * x0_hat + (1 - ab_prev - sigma**2).sqrt() * eps + sigma * z

    assert_hint(ec.check_ddim_step(wrong), "ab_t where the step needs ab_prev")


def test_ddim_step_ab_t_for_ab_prev_everywhere_gets_its_hint():
    def wrong(x_t, t, t_prev, eps, z, eta, schedule):
        ab = schedule.ab_t[t]
        ab_prev = schedule.ab_t[t_prev]
        sigma = eta * ((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)).sqrt()
        x0_hat = (x_t - (1 - ab).sqrt() * eps) / ab.sqrt()
        return ab.sqrt() * x0_hat + (1 - ab - sigma**2).sqrt() * eps + sigma * z

    assert_hint(ec.check_ddim_step(wrong), "ab_t where the step needs ab_prev")


def test_ddim_step_direction_ignoring_sigma_gets_its_hint():
    def wrong(x_t, t, t_prev, eps, z, eta, schedule):
        ab, ab_prev = schedule.ab_t[t], schedule.ab_t[t_prev]
        x0_hat = (x_t - (1 - ab).sqrt() * eps) / ab.sqrt()
        sigma = eta * ((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)).sqrt()
        return ab_prev.sqrt() * x0_hat + (1 - ab_prev).sqrt() * eps + sigma * z

    assert_hint(ec.check_ddim_step(wrong), "not sqrt(1 - ab_prev)")


def test_ddim_step_sigma_where_the_variance_belongs_gets_its_hint():
    def wrong(x_t, t, t_prev, eps, z, eta, schedule):
        ab, ab_prev = schedule.ab_t[t], schedule.ab_t[t_prev]
        x0_hat = (x_t - (1 - ab).sqrt() * eps) / ab.sqrt()
        sigma = eta * ((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)).sqrt()
        return ab_prev.sqrt() * x0_hat + (1 - ab_prev - sigma).sqrt() * eps + sigma * z

    assert_hint(ec.check_ddim_step(wrong), "subtracts sigma")


def test_ddim_step_eta_not_squared_gets_its_hint():
    def wrong(x_t, t, t_prev, eps, z, eta, schedule):
        ab, ab_prev = schedule.ab_t[t], schedule.ab_t[t_prev]
        x0_hat = (x_t - (1 - ab).sqrt() * eps) / ab.sqrt()
        var = eta * (1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)
        return ab_prev.sqrt() * x0_hat + (1 - ab_prev - var).sqrt() * eps + var.sqrt() * z

    assert_hint(ec.check_ddim_step(wrong), "eta^2")


# =================================================================================================
# L4.2 ddim_sample
# =================================================================================================
def ddim_sample_with_module_step(model, x_T, schedule, n):
    steps = schedule.step_sequence(n)
    x = x_T
    for k in range(n):
        t = steps[k]
        time = torch.tensor([t / schedule.T])[:, None, None, None]  # one time for the batch, as the course writes it
        x = schedule.denoise_ddim(x, t, steps[k + 1], model(x, time))
    return x


def ddim_sample_own_stride(model, x_T, schedule, n):
    stride = schedule.T // n
    x = x_T
    for t in range(schedule.T, 0, -stride):
        ab, ab_prev = schedule.ab_t[t], schedule.ab_t[t - stride]
        eps = model(x, t / schedule.T * torch.ones(len(x)))
        x = torch.sqrt(ab_prev) * (x - torch.sqrt(1 - ab) * eps) / torch.sqrt(ab) + torch.sqrt(1 - ab_prev) * eps
    return x


def test_ddim_sample_other_correct_solution_passes():
    assert_correct(ec.check_ddim_sample(ddim_sample_with_module_step))


def test_ddim_sample_the_original_courses_stride_gets_its_hint_when_n_does_not_divide_T():
    # right for n = 1 and 5 (divisors of T = 500), wrong for n = 15: the check probes all three
    assert_hint(ec.check_ddim_sample(ddim_sample_own_stride), "T // n", "step_sequence")


def test_ddim_sample_that_never_updates_x_gets_its_hint():
    def wrong(model, x_T, schedule, n):
        x = x_T
        for t, t_prev in pairwise(schedule.step_sequence(n)):
            schedule.denoise_ddim(x, t, t_prev, model(x, torch.full((len(x),), t / schedule.T)))
        return x

    assert_hint(ec.check_ddim_sample(wrong), "unchanged", "x = ... in the loop")


def test_checks_compare_with_answers_from_untouched_inputs():
    def in_place(model, x_T, schedule, n):  # right, but writes into the x_T it was given
        x = x_T
        for t, t_prev in pairwise(schedule.step_sequence(n)):
            x.copy_(schedule.denoise_ddim(x, t, t_prev, model(x, torch.full((len(x),), t / schedule.T))))
        return x

    assert_correct(ec.check_ddim_sample(in_place))


def test_ddim_sample_integer_time_gets_its_hint():
    def wrong(model, x_T, schedule, n):
        steps, x = schedule.step_sequence(n), x_T
        for t, t_prev in pairwise(steps):
            x = schedule.denoise_ddim(x, t, t_prev, model(x, torch.full((len(x),), t)))
        return x

    assert_hint(ec.check_ddim_sample(wrong), "integer t")


def test_ddim_sample_stopping_before_zero_gets_its_hint():
    def wrong(model, x_T, schedule, n):
        steps, x = schedule.step_sequence(n), x_T
        for k in range(n - 1):  # one pair short
            eps = model(x, torch.full((len(x),), steps[k] / schedule.T))
            x = schedule.denoise_ddim(x, steps[k], steps[k + 1], eps)
        return x

    assert_hint(ec.check_ddim_sample(wrong), "one jump early", "t_prev = 0")


def test_ddim_sample_single_timestep_jumps_get_their_hint():
    def wrong(model, x_T, schedule, n):
        x = x_T
        for t in range(schedule.T, schedule.T - n, -1):
            x = schedule.denoise_ddim(x, t, t - 1, model(x, torch.full((len(x),), t / schedule.T)))
        return x

    assert_hint(ec.check_ddim_sample(wrong), "one timestep", "step_sequence")


def test_ddim_sample_ab_t_for_ab_prev_gets_its_hint():
    def wrong(model, x_T, schedule, n):
        steps, x = schedule.step_sequence(n), x_T
        for t in steps[:-1]:
            ab = schedule.ab_t[t]
            eps = model(x, torch.full((len(x),), t / schedule.T))
            x = ab.sqrt() * (x - (1 - ab).sqrt() * eps) / ab.sqrt() + (1 - ab).sqrt() * eps
        return x

    assert_hint(ec.check_ddim_sample(wrong), "unchanged", "ab_t instead of ab_prev")
