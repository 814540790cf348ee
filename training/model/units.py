"""Video blocks: one level of the VidRD UNet or of the temporal VAE decoder, and the units it runs.

A level of Stable Diffusion's UNet (down, mid or up) or of its VAE decoder's up path becomes a :class:`VideoBlock`:
diffusers' 2D layers of that level under diffusers' names, a Temp-Conv after every ResNet and, in the UNet, a
Temp-Attn in every spatial transformer block (``training.model.video_blocks``). The block runs as units: a unit runs
a ResNet and its Temp-Conv (and, on the UNet's up path, the skip concatenation before the ResNet) or a whole spatial
transformer. Gradient checkpointing recomputes a unit and regional ``torch.compile`` (``training.model.fast_paths``)
compiles one, so what passes between a 2D layer and its temporal layer stays inside one graph (layout changes, the
strided slice that is the gradient of a concatenation) instead of becoming a copy at every region boundary, forward
and backward.

Units are plain attributes of their block (``block.res_units``, ``block.attn_units``), not registered
submodules: the parameters keep their Stable Diffusion names, and the units always run the block's own layers.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from training.model.video_blocks import (
    Layout,
    add_temporal_attention,
    check_sd_resnet,
    resnet_over_frames,
    spatial_transformer,
)

# The children of diffusers' 2D levels (CrossAttnDownBlock2D, DownBlock2D, UNetMidBlock2DCrossAttn,
# CrossAttnUpBlock2D, UpBlock2D, UpDecoderBlock2D); a level with anything else is not one this model inflates.
LEVEL_LAYERS = ("attentions", "resnets", "downsamplers", "upsamplers")


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


class VideoBlock(nn.Module):
    """One level of the UNet (down, mid or up) or of the VAE decoder's up path, inflated for video.

    Holds the 2D level's layers under diffusers' names and in diffusers' order (``attentions``, ``resnets``,
    ``downsamplers`` / ``upsamplers``), then ``temp_convs`` (one Temp-Conv after every ResNet), so its state dict
    is the 2D level's key for key plus the temporal layers' keys, as in the authors' release. Given a ``layout``
    (the UNet), every spatial transformer block also gets its Temp-Attn and the ResNets follow the layout's
    GroupNorms. ``res_units[i]`` runs ``resnets[i]`` + ``temp_convs[i]``; ``attn_units[i]`` runs ``attentions[i]``.
    """

    def __init__(self, level: nn.Module, temp_conv: Callable[[int], nn.Module], layout: Layout | None = None):
        super().__init__()
        for name, child in level.named_children():
            if name not in LEVEL_LAYERS:
                raise ValueError(f"{type(level).__name__} has {name!r}: not a Stable Diffusion 2D level")
            self.add_module(name, child)
        # temp_conv(channels) builds the Temp-Conv that follows a ResNet with that many output channels.
        self.temp_convs = nn.ModuleList(temp_conv(r.conv2.out_channels) for r in self.resnets)
        self.layout = layout  # None: a VAE decoder level
        if layout is not None:
            for attention in self.layers("attentions"):
                add_temporal_attention(attention)
        over_frames = layout is not None and layout.norm_over_frames
        res = [ResTempUnit(r, t, over_frames) for r, t in zip(self.resnets, self.temp_convs, strict=True)]
        attn = [AttnTempUnit(a, layout) for a in self.layers("attentions")] if layout is not None else []
        # object.__setattr__: a list of modules is kept out of nn.Module's registry either way; this says so.
        object.__setattr__(self, "res_units", res)
        object.__setattr__(self, "attn_units", attn)

    def layers(self, name: str) -> list[nn.Module]:
        """The level's layers called ``name`` (one of :data:`LEVEL_LAYERS`); empty where the level has none."""
        return list(self._modules.get(name) or [])

    def compile_units(self) -> list[nn.Module]:
        """What regional compilation compiles here: the units, then the down or up samplers."""
        return [*self.res_units, *self.attn_units, *self.layers("downsamplers"), *self.layers("upsamplers")]

    @property
    def memory_format(self) -> torch.memory_format:
        """Layout of the spatial transformers' outputs (NCHW, or channels-last once the model is)."""
        return self.attn_units[0].memory_format if self.attn_units else torch.contiguous_format

    @memory_format.setter
    def memory_format(self, fmt: torch.memory_format) -> None:
        for unit in self.attn_units:
            unit.memory_format = fmt

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None, num_frames: int = 1) -> torch.Tensor:
        """A level without text (the VAE decoder's): each ResNet and its Temp-Conv, then the upsamplers.

        With one frame the Temp-Convs pass their input through, so diffusers' own ``Decoder.forward`` (which calls
        its up blocks as ``block(x, temb)``) still decodes frame by frame with the 2D weights. A UNet level reads
        the text and the skips: the UNet runs its units.
        """
        if self.layout is not None:
            raise TypeError("a UNet level runs unit by unit from VidRDUNet.forward (it needs the text and the skips)")
        for unit in self.res_units:
            x = unit(x, temb, num_frames)
        for up in self.layers("upsamplers"):
            x = up(x)
        return x
