"""The repeated units of the VidRD UNet and the temporal VAE decoder: a 2D layer and the temporal layer after it.

Each ResNet is followed by its Temp-Conv and each spatial transformer by its Temp-Attn; a unit runs the pair
(and, on the UNet's up path, the skip concatenation before the ResNet). Gradient checkpointing recomputes a
unit and regional ``torch.compile`` (``training.model.fast_paths``) compiles one, so what passes between the
two layers stays inside one graph: SD's spatial transformer returns NCHW where the rest of the fast path is
channels-last, and the gradient of a concatenation is a strided slice. Between separately compiled layers
both became copies at every boundary, forward and backward.

Units are plain attributes of their block (``block.res_units``, ``block.attn_units``), not registered
submodules: the parameters keep their Stable Diffusion names, and the units always run the block's own layers.
"""

from __future__ import annotations

import torch
from torch import nn


def cat_channels(x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
    """``torch.cat([x, skip], dim=1)``; for channels-last inputs, concatenated as NHWC so the result is
    channels-last too.

    Inductor lays out a channel concatenation of channels-last tensors as NCHW (a transposing copy) and then
    transposes it back for the convolution that reads it: two strided copies in every up-path unit (0.9 ms of
    kernels in a 24 ms sampling call, ``benchmarks/profile_units.py``). Along the last dimension of the NHWC
    views the concatenation is one contiguous copy (H100: 23.61 -> 23.13 ms per sampling call, training step
    254.5 -> 251.7 ms; ``benchmarks/RESULTS.md``).
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
    """``skip`` concatenated on channels (up path only), then the ResNet, then its Temp-Conv."""

    def __init__(self, resnet: nn.Module, temp_conv: nn.Module):
        super().__init__()
        self.resnet = resnet
        self.temp_conv = temp_conv

    def forward(
        self, x: torch.Tensor, temb: torch.Tensor | None, num_frames: int, skip: torch.Tensor | None = None
    ) -> torch.Tensor:
        if skip is not None:
            x = cat_channels(x, skip)
        return self.temp_conv(self.resnet(x, temb), num_frames)


class AttnTempUnit(nn.Module):
    """SD's spatial transformer (self-attention, cross-attention to the text, FF), then its Temp-Attn."""

    def __init__(self, attention: nn.Module, temp_attention: nn.Module):
        super().__init__()
        self.attention = attention
        self.temp_attention = temp_attention

    def forward(self, x: torch.Tensor, context: torch.Tensor, num_frames: int) -> torch.Tensor:
        x = self.attention(x, encoder_hidden_states=context, return_dict=False)[0]
        return self.temp_attention(x, num_frames)


def attach_units(block: nn.Module) -> None:
    """Pair a block's ``resnets`` with its ``temp_convs`` (and ``attentions`` with ``temp_attentions`` where
    it has them) as ``block.res_units`` / ``block.attn_units``."""
    res = [ResTempUnit(r, t) for r, t in zip(block.resnets, block.temp_convs, strict=True)]
    temp_attns = getattr(block, "temp_attentions", None) or []
    attn = [AttnTempUnit(a, t) for a, t in zip(block.attentions, temp_attns, strict=True)] if temp_attns else []
    # object.__setattr__: a list of modules is kept out of nn.Module's registry either way; this says so.
    object.__setattr__(block, "res_units", res)
    object.__setattr__(block, "attn_units", attn)
