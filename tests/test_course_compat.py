"""Code written for the original short course keeps working against this module.

Learners who took that course bring its notebook code: `from diffusion_utilities import *`, a
ContextUnet of their own built from the module's blocks, weights loaded with
`load_state_dict(torch.load(...))` by the course's file names, a sampling loop that passes one
time for the whole batch as a (1, 1, 1, 1) tensor, `CustomDataset(sprites, labels, transform,
null_context=False)` and `plot_sample(intermediate, n, nrows, save_dir, fn, w, save=False)`.
The code below is written in that style (our own words, the course's names and signatures).
"""

import numpy as np
import torch
import torch.nn as nn
from conftest import ROOT, write_sprites


def star_namespace() -> dict:
    namespace: dict = {}
    exec("from diffusion_utilities import *", namespace)
    return namespace


def learners_context_unet(ns: dict):
    """A ContextUnet as a learner of the course defines it in a notebook, from the module's blocks."""
    ResidualConvBlock, UnetDown, UnetUp, EmbedFC = (
        ns[k] for k in ("ResidualConvBlock", "UnetDown", "UnetUp", "EmbedFC")
    )

    class ContextUnet(nn.Module):
        def __init__(self, in_channels, n_feat=256, n_cfeat=10, height=28):
            super().__init__()
            self.in_channels, self.n_feat, self.n_cfeat, self.h = in_channels, n_feat, n_cfeat, height
            self.init_conv = ResidualConvBlock(in_channels, n_feat, is_res=True)
            self.down1 = UnetDown(n_feat, n_feat)
            self.down2 = UnetDown(n_feat, 2 * n_feat)
            self.to_vec = nn.Sequential(nn.AvgPool2d(4), nn.GELU())
            self.timeembed1 = EmbedFC(1, 2 * n_feat)
            self.timeembed2 = EmbedFC(1, n_feat)
            self.contextembed1 = EmbedFC(n_cfeat, 2 * n_feat)
            self.contextembed2 = EmbedFC(n_cfeat, n_feat)
            self.up0 = nn.Sequential(
                nn.ConvTranspose2d(2 * n_feat, 2 * n_feat, height // 4, height // 4),
                nn.GroupNorm(8, 2 * n_feat),
                nn.ReLU(),
            )
            self.up1 = UnetUp(4 * n_feat, n_feat)
            self.up2 = UnetUp(2 * n_feat, n_feat)
            self.out = nn.Sequential(
                nn.Conv2d(2 * n_feat, n_feat, 3, 1, 1),
                nn.GroupNorm(8, n_feat),
                nn.ReLU(),
                nn.Conv2d(n_feat, in_channels, 3, 1, 1),
            )

        def forward(self, x, t, c=None):
            x = self.init_conv(x)
            down1 = self.down1(x)
            down2 = self.down2(down1)
            hiddenvec = self.to_vec(down2)
            if c is None:
                c = torch.zeros(x.shape[0], self.n_cfeat).to(x)
            cemb1 = self.contextembed1(c).view(-1, self.n_feat * 2, 1, 1)
            temb1 = self.timeembed1(t).view(-1, self.n_feat * 2, 1, 1)
            cemb2 = self.contextembed2(c).view(-1, self.n_feat, 1, 1)
            temb2 = self.timeembed2(t).view(-1, self.n_feat, 1, 1)
            up1 = self.up0(hiddenvec)
            up2 = self.up1(cemb1 * up1 + temb1, down2)
            up3 = self.up2(cemb2 * up2 + temb2, down1)
            return self.out(torch.cat((up3, x), 1))

    return ContextUnet


def test_star_import_gives_the_course_names():
    ns = star_namespace()
    for name in ("ResidualConvBlock", "UnetDown", "UnetUp", "EmbedFC", "ContextUnet", "CustomDataset",
                 "transform", "plot_sample", "norm_all", "unorm", "show_images"):  # fmt: skip
        assert name in ns, name


def test_a_learners_unet_loads_the_shipped_weights_by_the_course_file_names():
    ns = star_namespace()
    ContextUnet = learners_context_unet(ns)
    for name in ("model_trained.pth", "context_model_trained.pth"):
        nn_model = ContextUnet(in_channels=3, n_feat=64, n_cfeat=5, height=16)
        nn_model.load_state_dict(torch.load(ROOT / "weights" / name, map_location="cpu"))
        ours = ns["ContextUnet"](in_channels=3, n_feat=64, n_cfeat=5, height=16)
        ours.load_state_dict(torch.load(ROOT / "weights" / name, map_location="cpu"))
        nn_model.eval(), ours.eval()
        x = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
        # the course's loop: one time for the whole batch, shape (1, 1, 1, 1), no context
        t = torch.tensor([250 / 500])[:, None, None, None]
        with torch.no_grad():
            torch.testing.assert_close(nn_model(x, t), ours(x, t), atol=1e-5, rtol=1e-5)


def test_custom_dataset_and_plot_sample_take_the_course_arguments(tmp_path):
    ns = star_namespace()
    sprites, labels = write_sprites(tmp_path, n=8)
    dataset = ns["CustomDataset"](sprites, labels, ns["transform"], null_context=False)
    image, label = dataset[0]
    assert image.shape == (3, 16, 16) and label.shape == (5,)
    intermediate = np.random.default_rng(0).standard_normal((3, 8, 3, 16, 16)).astype(np.float32)
    # the sixth argument is a label that goes into the GIF's name, not a size
    ani = ns["plot_sample"](intermediate, 8, 4, str(tmp_path) + "/", "ani_run", None, save=False)
    assert ani is not None and not list(tmp_path.glob("*.gif"))
    ns["plot_sample"](intermediate, 8, 4, tmp_path, "ani_run", 2.0, save=True)
    assert (tmp_path / "ani_run_w2.0.gif").exists()
