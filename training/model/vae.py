"""Temporal-aware VAE (paper 4.4, A.1.2, figure 8): SD's AutoencoderKL with a Temp-Conv after every
ResNet of every decoder up block, as in the authors' release (3 groups each, none in the mid block or the
encoder; ``docs/official_vidrd.md`` section 8). The encoder is unchanged and frozen;
only the new layers train.

The AutoencoderKL is held as ``self.vae`` with its own parameter names, so an SD ``vae/`` state
dict loads into it unchanged; the Temp-Convs appear as ``vae.decoder.*.temp_convs.*``.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
from diffusers import AutoencoderKL
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from training.model.sd_arguments import sd_arguments
from training.model.temporal import TempConv
from training.model.units import VideoBlock


def _is_temporal(name: str) -> bool:
    return ".temp_convs." in f".{name}"


class TemporalVAE(ModelMixin, ConfigMixin):
    """Encode videos frame by frame; decode them with the temporal decoder.

    Arguments are AutoencoderKL's (defaults: SD 2.1's VAE) plus the Temp-Conv sizes.
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        down_block_types: Sequence[str] = ("DownEncoderBlock2D",) * 4,
        up_block_types: Sequence[str] = ("UpDecoderBlock2D",) * 4,
        block_out_channels: Sequence[int] = (128, 256, 512, 512),
        layers_per_block: int = 2,
        latent_channels: int = 4,
        norm_num_groups: int = 32,
        sample_size: int = 768,
        scaling_factor: float = 0.18215,
        temp_conv_layers: int = 3,
        temp_kernel_frames: int = 3,
        temp_dropout: float = 0.1,
    ):
        super().__init__()
        self.vae = AutoencoderKL(**sd_arguments(self.config, AutoencoderKL))
        dec = self.vae.decoder
        temp_conv = partial(
            TempConv, num_layers=temp_conv_layers, kernel_frames=temp_kernel_frames, dropout=temp_dropout
        )
        dec.up_blocks = nn.ModuleList(VideoBlock(level, temp_conv) for level in dec.up_blocks)
        self.memory_format = torch.contiguous_format  # channels_last on GPU: training.model.fast_paths

    @property
    def scaling_factor(self) -> float:
        return self.config.scaling_factor

    def set_trainable(self) -> None:
        """Only the decoder's Temp-Convs train (the paper fine-tunes nothing else)."""
        for n, p in self.named_parameters():
            p.requires_grad_(_is_temporal(n))

    def temporal_parameters(self):
        return (p for n, p in self.named_parameters() if _is_temporal(n))

    def encode(self, video: torch.Tensor, sample: bool = True, generator: torch.Generator | None = None):
        """``[B, 3, F, H, W]`` in [-1, 1] -> scaled latents ``[B, C, F, H/8, W/8]`` (frame by frame)."""
        b, c, f, h, w = video.shape
        x = video.transpose(1, 2).reshape(b * f, c, h, w)
        dist = self.vae.encode(x).latent_dist
        z = dist.sample(generator) if sample else dist.mode()
        z = z * self.scaling_factor
        return z.view(b, f, *z.shape[1:]).transpose(1, 2).contiguous()

    def encode_posterior(self, video: torch.Tensor):
        """The frame-wise posterior (for the KL regulariser when fine-tuning)."""
        b, c, f, h, w = video.shape
        return self.vae.encode(video.transpose(1, 2).reshape(b * f, c, h, w)).latent_dist

    def decode(self, latents: torch.Tensor, temporal: bool = True) -> torch.Tensor:
        """Scaled latents ``[B, C, F, h, w]`` -> video ``[B, 3, F, 8h, 8w]``.

        ``temporal=False`` decodes every frame on its own, as the release's pipeline does (its decoder's
        temporal layers see one frame and are skipped: only the 2D weights act).
        """
        b, c, f, h, w = latents.shape
        # Multiplying by the reciprocal, as the release does, reproduces its bits.
        z = latents.transpose(1, 2).reshape(b * f, c, h, w) * (1.0 / self.scaling_factor)
        z = z.contiguous(memory_format=self.memory_format)
        x = self.decode_frames_folded(z, f if temporal else 1)
        return x.view(b, f, *x.shape[1:]).transpose(1, 2)

    def decode_frames_folded(self, z: torch.Tensor, num_frames: int) -> torch.Tensor:
        """Decode unscaled latents ``[B*F, C, h, w]`` (frames folded into the batch)."""
        dec = self.vae.decoder
        x = dec.conv_in(self.vae.post_quant_conv(z))
        # SD's mid-block attention hands back a transposed (NHWC-strided) tensor; an explicit layout keeps the
        # convolutions after it in the model's format (torch 2.13's CPU conv backward crashes on NHWC inputs).
        x = dec.mid_block(x).contiguous(memory_format=self.memory_format)
        for block in dec.up_blocks:
            x = block(x, None, num_frames)
        return dec.conv_out(dec.conv_act(dec.conv_norm_out(x)))
