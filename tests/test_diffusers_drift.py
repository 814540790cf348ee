"""The parts of diffusers' 2D blocks that ``training.model.video_blocks`` writes out again (to run them on frames
folded into the batch) still compute what the installed diffusers computes. On one frame per video, with the
paper's per-frame layout, the video versions reduce to the 2D blocks exactly: a change in diffusers' forward
(a new scale, another order of norm and residual) fails here, naming the copy to update."""

import pytest
import torch
from diffusers.models.attention import BasicTransformerBlock
from diffusers.models.resnet import ResnetBlock2D
from diffusers.models.transformers.transformer_2d import Transformer2DModel

from training.model.video_blocks import (
    FRAMEWISE,
    Layout,
    add_temporal_attention,
    resnet_over_frames,
    spatial_transformer,
    transformer_block,
)


def randomize(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every parameter random (diffusers zero-inits some output layers, which would hide a drift behind zeros)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return module.eval()


@pytest.mark.parametrize("shortcut", [False, True])
def test_resnet_over_frames_is_diffusers_resnet_on_one_frame(shortcut):
    resnet = randomize(ResnetBlock2D(in_channels=32, out_channels=64 if shortcut else 32, temb_channels=16, groups=8,
                                      output_scale_factor=2.0))  # fmt: skip
    x, temb = torch.randn(3, 32, 8, 8), torch.randn(3, 16)
    with torch.no_grad():
        torch.testing.assert_close(resnet_over_frames(resnet, x, temb, 1), resnet(x, temb), rtol=1e-5, atol=1e-5)


def test_transformer_block_is_diffusers_block_without_its_temporal_part():
    block = randomize(BasicTransformerBlock(32, 2, 16, cross_attention_dim=24, activation_fn="geglu"))
    h, context = torch.randn(2, 10, 32), torch.randn(2, 5, 24)
    with torch.no_grad():
        ours = transformer_block(block, h, context, 1, Layout.named(FRAMEWISE))
        torch.testing.assert_close(ours, block(h, encoder_hidden_states=context), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("linear", [True, False])  # SD 2.x projects with Linear layers, SD 1.x with 1x1 convs
def test_spatial_transformer_is_diffusers_transformer_on_one_frame(linear):
    transformer = Transformer2DModel(2, 16, in_channels=32, norm_num_groups=8, cross_attention_dim=24,
                                     use_linear_projection=linear)  # fmt: skip
    add_temporal_attention(transformer)  # present as in the UNet; one frame never reaches it in this layout
    randomize(transformer)
    x, context = torch.randn(2, 32, 6, 6), torch.randn(2, 5, 24)
    with torch.no_grad():
        ours = spatial_transformer(transformer, x, context, 1, Layout.named(FRAMEWISE))
        theirs = transformer(x, encoder_hidden_states=context).sample
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
