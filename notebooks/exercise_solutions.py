"""Reference solutions to the exercises in L1_Exercises ... L4_Exercises, one function per exercise.

Try the exercise first: ``show_solution("perturb_input")`` (from exercise_checks) prints one of
these when you want it. Each is one correct answer among many; the checks accept any function
that gives the same results.
"""

from itertools import pairwise

import torch
import torch.nn.functional as F


# -- Lesson 1 ------------------------------------------------------------------------------------
def perturb_input(x0, t, noise, schedule):
    """x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) noise, with each image's own t.

    x0, noise: (B, C, H, W); t: integer tensor (B,) in 1..T -> x_t (B, C, H, W).
    """
    ab = schedule.ab_t[t].view(-1, 1, 1, 1)  # (B,) -> (B, 1, 1, 1): one ab_t per image
    return ab.sqrt() * x0 + (1 - ab).sqrt() * noise


def ddpm_sample(model, x_T, schedule, z):
    """DDPM from x_T down to x_0 with sigma_t^2 = b_t and no fresh noise at the last step (t = 1).

    x_T: (B, C, H, W); z: (T + 1, B, C, H, W), z[t] the fresh noise of step t -> x_0 (B, C, H, W).
    """
    x = x_T
    for t in range(schedule.T, 0, -1):
        eps = model(x, torch.full((x.shape[0],), t / schedule.T))  # the network sees t / T
        a_t, ab_t, b_t = schedule.a_t[t], schedule.ab_t[t], schedule.b_t[t]
        x = (x - eps * (1 - a_t) / (1 - ab_t).sqrt()) / a_t.sqrt()
        if t > 1:  # the last step returns the mean: no fresh noise
            x = x + b_t.sqrt() * z[t]
    return x


# -- Lesson 2 ------------------------------------------------------------------------------------
def sample_timesteps(batch_size, T, generator=None):
    """One timestep per image, uniform over the whole numbers 1..T -> (batch_size,) int64."""
    return torch.randint(1, T + 1, (batch_size,), generator=generator)  # the upper bound is exclusive


def batch_loss(model, x0, t, noise, schedule):
    """MSE(eps_theta(x_t, t / T), noise) for one batch, with x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) noise.

    x0, noise: (B, C, H, W); t: integer tensor (B,) in 1..T -> a scalar tensor.
    """
    ab = schedule.ab_t[t].view(-1, 1, 1, 1)
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
    pred = model(x_t, t / schedule.T)
    return F.mse_loss(pred, noise)  # the mean over every pixel of every image


# -- Lesson 3 ------------------------------------------------------------------------------------
def drop_context(c, p, generator=None):
    """Zero each row of c (B, n_cfeat) with probability p; the other rows stay exactly as they were."""
    keep = torch.rand(c.shape[0], generator=generator) >= p  # one draw per sprite; True = keep
    return c * keep[:, None].to(c.dtype)  # a new tensor: the caller's c is not changed


def guided_noise(model, x, t, c, s):
    """Classifier-free guidance in the form eps_0 + s (eps_c - eps_0).

    x: (B, C, H, W); t: (B,) holding t / T; c: (B, n_cfeat); s: the guidance scale
    (s = 0: no context, s = 1: plain conditional, s > 1: guided; s = 1 + w in the lesson's form).
    """
    eps_c = model(x, t, c)
    eps_0 = model(x, t, torch.zeros_like(c))  # "no context" is the zero vector
    return eps_0 + s * (eps_c - eps_0)


# -- Lesson 4 ------------------------------------------------------------------------------------
def ddim_step(x_t, t, t_prev, eps, z, eta, schedule):
    """One DDIM step from t to t_prev < t with eta >= 0 (eta = 0: deterministic).

    x0_hat = (x_t - sqrt(1 - ab_t) eps) / sqrt(ab_t),
    sigma = eta sqrt((1 - ab_prev) / (1 - ab_t) (1 - ab_t / ab_prev)),
    x_prev = sqrt(ab_prev) x0_hat + sqrt(1 - ab_prev - sigma^2) eps + sigma z.
    """
    ab, ab_prev = schedule.ab_t[t], schedule.ab_t[t_prev]
    x0_hat = (x_t - (1 - ab).sqrt() * eps) / ab.sqrt()
    sigma = eta * ((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)).sqrt()
    return ab_prev.sqrt() * x0_hat + (1 - ab_prev - sigma**2).sqrt() * eps + sigma * z


def ddim_sample(model, x_T, schedule, n):
    """DDIM (eta = 0) in n steps over schedule.step_sequence(n): T, ..., 0 -> x_0 (B, C, H, W)."""
    steps = schedule.step_sequence(n)  # n + 1 timesteps from T down to 0
    x = x_T
    for t, t_prev in pairwise(steps):
        eps = model(x, torch.full((x.shape[0],), t / schedule.T))
        ab, ab_prev = schedule.ab_t[t], schedule.ab_t[t_prev]
        x0_hat = (x - (1 - ab).sqrt() * eps) / ab.sqrt()
        x = ab_prev.sqrt() * x0_hat + (1 - ab_prev).sqrt() * eps
    return x
