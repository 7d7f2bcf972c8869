"""The fast path (torch.compile, channels_last) must not change the samples. No timings here:
speed is measured in scripts/benchmark.py."""

import torch
from conftest import du


def test_compiled_model_draws_the_same_sprites_as_eager(schedule):
    torch.manual_seed(0)
    model = du.ContextUnet(3, 16, 5, 16).eval()
    x_T = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    c = torch.eye(5)[[0, 1, 2, 3]]
    eager, _ = du.sample_ddim(model, schedule, 4, n=4, context=c, guide_w=1.5, x_T=x_T, progress=False)
    fast = du.speed_up(model, compile=True)
    compiled, _ = du.sample_ddim(fast, schedule, 4, n=4, context=c, guide_w=1.5, x_T=x_T, progress=False)
    torch.testing.assert_close(compiled, eager, atol=1e-4, rtol=1e-4)


def test_channels_last_model_draws_the_same_sprites(schedule):
    torch.manual_seed(0)
    model = du.ContextUnet(3, 16, 5, 16).eval()
    x_T = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    eager, _ = du.sample_ddim(model, schedule, 2, n=3, x_T=x_T, progress=False)
    fast = du.speed_up(model, channels_last=True)
    assert fast.init_conv.conv1[0].weight.is_contiguous(memory_format=torch.channels_last)
    again, _ = du.sample_ddim(fast, schedule, 2, n=3, x_T=x_T, progress=False)
    torch.testing.assert_close(again, eager, atol=1e-5, rtol=1e-5)
