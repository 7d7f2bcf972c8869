"""The functions behind the notebooks' widgets (section 8): they return Figures and refuse bad input."""

import numpy as np
import pytest
import torch
from conftest import du
from matplotlib.figure import Figure


def sprite(seed=0):
    return torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def image_of(ax) -> np.ndarray:
    """The array an axis shows (its first image)."""
    return np.asarray(ax.get_images()[0].get_array())


# -- lesson 1: the forward process -------------------------------------------------------


@pytest.mark.parametrize("t", [0, 1, 250, 500])
def test_show_forward_process_draws_the_clean_and_noised_sprite_beside_the_schedule(schedule, t):
    fig = du.show_forward_process(sprite(), schedule, t)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 3
    assert image_of(fig.axes[0]).shape == (16, 16, 3)
    assert image_of(fig.axes[1]).shape == (16, 16, 3)
    assert len(fig.axes[2].get_lines()) >= 2  # ab_t and 1 - ab_t


def test_show_forward_process_at_t0_shows_the_clean_sprite(schedule):
    x0 = sprite(1)
    fig = du.show_forward_process(x0, schedule, 0)
    np.testing.assert_allclose(image_of(fig.axes[1]), image_of(fig.axes[0]), atol=1e-6)


def test_show_forward_process_noises_with_sqrt_of_one_minus_ab_t(schedule):
    """With a clean sprite of zeros (grey) the shown pixels are sqrt(1 - ab_t) * noise, clipped and mapped to [0, 1]."""
    t = 120
    noise = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(2)) * 0.1
    fig = du.show_forward_process(torch.zeros(3, 16, 16), schedule, t, noise)
    expected = (np.sqrt(1 - schedule.ab_t[t].item()) * noise[0].numpy().transpose(1, 2, 0) + 1) / 2
    np.testing.assert_allclose(image_of(fig.axes[1]), expected, atol=1e-5)


def test_show_forward_process_accepts_a_batch_of_one(schedule):
    assert len(du.show_forward_process(sprite()[None], schedule, 10).axes) == 3


@pytest.mark.parametrize("t", [-1, 501, 2.5, True, "3"])
def test_show_forward_process_rejects_a_timestep_outside_0_to_T(schedule, t):
    with pytest.raises(ValueError, match="t must"):
        du.show_forward_process(sprite(), schedule, t)


def test_show_forward_process_rejects_more_than_one_sprite_and_mismatched_noise(schedule):
    with pytest.raises(ValueError, match="one sprite"):
        du.show_forward_process(torch.zeros(2, 3, 16, 16), schedule, 5)
    with pytest.raises(ValueError, match="noise"):
        du.show_forward_process(sprite(), schedule, 5, noise=torch.zeros(3, 8, 8))


# -- lesson 3: context mixes and guidance ------------------------------------------------


@pytest.mark.parametrize("weights", [[1, 0, 0.6, 0, 0], {"hero": 1, "food": 0.6}, [0, 0, 0, 0, 0]])
def test_context_grid_draws_one_grid_of_n_sample_sprites(schedule, small_model, weights):
    fig = du.context_grid(small_model, schedule, weights, guide_w=0.0, n_sample=6, steps=2, nrow=3)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 1
    # 2 rows x 3 columns of 16-pixel sprites with a 1-pixel border: (2*17 + 1, 3*17 + 1)
    assert image_of(fig.axes[0]).shape == (35, 52, 3)


def test_context_grid_names_the_mix_and_the_guidance_in_its_title(schedule, small_model):
    fig = du.context_grid(small_model, schedule, {"hero": 1, "food": 0.5}, guide_w=2, n_sample=2, steps=2)
    title = fig.axes[0].get_title()
    assert "hero 1 + food 0.5" in title and "w = 2" in title


def test_context_grid_with_the_same_seed_draws_the_same_sprites(schedule, small_model):
    a = du.context_grid(small_model, schedule, [0, 1, 0, 0, 0], guide_w=1.0, n_sample=4, steps=2, seed=3)
    b = du.context_grid(small_model, schedule, [0, 1, 0, 0, 0], guide_w=1.0, n_sample=4, steps=2, seed=3)
    np.testing.assert_array_equal(image_of(a.axes[0]), image_of(b.axes[0]))


@pytest.mark.parametrize("weights", [[1, 0, 0], [1, 0, 0, 0, 0, 0], {"wizard": 1}, [np.nan, 0, 0, 0, 0]])
def test_context_grid_rejects_a_context_of_the_wrong_length_or_class(schedule, small_model, weights):
    with pytest.raises(ValueError):
        du.context_grid(small_model, schedule, weights, n_sample=2, steps=2)


def test_context_grid_rejects_a_negative_guidance_weight(schedule, small_model):
    with pytest.raises(ValueError, match="guide_w"):
        du.context_grid(small_model, schedule, [1, 0, 0, 0, 0], guide_w=-1, n_sample=2, steps=2)


# -- lesson 4: number of steps -----------------------------------------------------------


def noise(n=3, seed=0):
    return torch.randn(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


def test_compare_steps_draws_reference_ddim_and_dpm_rows(schedule, small_model):
    x_T = noise()
    fig = du.compare_steps(small_model, schedule, 3, x_T, reference=torch.zeros_like(x_T))
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 3
    titles = [ax.get_title() for ax in fig.axes]
    assert "DDPM" in titles[0] and "DDIM, 3 steps" in titles[1] and "DPM-Solver" in titles[2]
    for ax in fig.axes:
        assert image_of(ax).shape == (18, 52, 3)  # one row of 3 sprites


def test_compare_steps_without_a_reference_draws_two_rows(schedule, small_model):
    fig = du.compare_steps(small_model, schedule, 2, noise(), context=[0, 0, 1, 0, 0])
    assert len(fig.axes) == 2


def test_compare_steps_with_one_step_shows_ddim_and_dpm_agreeing(schedule, small_model):
    """With a single step both solvers land on the same data prediction: the gap is 0."""
    fig = du.compare_steps(small_model, schedule, 1, noise())
    assert "= 0.000" in fig.axes[1].get_title()


@pytest.mark.parametrize("steps", [0, 501, 2.5])
def test_compare_steps_rejects_a_step_count_outside_1_to_T(schedule, small_model, steps):
    with pytest.raises(ValueError):
        du.compare_steps(small_model, schedule, steps, noise())


def test_compare_steps_rejects_a_reference_that_does_not_match_the_noise(schedule, small_model):
    with pytest.raises(ValueError, match="reference"):
        du.compare_steps(small_model, schedule, 2, noise(3), reference=torch.zeros(2, 3, 16, 16))


def test_compare_steps_rejects_a_context_of_the_wrong_length(schedule, small_model):
    with pytest.raises(ValueError, match="context"):
        du.compare_steps(small_model, schedule, 2, noise(), context=[1, 0, 0])


# -- lesson 2: the loss curve ------------------------------------------------------------


def test_loss_curve_draws_the_raw_and_the_smoothed_loss(schedule):
    fig = du.loss_curve(np.arange(50), np.linspace(1.0, 0.1, 50), smooth=10, total_steps=100)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    assert len(ax.get_lines()) == 2
    assert ax.get_xlim() == (0.0, 100.0)
    assert len(ax.get_lines()[1].get_xdata()) == 41  # the moving average has 50 - 10 + 1 points


def test_loss_curve_accepts_an_empty_start_and_rejects_unequal_lengths():
    assert len(du.loss_curve([], []).axes) == 1
    with pytest.raises(ValueError):
        du.loss_curve([1, 2, 3], [0.5, 0.4])


# -- labelled rows of sprites ------------------------------------------------------------


def test_sprite_rows_draws_one_titled_axis_per_row():
    rows = {"epoch 0": torch.zeros(4, 3, 16, 16), "epoch 4": torch.ones(4, 3, 16, 16)}
    fig = du.sprite_rows(rows, title="watch it learn")
    assert isinstance(fig, Figure)
    assert [ax.get_title() for ax in fig.axes] == ["epoch 0", "epoch 4"]
    assert image_of(fig.axes[0]).shape == (18, 69, 3)  # one line of 4 sprites


def test_sprite_rows_wraps_rows_at_nrow_and_refuses_no_rows():
    fig = du.sprite_rows([("a", torch.zeros(6, 3, 16, 16))], nrow=3)
    assert image_of(fig.axes[0]).shape == (35, 52, 3)
    with pytest.raises(ValueError):
        du.sprite_rows({})


def test_sprite_rows_lays_rows_side_by_side_in_columns():
    rows = [(f"row {i}", torch.zeros(2, 3, 16, 16)) for i in range(3)]
    fig = du.sprite_rows(rows, columns=2)
    titled = [ax.get_title() for ax in fig.axes if ax.get_images()]
    assert titled == ["row 0", "row 1", "row 2"]
    assert len(fig.axes) == 4  # a 2 x 2 layout, the last panel left empty
