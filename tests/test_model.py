"""Facts about the network: its size, its layout, and its input checks."""

import pytest
import torch
from conftest import du


def test_course_model_has_1481027_parameters():
    assert du.count_parameters(du.ContextUnet(3, 64, 5, 16)) == 1_481_027


def test_residual_shortcut_is_a_registered_trained_conv():
    model = du.ContextUnet(3, 64, 5, 16)
    assert isinstance(model.init_conv.shortcut, torch.nn.Conv2d)
    assert "init_conv.shortcut.weight" in model.state_dict()
    assert model.init_conv.shortcut.weight.requires_grad
    # Same-channel and non-residual blocks have no shortcut weights.
    assert not any("down1" in k and "shortcut" in k for k in model.state_dict())


def test_forward_is_deterministic_in_eval_mode():
    """The original built a random 1x1 conv inside forward: two calls then differed."""
    model = du.ContextUnet(3, 16, 5, 16).eval()
    x, t = torch.randn(2, 3, 16, 16), torch.rand(2)
    with torch.no_grad():
        assert torch.equal(model(x, t), model(x, t))


@pytest.mark.parametrize("height", [16, 20, 24, 28])
def test_every_height_divisible_by_4_works(height):
    model = du.ContextUnet(3, 16, 5, height)
    assert model(torch.randn(2, 3, height, height), torch.rand(2)).shape == (2, 3, height, height)
    assert model.to_vec[0].kernel_size == height // 4  # pooling window h/4, not a fixed 4


def test_height_not_divisible_by_4_is_refused():
    with pytest.raises(ValueError, match="divisible by 4"):
        du.ContextUnet(3, 16, 5, 18)


def test_time_as_vector_or_4d_gives_the_same_output():
    model = du.ContextUnet(3, 16, 5, 16).eval()
    x, t = torch.randn(3, 3, 16, 16), torch.rand(3)
    with torch.no_grad():
        assert torch.allclose(model(x, t), model(x, t.view(3, 1, 1, 1)))


def test_no_context_means_a_zero_context():
    model = du.ContextUnet(3, 16, 5, 16).eval()
    x, t = torch.randn(2, 3, 16, 16), torch.rand(2)
    with torch.no_grad():
        assert torch.equal(model(x, t, None), model(x, t, torch.zeros(2, 5)))


@pytest.mark.parametrize(
    "x, t, c, match",
    [
        (torch.randn(2, 3, 28, 28), torch.rand(2), None, r"x of shape \(B, 3, 16, 16\)"),
        (torch.randn(3, 16, 16), torch.rand(1), None, r"x of shape"),
        (torch.randn(2, 3, 16, 16), torch.rand(3), None, r"t of shape \(2,\)"),
        (torch.randn(2, 3, 16, 16), torch.rand(2), torch.zeros(2, 10), r"context c of shape \(2, 5\)"),
        (torch.randn(2, 3, 16, 16), torch.rand(2), torch.zeros(5), r"context c of shape \(2, 5\)"),
    ],
)
def test_wrong_input_shapes_name_the_expected_shape(x, t, c, match):
    model = du.ContextUnet(3, 16, 5, 16)
    with pytest.raises(ValueError, match=match):
        model(x, t, c)
