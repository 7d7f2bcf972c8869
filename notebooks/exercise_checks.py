"""Checks for the exercise notebooks (L1_Exercises ... L4_Exercises): one ``check_...`` per exercise.

A check calls your function on fixed inputs whose right answer is known (a closed form, or the
course module's own function on the same noise) and answers with a Verdict, one of:

* ``correct``: and what that means;
* ``mistake``: a known mistake, recognised by what it does to the output (never by reading your
  code), and a one-sentence hint;
* ``not yet``: the first input where your answer differs from the right one, and by how much;
* ``not attempted``: the exercise still raises NotImplementedError, as shipped.

A check never raises and never shows a solution; ``show_solution(name)`` does, when you ask.
"""

import inspect
from dataclasses import dataclass
from itertools import pairwise

import exercise_solutions
import torch
import torch.nn as nn

import diffusion_utilities as du

ATOL, RTOL = 1e-4, 1e-4  # "the same answer": float32 arithmetic done in another order stays far inside this


@dataclass
class Verdict:
    """What a check found: ``status`` is "correct", "mistake", "not yet" or "not attempted"."""

    status: str
    message: str

    @property
    def correct(self) -> bool:
        return self.status == "correct"

    def __repr__(self) -> str:  # a notebook shows the message as the check cell's result
        return self.message

    __str__ = __repr__


class _Answer(Exception):
    """Raised inside a check to hand back a verdict early (a stub, an error, a wrong shape)."""

    def __init__(self, verdict: Verdict):
        self.verdict = verdict


def correct(meaning: str) -> Verdict:
    return Verdict("correct", "Correct! " + meaning)


def mistake(hint: str) -> Verdict:
    return Verdict("mistake", "Not yet - a known mistake: " + hint)


def not_yet(detail: str) -> Verdict:
    return Verdict("not yet", "Not yet: " + detail)


NOT_ATTEMPTED = Verdict(
    "not attempted",
    "Not attempted yet: replace `raise NotImplementedError` in the exercise cell with your code, run that "
    "cell, then run this check again. (show_solution(...) prints a solution when you want one.)",
)


def show_solution(name: str) -> None:
    """Print the reference solution of one exercise, e.g. ``show_solution("perturb_input")``."""
    solution = getattr(exercise_solutions, name, None)
    if not inspect.isfunction(solution):
        names = [n for n, f in vars(exercise_solutions).items() if inspect.isfunction(f) and not n.startswith("_")]
        print(f"No exercise called {name!r}; the exercises are: {', '.join(names)}.")
        return
    print(inspect.getsource(solution))


# -- calling the learner's function -----------------------------------------------------------------
def _call(fn, *args):
    """fn(*args), with a stub, an error or a missing return turned into a verdict."""
    try:
        out = fn(*args)
    except NotImplementedError:
        raise _Answer(NOT_ATTEMPTED) from None
    except Exception as err:
        raise _Answer(not_yet(f"your function raised {type(err).__name__}: {err}")) from None
    if out is None:
        raise _Answer(not_yet("your function returned None: does it end with `return ...`?"))
    return out


def _as_tensor(out, shape, where: str) -> torch.Tensor:
    if not torch.is_tensor(out):
        raise _Answer(not_yet(f"for {where} it returned a {type(out).__name__}; expected a tensor of shape {shape}."))
    if tuple(out.shape) != tuple(shape):
        raise _Answer(not_yet(f"for {where} it returned shape {tuple(out.shape)}; expected {tuple(shape)}."))
    return out.detach().double()


def _close(got: torch.Tensor, want: torch.Tensor) -> bool:
    return bool(torch.allclose(got.double(), want.double(), rtol=RTOL, atol=ATOL, equal_nan=True))


def _compare(fn, probes, right, mistakes, meaning: str) -> Verdict:
    """The common check: fn against ``right`` on every probe, then against each known mistake.

    probes: list of (labels, args): labels names each row of the output (or the whole output);
    right(*args) / wrong(*args): the right answer and what each mistake would give, same shape.
    mistakes: list of (wrong, hint); the first mistake that matches fn on every probe wins.
    """
    wants = [right(*args) for _, args in probes]  # before fn runs: fn gets copies, the probes stay as they are
    try:
        got = []
        for (labels, args), want in zip(probes, wants, strict=True):
            copies = [a.clone() if torch.is_tensor(a) else a for a in args]
            got.append(_as_tensor(_call(fn, *copies), want.shape, " / ".join(dict.fromkeys(labels))))
    except _Answer as answer:
        return answer.verdict
    if all(_close(g, w) for g, w in zip(got, wants, strict=True)):
        return correct(meaning)
    for wrong, hint in mistakes:
        if all(_close(g, wrong(*args)) for g, (_, args) in zip(got, probes, strict=True)):
            return mistake(hint)
    for g, w, (labels, _) in zip(got, wants, probes, strict=True):
        if _close(g, w):
            continue
        if g.isnan().any():
            return not_yet(f"your answer holds NaN for {' / '.join(dict.fromkeys(labels))}.")
        rows = (g - w).abs().reshape(len(labels), -1).amax(1)
        first = int((rows > ATOL + RTOL * w.abs().reshape(len(labels), -1).amax(1)).nonzero()[0])
        return not_yet(
            f"the first input where your answer differs is {labels[first]}: largest difference "
            f"{float(rows[first]):.3g} (the right values there lie within +-{float(w.abs().max()):.3g})."
        )
    return not_yet("your answer differs from the right one.")  # unreachable: some probe differed


class StandInNet(nn.Module):
    """A stand-in for the trained network: a fixed formula with ContextUnet's call signature.

    ``net(x, t, c=None)``: x (B, C, H, W), t (B,) or (B, 1, 1, 1) holding t / T (or a single time
    for the batch, as the original course passes it), c (B, n_cfeat) or None (= zeros) ->
    ``tanh(x) (1/2 + t / (1 + t)) + c . class_shift``, (B, C, H, W). It is no denoiser, but its
    output depends on x, t and c, so a sampler or a loss built on it has one right answer that the
    course module computes. It counts its calls and the images they carried.
    """

    def __init__(self, n_cfeat: int = 5):
        super().__init__()
        self.n_cfeat = n_cfeat
        self.register_buffer("class_shift", torch.linspace(-0.6, 0.6, n_cfeat))
        self.calls = self.rows = 0

    def forward(self, x, t, c=None):
        b = x.shape[0]
        if not torch.is_tensor(t) or t.numel() not in (1, b):
            got = tuple(t.shape) if torch.is_tensor(t) else type(t).__name__
            raise ValueError(
                f"the network expects t as a tensor of shape ({b},) holding t / T (or one time for the whole "
                f"batch, shape (1, 1, 1, 1)), got {got}."
            )
        if c is not None and (not torch.is_tensor(c) or tuple(c.shape) != (b, self.n_cfeat)):
            got = tuple(c.shape) if torch.is_tensor(c) else type(c).__name__
            raise ValueError(f"the network expects a context of shape ({b}, {self.n_cfeat}) or None, got {got}.")
        self.calls += 1
        self.rows += b
        t = t.reshape(-1, 1, 1, 1).to(x.dtype)
        out = torch.tanh(x) * (0.5 + t / (1 + t))
        if c is not None:
            out = out + (c.to(x.dtype) @ self.class_shift.to(x.dtype)).view(-1, 1, 1, 1)
        return out


def _noise(*shape, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


SCHEDULE = du.DDPMSchedule(500, 1e-4, 0.02)  # the course's schedule
T = SCHEDULE.T


def _col(v: torch.Tensor) -> torch.Tensor:
    return v.view(-1, 1, 1, 1)


# =================================================================================================
# Lesson 1, exercise 1: perturb_input from the formula
# =================================================================================================
def _perturb(x0, t, noise, signal, noise_scale):
    """sqrt(ab_t) x0 + sqrt(1 - ab_t) noise with the two coefficients given as functions of t."""
    return _col(signal(t)) * x0 + _col(noise_scale(t)) * noise


def check_perturb_input(fn) -> Verdict:
    """fn(x0, t, noise, schedule) -> x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) noise, with t (B,) in 1..T."""
    ab, a = SCHEDULE.ab_t, SCHEDULE.a_t
    ts = torch.tensor([1, 100, 250, 500])
    # images 4 pixels wide, 4 per batch: a (B,) coefficient that is not reshaped broadcasts silently
    probes = [
        ([f"t = {t}" for t in ts.tolist()], (_noise(4, 3, 4, 4, seed=1).clamp(-1, 1), ts, _noise(4, 3, 4, 4, seed=2))),
        ([f"t = {T} (whole batch)"] * 4, (torch.zeros(4, 3, 4, 4), torch.full((4,), T), _noise(4, 3, 4, 4, seed=3))),
    ]
    probes = [(labels, (*args, SCHEDULE)) for labels, args in probes]

    def right(x0, t, noise, _):
        return _perturb(x0, t, noise, lambda t: ab[t].sqrt(), lambda t: (1 - ab[t]).sqrt())

    var_right, var_wrong = float(1 - ab[250]), float((1 - ab[250]) ** 2)
    mistakes = [
        (
            lambda x0, t, noise, _: _perturb(x0, t, noise, lambda t: ab[t].sqrt(), lambda t: 1 - ab[t]),
            "the noise is scaled by (1 - ab_t) instead of sqrt(1 - ab_t), the original course's slip: at t = 250 "
            f"your x_t holds noise of variance {var_wrong:.3f} instead of {var_right:.3f}, so the network would "
            "learn on the wrong noise levels.",
        ),
        (
            lambda x0, t, noise, _: _perturb(x0, t, noise, lambda t: ab[t], lambda t: (1 - ab[t]).sqrt()),
            "the sprite is scaled by ab_t instead of sqrt(ab_t): the two variances, ab_t and 1 - ab_t, must add "
            "up to 1, so both coefficients are square roots.",
        ),
        (
            lambda x0, t, noise, _: _perturb(x0, t, noise, lambda t: (1 - ab[t]).sqrt(), lambda t: ab[t].sqrt()),
            "the two coefficients are swapped: ab_t is the share of the sprite, so sqrt(ab_t) goes with x0 "
            "(at t = 1 x_t must be almost the clean sprite).",
        ),
        (
            lambda x0, t, noise, _: _perturb(x0, t, noise, lambda t: a[t].sqrt(), lambda t: (1 - a[t]).sqrt()),
            "you used a_t, one step's share, where the jump from x_0 straight to x_t needs the product "
            "ab_t, the product of all a_s up to s = t (schedule.ab_t).",
        ),
        (
            lambda x0, t, noise, _: _perturb(
                x0, t, noise, lambda t: ab[t - 1].sqrt(), lambda t: (1 - ab[t - 1]).sqrt()
            ),
            "your coefficients belong to step t - 1: index the schedule with t itself, schedule.ab_t[t].",
        ),
        (
            lambda x0, t, noise, _: ab[t].sqrt() * x0 + (1 - ab[t]).sqrt() * noise,
            "ab_t[t] has shape (B,), and multiplying it with (B, C, H, W) lines it up with the last axis (the "
            "pixel columns), not the batch: reshape it to (B, 1, 1, 1) so each image gets its own t.",
        ),
    ]
    return _compare(
        fn,
        probes,
        right,
        mistakes,
        "x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) noise for each image's own t: at t = 1 the sprite is almost "
        "untouched, at t = T almost pure noise of variance 1. This is schedule.perturb_input.",
    )


# =================================================================================================
# Lesson 1, exercise 2: the DDPM sampling loop
# =================================================================================================
def _ddpm_loop(x_T, z, time_scale=1 / T, last_noise=False, noise=True, sigma=None, eps_scale=None):
    """The course's DDPM loop on StandInNet through schedule.denoise_add_noise, with knobs for the mistakes."""
    net, s = StandInNet(), SCHEDULE
    x = x_T
    for t in range(T, 0, -1):
        eps = net(x, torch.full((x.shape[0],), t * time_scale))
        zt = z[t] if noise and (t > 1 or last_noise) else torch.zeros_like(x)
        if sigma is None and eps_scale is None:
            x = s.denoise_add_noise(x, t, eps, zt)
        else:
            scale = (1 - s.a_t[t]) / (1 - s.ab_t[t]).sqrt() if eps_scale is None else eps_scale(t)
            x = (x - eps * scale) / s.a_t[t].sqrt() + (s.b_t[t].sqrt() if sigma is None else sigma(t)) * zt
    return x


def check_ddpm_sample(fn) -> Verdict:
    """fn(model, x_T, schedule, z) -> x_0: T DDPM steps, sigma_t^2 = b_t, z[t] at step t, none at t = 1."""
    s = SCHEDULE
    x_T, z = _noise(3, 3, 4, 4, seed=10), _noise(T + 1, 3, 3, 4, 4, seed=11)
    probes = [([f"sprite {i} of the batch" for i in range(3)], (x_T, z))]

    def run(x_T, z):
        return fn(StandInNet(), x_T, SCHEDULE, z)

    mistakes = [
        (
            lambda x_T, z: _ddpm_loop(x_T, z, last_noise=True),
            "you add fresh noise at the last step too: the step from t = 1 to x_0 must return the mean alone "
            "(no z), or every finished sprite keeps a last sprinkle of noise.",
        ),
        (
            lambda x_T, z: _ddpm_loop(x_T, z, time_scale=1),
            "the network got the integer t; it was trained on the time as a number in [0, 1], t / T "
            "(e.g. torch.full((B,), t / schedule.T)).",
        ),
        (
            lambda x_T, z: _ddpm_loop(x_T, z, noise=False),
            "no fresh noise at any step: that is the collapse of lesson 1, section 6; add sqrt(b_t) z[t] at "
            "every step except the last.",
        ),
        (
            lambda x_T, z: _ddpm_loop(x_T, z, sigma=lambda t: s.b_t[t]),
            "the fresh noise is scaled by the variance b_t; noise is scaled by its standard deviation, sqrt(b_t).",
        ),
        (
            lambda x_T, z: _ddpm_loop(x_T, z, eps_scale=lambda t: (1 - s.a_t[t]) / (1 - s.ab_t[t])),
            "the predicted noise is weighted by (1 - a_t) / (1 - ab_t); the formula divides by the square "
            "root, sqrt(1 - ab_t), the standard deviation of the noise in x_t.",
        ),
    ]
    return _compare(
        run,
        probes,
        _ddpm_loop,
        mistakes,
        "your loop takes the same T steps as du.sample_ddpm: remove this step's share of the predicted "
        "noise, rescale, add fresh noise sqrt(b_t) z, and none at the last step.",
    )


# =================================================================================================
# Lesson 2, exercise 1: a random timestep per image
# =================================================================================================
def _ignores_generator(what: str, draw: str) -> Verdict:
    return mistake(
        f"two generators with the same seed gave different {what}: pass the generator on to the torch function "
        f"that draws ({draw}(..., generator=generator)), so a seeded run repeats exactly."
    )


def check_sample_timesteps(fn) -> Verdict:
    """fn(batch_size, T, generator) -> (batch_size,) whole numbers, uniform over 1..T."""
    n, small_T = 5000, 10
    try:
        t = _call(fn, n, small_T, torch.Generator().manual_seed(0))
        if torch.is_tensor(t) and t.numel() == 1:
            return mistake(
                "you drew one t for the whole batch: draw batch_size timesteps, one per image, so one batch "
                "trains many noise levels at once."
            )
        _as_tensor(t, (n,), f"batch_size = {n}, T = {small_T}")
        if t.dtype.is_floating_point or t.dtype == torch.bool:
            return mistake(
                "your timesteps are not whole numbers: t indexes the schedule (ab_t[t]), so draw integers "
                "with torch.randint."
            )
        t_big = _as_tensor(_call(fn, 3, T, torch.Generator().manual_seed(1)), (3,), f"batch_size = 3, T = {T}")
        again = _as_tensor(_call(fn, n, small_T, torch.Generator().manual_seed(0)), (n,), "the same seed again")
    except _Answer as answer:
        return answer.verdict
    if not torch.equal(again, t):
        return _ignores_generator("timesteps", "torch.randint")
    low, high = int(t.min()), int(t.max())
    if low == 0:
        return mistake(
            f"your t can be 0 (with T = {small_T} it ran over {low}..{high}); it must run over 1..T: t = 0 is the "
            "clean sprite with no noise to predict, and t = T must be trained too (torch.randint(1, T + 1, ...))."
        )
    if low == 1 and high == small_T - 1:
        return mistake(
            f"t never reaches T (with T = {small_T} the largest is {high}): torch.randint's upper bound is "
            "exclusive, so ask for torch.randint(1, T + 1, ...)."
        )
    if bool((t == t[0]).all()):
        return mistake(
            "every image in the batch got the same t: draw batch_size timesteps, one per image, so one batch "
            "trains many noise levels at once."
        )
    if low < 1 or high > small_T or int(t_big.min()) < 1 or int(t_big.max()) > T:
        return not_yet(f"with T = {small_T} your timesteps run over {low}..{high}; they must lie in 1..{small_T}.")
    share = torch.bincount(t.long(), minlength=small_T + 1)[1:].double() / n
    worst = int((share - 1 / small_T).abs().argmax())
    if abs(float(share[worst]) - 1 / small_T) > 0.03:  # 7 standard deviations of a fair draw of 5000
        return not_yet(
            f"the timesteps are not uniform: with T = {small_T}, t = {worst + 1} came up {float(share[worst]):.1%} "
            f"of the time, where each value should come up about {1 / small_T:.0%}."
        )
    return correct(
        "one timestep per image, uniform over 1..T, so every batch trains the network on the whole range of "
        "noise levels. This is how du.diffusion_loss draws them."
    )


# =================================================================================================
# Lesson 2, exercise 2: the loss of one batch
# =================================================================================================
def _loss(x0, t, noise, noise_scale=None, time_scale=1 / T, target="noise", reduce="mean", square=True):
    """MSE(StandInNet(x_t, t/T), noise) with knobs for the mistakes."""
    ab = _col(SCHEDULE.ab_t[t])
    x_t = ab.sqrt() * x0 + ((1 - ab).sqrt() if noise_scale is None else noise_scale(ab)) * noise
    pred = StandInNet()(x_t, t * time_scale)
    err = pred - {"noise": noise, "x0": x0, "x_t": x_t}[target]
    err = err**2 if square else err.abs()
    return err.mean() if reduce == "mean" else err.sum()


def check_batch_loss(fn) -> Verdict:
    """fn(model, x0, t, noise, schedule) -> MSE(model(x_t, t / T), noise), a scalar."""
    probes = []
    for seed, ts in [(30, [1, 50, 250, 500]), (40, [400, 400, 10, 123])]:
        x0, noise = _noise(4, 3, 6, 6, seed=seed).clamp(-1, 1), _noise(4, 3, 6, 6, seed=seed + 1)
        probes.append(([f"the batch with t = {ts}"], (x0, torch.tensor(ts), noise)))

    def run(x0, t, noise):
        return fn(StandInNet(), x0, t, noise, SCHEDULE)

    mistakes = [
        (
            lambda x0, t, noise: _loss(x0, t, noise, time_scale=1),
            "the network got the integer t; it expects the time as a number in [0, 1], t / schedule.T.",
        ),
        (
            lambda x0, t, noise: _loss(x0, t, noise, noise_scale=lambda ab: 1 - ab),
            "x_t scales the noise by (1 - ab_t), the original course's slip; the forward process uses sqrt(1 - ab_t).",
        ),
        (
            lambda x0, t, noise: _loss(x0, t, noise, target="x0"),
            "you compare the prediction with the clean sprite x0; the network predicts the noise, so the "
            "target is `noise`.",
        ),
        (
            lambda x0, t, noise: _loss(x0, t, noise, target="x_t"),
            "you compare the prediction with the noisy input x_t; the target is the noise that was added.",
        ),
        (
            lambda x0, t, noise: _loss(x0, t, noise, reduce="sum"),
            "your loss is the sum of the squared errors; the mean squared error averages over every pixel "
            "(F.mse_loss does), which keeps the loss near 1 whatever the batch and image size.",
        ),
        (
            lambda x0, t, noise: _loss(x0, t, noise, square=False),
            "your loss averages absolute errors; the mean squared error squares them (F.mse_loss).",
        ),
    ]
    return _compare(
        run,
        probes,
        _loss,
        mistakes,
        "noise each image to its own t, let the network predict the noise from (x_t, t / T), and score it with "
        "the mean squared error: what du.diffusion_loss does with a random t and noise.",
    )


# =================================================================================================
# Lesson 3, exercise 1: the context-dropout mask
# =================================================================================================
def check_drop_context(fn) -> Verdict:
    """fn(c, p, generator) -> c with each row zeroed with probability p, the rest unchanged."""
    n = 5000
    c = 0.1 + 0.9 * torch.rand(n, 5, generator=torch.Generator().manual_seed(50))  # no zero entries
    try:
        shares = {}
        for p in (0.0, 0.1, 0.3):
            given = c.clone()
            out = _as_tensor(_call(fn, given, p, torch.Generator().manual_seed(51)), c.shape, f"p = {p}")
            if not torch.equal(given, c):
                return mistake(
                    "your function changed the caller's context in place: return a new tensor (e.g. "
                    "c * keep[:, None]) so the batch the training loop holds stays intact."
                )
            zero_rows = (out == 0).all(1)
            kept = ~zero_rows
            if bool(((out == 0).any(1) & kept).any()):
                return mistake(
                    "some contexts lost single entries: drop whole rows, one draw per sprite (a mask of "
                    "shape (B, 1)), so a sprite has either its full context or none."
                )
            if kept.any() and not _close(out[kept], c[kept]):
                ratio = float((out[kept] / c[kept]).mean())
                if abs(ratio - 1 / (1 - p)) < 1e-3:
                    return mistake(
                        f"the kept contexts were scaled by 1 / (1 - p) = {ratio:.3f}, as F.dropout does; a "
                        "context is either kept exactly as it was or zeroed."
                    )
                return not_yet(f"at p = {p} the rows you kept differ from the input (mean ratio {ratio:.3f}).")
            shares[p] = float(zero_rows.double().mean())
            if p > 0:
                again = _as_tensor(_call(fn, c.clone(), p, torch.Generator().manual_seed(51)), c.shape, "again")
                if not torch.equal(again, out):
                    return _ignores_generator("contexts dropped", "torch.rand")
        batch_fates = []  # small batches, to tell "one draw for the batch" from "never drops"
        gen = torch.Generator().manual_seed(52)
        for _ in range(200):
            out = _as_tensor(_call(fn, c[:10].clone(), 0.3, gen), (10, 5), "p = 0.3, a batch of 10")
            batch_fates.append((out == 0).all(1).double().mean())
    except _Answer as answer:
        return answer.verdict
    if all(abs(shares[p] - (1 - p)) < 0.03 for p in (0.1, 0.3)):
        return mistake(
            f"your mask keeps what it should drop: at p = 0.1 it zeroed {shares[0.1]:.1%} of the contexts. "
            "p is the chance to drop a context, so keep a row where rand >= p."
        )
    if shares[0.0] != 0:
        return not_yet(f"with p = 0 you dropped {shares[0.0]:.1%} of the contexts; p = 0 must keep them all.")
    fates = torch.stack(batch_fates)
    if bool(((fates == 0) | (fates == 1)).all()) and 0 < float(fates.mean()) < 1:
        return mistake(
            "each batch is either kept or dropped as a whole: draw one random number per sprite "
            "(torch.rand(B)), not one for the whole batch."
        )
    for p in (0.1, 0.3):
        if abs(shares[p] - p) > 0.03:  # 7 (p = 0.1) and 4.6 (p = 0.3) standard deviations of a fair draw
            return not_yet(f"at p = {p} you zeroed {shares[p]:.1%} of {n} contexts; expected about {p:.0%}.")
    return correct(
        "each sprite loses its whole context with probability p, and keeps it exactly otherwise, so one "
        "network learns both eps(x, c) and eps(x, 0): what classifier-free guidance needs (du.drop_context)."
    )


# =================================================================================================
# Lesson 3, exercise 2: guidance as eps_0 + s (eps_c - eps_0), counting network calls
# =================================================================================================
def check_guided_noise(fn) -> Verdict:
    """fn(model, x, t, c, s) -> eps_0 + s (eps_c - eps_0) with eps_c = model(x, t, c), eps_0 = model(x, t, 0)."""
    net = StandInNet()
    x = _noise(5, 3, 4, 4, seed=60)
    t = torch.tensor([0.9, 0.5, 0.5, 0.2, 0.02])
    c = torch.eye(5)[[0, 2, 4, 1, 3]]
    eps_c, eps_0 = net(x, t, c), net(x, t, None)
    scales = [0.0, 1.0, 3.0, 7.5]
    counter = StandInNet()
    probes = [([f"s = {s}, sprite {i}" for i in range(5)], (s,)) for s in scales]

    def run(s):
        return fn(counter, x, t, c, s)

    mistakes = [
        (
            lambda s: eps_c + s * (eps_0 - eps_c),
            "eps_c and eps_0 are swapped: s = 0 must give the unconditional eps_0 and s = 1 the conditional eps_c; "
            "larger s pushes beyond eps_c, away from eps_0.",
        ),
        (
            lambda s: eps_0 - s * (eps_c - eps_0),
            "the guidance term has the wrong sign: it must move towards the context, eps_0 + s (eps_c - eps_0), "
            "so s = 1 gives eps_c.",
        ),
        (
            lambda s: (1 + s) * eps_c - s * eps_0,
            "that is the lesson's form (1 + w) eps_c - w eps_0 with w = s; in this form s = 1 + w, so s = 1 must "
            "give eps_c exactly.",
        ),
        (
            lambda s: eps_c,
            "your eps_0 equals eps_c: the unconditional prediction needs the context zeroed (torch.zeros_like(c)) "
            "or None.",
        ),
    ]
    verdict = _compare(
        run,
        probes,
        lambda s: eps_0 + s * (eps_c - eps_0),
        mistakes,
        "eps_0 + s (eps_c - eps_0) is the lesson's (1 + w) eps_c - w eps_0 with s = 1 + w: s = 0 ignores the "
        "context, s = 1 is plain conditional sampling, s > 1 is guided.",
    )
    if verdict.correct:
        per_call = counter.rows / counter.calls
        verdict.message += (
            f" Counting: for {len(scales)} guided predictions of 5 sprites your function called the network "
            f"{counter.calls} times with {per_call:g} images each, {counter.rows} images in all. Guidance costs "
            "two predictions per step, so a guided 25-step DDIM run sends 50 B images through the network: "
            "50 calls on B images each (two per step), or, as du's samplers do it, 25 calls on a doubled batch "
            "of 2B."
        )
    return verdict


# =================================================================================================
# Lesson 4, exercise 1: a DDIM step with eta > 0
# =================================================================================================
def _ddim(x, t, t_prev, eps, z, eta, signal_ab=None, direction_ab=None, var_power=2, eta_power=2, direction=True):
    """One DDIM step (Song et al. 2021, eq. 12) with knobs for the mistakes; the defaults give the right step.

    x0_hat = (x - sqrt(1 - ab_t) eps) / sqrt(ab_t), sigma^2 = eta^2 (1 - ab_prev) / (1 - ab_t) (1 - ab_t / ab_prev),
    x_prev = sqrt(ab_prev) x0_hat + sqrt(1 - ab_prev - sigma^2) eps + sigma z.
    """
    ab, ab_prev = SCHEDULE.ab_t[t], SCHEDULE.ab_t[t_prev]
    x0_hat = (x - (1 - ab).sqrt() * eps) / ab.sqrt()
    var = eta**eta_power * (1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)
    sigma = var.sqrt()
    keep = 1 - (ab_prev if direction_ab is None else direction_ab) - (sigma**var_power if direction else 0)
    return (ab_prev if signal_ab is None else signal_ab).sqrt() * x0_hat + keep.sqrt() * eps + sigma * z


def check_ddim_step(fn) -> Verdict:
    """fn(x_t, t, t_prev, eps, z, eta, schedule) -> x_prev, as schedule.denoise_ddim(x_t, t, t_prev, eps, eta, z)."""
    cases = [(500, 480, 0.0), (300, 280, 0.5), (200, 100, 1.0), (60, 40, 0.5), (20, 0, 1.0)]
    probes = []
    for k, (t, t_prev, eta) in enumerate(cases):
        x, eps, z = _noise(2, 3, 4, 4, seed=70 + k), _noise(2, 3, 4, 4, seed=80 + k), _noise(2, 3, 4, 4, seed=90 + k)
        probes.append(([f"t = {t} -> t_prev = {t_prev}, eta = {eta}"] * 2, (x, t, t_prev, eps, z, eta)))

    def run(*args):
        return fn(*args, SCHEDULE)

    ab = SCHEDULE.ab_t
    ab_prev_hint = (
        "you used ab_t where the step needs ab_prev = schedule.ab_t[t_prev]: x_prev is rebuilt at the earlier "
        "step's noise level, sqrt(ab_prev) x0_hat + sqrt(1 - ab_prev - sigma^2) eps + sigma z."
    )
    mistakes = [
        (lambda x, t, tp, eps, z, eta: _ddim(x, t, tp, eps, z, eta, signal_ab=ab[t]), ab_prev_hint),
        (lambda x, t, tp, eps, z, eta: _ddim(x, t, tp, eps, z, eta, direction_ab=ab[t]), ab_prev_hint),
        (lambda x, t, tp, eps, z, eta: _ddim(x, t, tp, eps, z, eta, signal_ab=ab[t], direction_ab=ab[t]), ab_prev_hint),
        (
            lambda x, t, tp, eps, z, eta: _ddim(x, t, tp, eps, z, eta, direction=False),
            "with eta > 0 the noise direction's weight is sqrt(1 - ab_prev - sigma^2), not sqrt(1 - ab_prev): "
            "the fresh noise sigma z takes over part of the variance.",
        ),
        (
            lambda x, t, tp, eps, z, eta: _ddim(x, t, tp, eps, z, eta, var_power=1),
            "the noise direction's weight subtracts sigma where it needs the variance sigma^2: "
            "sqrt(1 - ab_prev - sigma^2).",
        ),
        (
            lambda x, t, tp, eps, z, eta: _ddim(x, t, tp, eps, z, eta, eta_power=1),
            "sigma grows like eta, so its square grows like eta^2: sigma = eta sqrt((1 - ab_prev) / (1 - ab_t) "
            "(1 - ab_t / ab_prev)) (it shows at eta = 0.5).",
        ),
    ]
    return _compare(
        run,
        probes,
        _ddim,
        mistakes,
        "your step is schedule.denoise_ddim: eta = 0 is plain DDIM, eta = 1 with t_prev = t - 1 is the DDPM step "
        "with the posterior variance (for t >= 2), and eta in between mixes fresh noise into the DDIM jump.",
    )


# =================================================================================================
# Lesson 4, exercise 2: the DDIM sampling loop
# =================================================================================================
def _ddim_loop(x_T, n, time_scale=1 / T, steps=None, stop_early=False):
    net, s = StandInNet(), SCHEDULE
    steps = s.step_sequence(n) if steps is None else steps
    if stop_early:
        steps = steps[:-1]
    x = x_T
    for t, t_prev in pairwise(steps):
        eps = net(x, torch.full((x.shape[0],), t * time_scale))
        x = s.denoise_ddim(x, t, t_prev, eps)
    return x


def _strided_loop(x_T, n):
    """The original course's DDIM loop: for t in range(T, 0, -(T // n)), t_prev = t - T // n (wraps below 0)."""
    net, ab_t, stride = StandInNet(), SCHEDULE.ab_t, T // n
    x = x_T
    for t in range(T, 0, -stride):
        eps = net(x, torch.full((x.shape[0],), t / T))
        ab, ab_prev = ab_t[t], ab_t[t - stride]
        x = ab_prev.sqrt() * (x - (1 - ab).sqrt() * eps) / ab.sqrt() + (1 - ab_prev).sqrt() * eps
    return x


def check_ddim_sample(fn) -> Verdict:
    """fn(model, x_T, schedule, n) -> x_0 after n DDIM steps (eta = 0) over schedule.step_sequence(n)."""
    probes = []
    for n, seed in [(1, 100), (5, 101), (15, 102)]:  # 15 does not divide T: step_sequence rounds
        probes.append(([f"n = {n} steps, sprite {i}" for i in range(2)], (_noise(2, 3, 4, 4, seed=seed), n)))

    def run(x_T, n):
        return fn(StandInNet(), x_T, SCHEDULE, n)

    mistakes = [
        (
            lambda x_T, n: _ddim_loop(x_T, n, time_scale=1),
            "the network got the integer t; it expects the time as a number in [0, 1], t / schedule.T.",
        ),
        (
            lambda x_T, n: _ddim_loop(x_T, n, stop_early=True),
            "your loop stops one jump early, at t = T / n: the last step must go all the way to t_prev = 0, or the "
            "sprites keep that step's noise.",
        ),
        (
            lambda x_T, n: _ddim_loop(x_T, n, steps=list(range(T, T - n - 1, -1))),
            "each step moves one timestep (t_prev = t - 1): n DDIM steps must cover all of T..0, jumping T / n "
            "timesteps each (schedule.step_sequence(n)).",
        ),
        (
            _strided_loop,
            "your loop strides T // n timesteps, as the original course's does: right when n divides T, but for "
            "n = 15 the strides of 33 end at t = 5, and the last t_prev = 5 - 33 is negative (it indexes ab_t from "
            "the end). Take the timesteps from schedule.step_sequence(n), which rounds them and always ends at 0.",
        ),
        (
            lambda x_T, n: x_T,  # also what a step rebuilt with ab_t instead of ab_prev gives
            "your loop returned x_T unchanged: either a step's result is not kept (x = ... in the loop), or x_prev "
            "is rebuilt with ab_t instead of ab_prev = schedule.ab_t[t_prev], so every step lands where it started.",
        ),
    ]
    return _compare(
        run,
        probes,
        _ddim_loop,
        mistakes,
        "n network calls instead of T: each step predicts the clean sprite and jumps T / n timesteps to the "
        "next entry of step_sequence(n), as du.sample_ddim does (same x_T, same sprites).",
    )


CHECKS = {
    "perturb_input": check_perturb_input,
    "ddpm_sample": check_ddpm_sample,
    "sample_timesteps": check_sample_timesteps,
    "batch_loss": check_batch_loss,
    "drop_context": check_drop_context,
    "guided_noise": check_guided_noise,
    "ddim_step": check_ddim_step,
    "ddim_sample": check_ddim_sample,
}
