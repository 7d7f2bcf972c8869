"""The fast path (torch.compile, channels_last) must not change the samples. No timings here:
speed is measured in scripts/benchmark.py."""

import pytest
import torch
from conftest import du
from evaluation import SAMPLERS
from speed import speed_up


def test_compiled_model_draws_the_same_sprites_as_eager(schedule):
    torch.manual_seed(0)
    model = du.ContextUnet(3, 16, 5, 16).eval()
    x_T = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    c = torch.eye(5)[[0, 1, 2, 3]]
    eager, _, _ = du.sample_ddim(model, schedule, 4, steps=4, context=c, guide_w=1.5, x_T=x_T, progress=False)
    fast = speed_up(model, compile=True)
    compiled, _, _ = du.sample_ddim(fast, schedule, 4, steps=4, context=c, guide_w=1.5, x_T=x_T, progress=False)
    torch.testing.assert_close(compiled, eager, atol=1e-4, rtol=1e-4)


def test_channels_last_model_draws_the_same_sprites(schedule):
    torch.manual_seed(0)
    model = du.ContextUnet(3, 16, 5, 16).eval()
    x_T = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    eager, _, _ = du.sample_ddim(model, schedule, 2, steps=3, x_T=x_T, progress=False)
    fast = speed_up(model, channels_last=True)
    assert fast.init_conv.conv1[0].weight.is_contiguous(memory_format=torch.channels_last)
    again, _, _ = du.sample_ddim(fast, schedule, 2, steps=3, x_T=x_T, progress=False)
    torch.testing.assert_close(again, eager, atol=1e-5, rtol=1e-5)


def test_frozen_compiled_copy_draws_the_same_sprites_and_leaves_the_model_alone(schedule):
    torch.manual_seed(0)
    model = du.ContextUnet(3, 16, 5, 16).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x_T = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    c = torch.eye(5)[[0, 2, 4]]
    eager, _, _ = du.sample_ddim(model, schedule, 3, steps=4, context=c, x_T=x_T, progress=False)
    frozen = speed_up(model, freeze=True)
    again, _, _ = du.sample_ddim(frozen, schedule, 3, steps=4, context=c, x_T=x_T, progress=False)
    torch.testing.assert_close(again, eager, atol=1e-4, rtol=1e-4)
    # after a sampler, a direct call still runs in eval mode (running BatchNorm statistics, not the batch's)
    t = torch.full((3,), 0.3)
    assert not frozen.training and not frozen.model.training
    with torch.inference_mode():
        direct = frozen(x_T.contiguous(memory_format=torch.channels_last), t, c)
        torch.testing.assert_close(direct, model(x_T, t, c), atol=1e-4, rtol=1e-4)
    with pytest.raises(RuntimeError, match="frozen copy for sampling"):
        frozen.train()
    # a copy: the original keeps its layout and weights, and later changes to it do not reach the copy
    assert not model.init_conv.conv1[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    still, _, _ = du.sample_ddim(frozen, schedule, 3, steps=4, context=c, x_T=x_T, progress=False)
    torch.testing.assert_close(still, eager, atol=1e-4, rtol=1e-4)
    # frozen for real: the BatchNorms are folded and the GELUs fused into oneDNN convolutions
    # (a compile without freezing calls the plain convolution and computes the rest itself)
    assert frozen.h == 16 and frozen.config() == model.config()
    with torch.inference_mode(), torch.profiler.profile() as prof:
        frozen(x_T.contiguous(memory_format=torch.channels_last), torch.full((3,), 0.5), c)
    assert any("convolution_pointwise" in e.name for e in prof.events())


@pytest.mark.parametrize("guided", [False, True])
@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_sampling_loops_never_wait_for_the_device(name, guided):
    """A model on the meta device stands in for a GPU: its tensors hold no values, so whatever would make
    the host wait for the device (``.item()``, ``if tensor:``, a copy to the host) raises instead. With no
    frames asked for, every sampler runs through without one; asking for frames copies (the control)."""
    model = du.ContextUnet(3, 8, 5, 8).eval().to("meta")
    schedule = du.DDPMSchedule(40, 1e-4, 0.02)  # short: every op on the meta device costs dispatch time
    kw = {"context": torch.eye(5)[[0, 3]], "guide_w": 2.0} if guided else {}
    kw |= {} if name == "ddpm" else {"steps": 10}
    x, frames, _ = SAMPLERS[name](model, schedule, 2, save_rate=None, progress=False, **kw)
    assert x.device.type == "meta" and x.shape == (2, 3, 8, 8) and len(frames) == 0
    with pytest.raises(RuntimeError, match="meta"):
        SAMPLERS[name](model, schedule, 2, save_rate=1, progress=False, **kw)


def _failing_backend(graph_module, example_inputs):
    raise RuntimeError("no C++ compiler here (a stand-in for any compiler failure)")


@pytest.mark.parametrize("freeze", [False, True])
def test_a_failed_compile_falls_back_to_eager_with_one_warning(schedule, freeze):
    torch.manual_seed(0)
    model = du.ContextUnet(3, 8, 5, 16).eval()
    x_T = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    eager, _, _ = du.sample_ddim(model, schedule, 2, 3, x_T=x_T, progress=False)
    fast = speed_up(model, compile=True, freeze=freeze, backend=_failing_backend)
    with pytest.warns(RuntimeWarning, match="running it eagerly instead") as caught:
        again, _, _ = du.sample_ddim(fast, schedule, 2, 3, x_T=x_T, progress=False)
    assert len([w for w in caught if issubclass(w.category, RuntimeWarning)]) == 1  # once, not every step
    assert "no C++ compiler here" in fast.failed
    torch.testing.assert_close(again, eager, atol=1e-5, rtol=1e-5)


def test_a_bad_input_to_a_compiled_model_is_still_the_models_clear_error():
    model = du.ContextUnet(3, 8, 5, 16).eval()
    fast = speed_up(model, compile=True, backend=_failing_backend)
    with pytest.raises(ValueError, match="expected x of shape"):
        fast(torch.randn(2, 3, 8, 8), torch.rand(2))
    assert fast.failed is None
