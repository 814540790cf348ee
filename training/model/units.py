"""The repeated units of the VidRD UNet and the temporal VAE decoder: a 2D layer and the temporal layer after it.

Each ResNet is followed by its Temp-Conv, and each spatial transformer holds a Temp-Attn in every block
(``training.model.video_blocks``); a unit runs a ResNet and its Temp-Conv (and, on the UNet's up path, the skip
concatenation before the ResNet) or a whole spatial transformer. Gradient checkpointing recomputes a
unit and regional ``torch.compile`` (``training.model.fast_paths``) compiles one, so what passes between a
2D layer and its temporal layer stays inside one graph (layout changes, the strided slice that is the gradient
of a concatenation) instead of becoming a copy at every region boundary, forward and backward.

Units are plain attributes of their block (``block.res_units``, ``block.attn_units``), not registered
submodules: the parameters keep their Stable Diffusion names, and the units always run the block's own layers.
"""

from __future__ import annotations

import torch
from torch import nn

from training.model.video_blocks import Layout, check_sd_resnet, resnet_over_frames, spatial_transformer


def cat_channels(x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
    """``torch.cat([x, skip], dim=1)``; for channels-last inputs, concatenated as NHWC so the result is
    channels-last too.

    Inductor lays out a channel concatenation of channels-last tensors as NCHW (a transposing copy) and then
    transposes it back for the convolution that reads it: two strided copies in every up-path unit
    (``benchmarks/profile_units.py``). Along the last dimension of the NHWC views the concatenation is one
    contiguous copy (measured gain in ``benchmarks/RESULTS.md``).
    """
    nhwc = torch.channels_last
    if (
        x.dim() == 4
        and not x.is_contiguous()
        and x.is_contiguous(memory_format=nhwc)
        and skip.is_contiguous(memory_format=nhwc)
    ):
        return torch.cat([x.permute(0, 2, 3, 1), skip.permute(0, 2, 3, 1)], dim=3).permute(0, 3, 1, 2)
    return torch.cat([x, skip], dim=1)


class ResTempUnit(nn.Module):
    """``skip`` concatenated on channels (up path only), then the ResNet, then its Temp-Conv.

    ``norm_over_frames``: the ResNet's GroupNorms pool statistics over the video's frames (official layout).
    """

    def __init__(self, resnet: nn.Module, temp_conv: nn.Module, norm_over_frames: bool = False):
        super().__init__()
        if norm_over_frames:
            check_sd_resnet(resnet)
        self.resnet = resnet
        self.temp_conv = temp_conv
        self.norm_over_frames = norm_over_frames

    def forward(
        self, x: torch.Tensor, temb: torch.Tensor | None, num_frames: int, skip: torch.Tensor | None = None
    ) -> torch.Tensor:
        if skip is not None:
            x = cat_channels(x, skip)
        x = resnet_over_frames(self.resnet, x, temb, num_frames) if self.norm_over_frames else self.resnet(x, temb)
        return self.temp_conv(x, num_frames)


class AttnTempUnit(nn.Module):
    """SD's spatial transformer (self-attention, cross-attention to the text, Temp-Attn, FF in each block)."""

    def __init__(self, attention: nn.Module, layout: Layout):
        super().__init__()
        self.attention = attention
        self.layout = layout
        # Output layout: NCHW, or channels-last once the model is (training.model.fast_paths).
        self.memory_format = torch.contiguous_format

    def forward(self, x: torch.Tensor, context: torch.Tensor, num_frames: int) -> torch.Tensor:
        return spatial_transformer(self.attention, x, context, num_frames, self.layout, self.memory_format)


def attach_units(block: nn.Module, layout: Layout | None = None) -> None:
    """Pair a block's ``resnets`` with its ``temp_convs`` as ``block.res_units`` and wrap its spatial
    transformers (``attentions``, UNet only: ``layout`` given) as ``block.attn_units``."""
    over_frames = layout is not None and layout.norm_over_frames
    res = [ResTempUnit(r, t, over_frames) for r, t in zip(block.resnets, block.temp_convs, strict=True)]
    attns = getattr(block, "attentions", None) or []
    attn = [AttnTempUnit(a, layout) for a in attns] if layout is not None else []
    # object.__setattr__: a list of modules is kept out of nn.Module's registry either way; this says so.
    object.__setattr__(block, "res_units", res)
    object.__setattr__(block, "attn_units", attn)
