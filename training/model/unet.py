"""VidRD UNet: the Stable Diffusion 2.1 UNet inflated with Temp-Conv and Temp-Attn (paper 4.1, A.1.3).

The 2D layers are diffusers' own ``UNet2DConditionModel`` submodules, kept under the same names
(``down_blocks.0.resnets.0...``), so an SD 2.1 UNet state dict loads as is. As in the authors' release,
each block gains ``temp_convs`` (one Temp-Conv after every ResNet, the mid block's first included) and
every spatial transformer block a Temp-Attn (``transformer_blocks.0.temp_norm`` / ``temp_attn``) between
its cross-attention and its feed-forward: the release's 1150 state-dict names and shapes at SD 2.1 size.
Frames are folded into the batch for the 2D layers; the temporal layers unfold them.

``layout`` picks how the 2D layers treat a video (``training.model.video_blocks``): ``official`` (the
release: ResNet/output GroupNorms over frames, frame embedding in the residual stream) or ``framewise``
(the paper's text: a fresh model is SD 2.1 frame by frame).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import partial
from typing import Any

import torch
from diffusers import UNet2DConditionModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn
from torch.utils.checkpoint import checkpoint

from training.model.sd_arguments import sd_arguments
from training.model.temporal import TempConv
from training.model.units import VideoBlock
from training.model.video_blocks import OFFICIAL, Layout, video_group_norm
from training.model.video_cross_attention import PerVideoCrossAttnProcessor, cross_attentions, use_per_video_context

TEMPORAL_MARKERS = (".temp_convs.", ".temp_attn.", ".temp_norm.")
SPATIAL_TRANSFORMER_MARKER = ".transformer_blocks."
CROSS_ATTN_DOWN, DOWN = "CrossAttnDownBlock2D", "DownBlock2D"
CROSS_ATTN_UP, UP = "CrossAttnUpBlock2D", "UpBlock2D"


def is_temporal(name: str) -> bool:
    """True for parameters of the added temporal layers."""
    return any(m in f".{name}" for m in TEMPORAL_MARKERS)


def is_spatial_transformer(name: str) -> bool:
    """True for SD's spatial transformer blocks (self-, cross-attention, FF; not the proj_in/proj_out around them)."""
    return SPATIAL_TRANSFORMER_MARKER in f".{name}" and not is_temporal(name)


class VidRDUNet(ModelMixin, ConfigMixin):
    """Text-conditioned video denoiser: ``[B, C, F, H, W]`` latents -> same-shape prediction.

    Constructor arguments are SD's ``UNet2DConditionModel`` arguments (defaults: SD 2.1) plus the layout
    (``official`` or ``framewise``) and the Temp-Conv's shape (the release's: 4 groups, 3-frame kernel,
    dropout 0.1). Temp-Attn has the spatial attention's heads.
    """

    _supports_gradient_checkpointing = True
    # forward takes contexts_per_sample (guidance runs the layers before the first cross-attention once).
    accepts_contexts_per_sample = True

    @register_to_config
    def __init__(
        self,
        sample_size: int = 96,
        in_channels: int = 4,
        out_channels: int = 4,
        down_block_types: Sequence[str] = (CROSS_ATTN_DOWN, CROSS_ATTN_DOWN, CROSS_ATTN_DOWN, DOWN),
        up_block_types: Sequence[str] = (UP, CROSS_ATTN_UP, CROSS_ATTN_UP, CROSS_ATTN_UP),
        block_out_channels: Sequence[int] = (320, 640, 1280, 1280),
        layers_per_block: int = 2,
        attention_head_dim: int | Sequence[int] = (5, 10, 20, 20),
        cross_attention_dim: int = 1024,
        use_linear_projection: bool = True,
        upcast_attention: bool = False,
        norm_num_groups: int = 32,
        norm_eps: float = 1e-5,
        flip_sin_to_cos: bool = True,
        freq_shift: int = 0,
        layout: str = OFFICIAL,
        temp_conv_layers: int = 4,
        temp_kernel_frames: int = 3,
        temp_dropout: float = 0.1,
    ):
        super().__init__()
        self.layout = Layout.named(layout)
        for t in (*down_block_types, *up_block_types):
            if t not in (CROSS_ATTN_DOWN, DOWN, CROSS_ATTN_UP, UP):
                raise ValueError(f"unsupported block type {t!r}: VidRD inflates SD 2.x UNets")
        base = UNet2DConditionModel(**sd_arguments(self.config, UNet2DConditionModel))

        # Temp-Conv GroupNorms are (32 groups, eps 1e-5) whatever the UNet's norm settings: the release hard-codes them.
        temp_conv = partial(
            TempConv, num_layers=temp_conv_layers, kernel_frames=temp_kernel_frames, dropout=temp_dropout
        )

        def video_block(level: nn.Module) -> VideoBlock:
            return VideoBlock(level, temp_conv, self.layout)

        # Same attribute names as UNet2DConditionModel, so SD state dicts load without renaming.
        self.conv_in = base.conv_in
        self.time_proj = base.time_proj
        self.time_embedding = base.time_embedding
        self.down_blocks = nn.ModuleList(video_block(b) for b in base.down_blocks)
        self.mid_block = video_block(base.mid_block)
        self.up_blocks = nn.ModuleList(video_block(b) for b in base.up_blocks)
        self.conv_norm_out = base.conv_norm_out
        self.conv_act = base.conv_act
        self.conv_out = base.conv_out
        use_per_video_context(self)
        self._cross_attns = cross_attentions(self)  # a plain list: not registered twice as submodules
        self.gradient_checkpointing = False
        # Layout of the folded frames fed to the 2D layers; training.model.fast_paths sets channels_last on GPU.
        self.memory_format = torch.contiguous_format

    # -- switches -------------------------------------------------------------------------------------
    def enable_gradient_checkpointing(self, *args: Any, **kwargs: Any) -> None:
        """Recompute each (2D layer + temporal layer) unit in backward instead of storing activations."""
        self.gradient_checkpointing = True

    def disable_gradient_checkpointing(self) -> None:
        self.gradient_checkpointing = False

    # -- parameter groups (paper 4.1: temporal layers + spatial transformer blocks train) --------------
    def temporal_parameters(self) -> Iterator[nn.Parameter]:
        return (p for n, p in self.named_parameters() if is_temporal(n))

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        """The paper's trainable set: temporal layers and spatial transformer blocks."""
        return (p for n, p in self.named_parameters() if is_temporal(n) or is_spatial_transformer(n))

    def set_trainable(self, spatial_transformers: bool = True) -> None:
        """Freeze everything except the temporal layers (and the spatial transformers when asked)."""
        for n, p in self.named_parameters():
            p.requires_grad_(is_temporal(n) or (spatial_transformers and is_spatial_transformer(n)))

    def parameter_counts(self) -> dict[str, int]:
        """Total, trainable (paper's set), temporal and spatial-transformer parameter counts."""
        counts = {"total": 0, "trainable": 0, "temporal": 0, "spatial_transformer": 0}
        for n, p in self.named_parameters():
            k = p.numel()
            counts["total"] += k
            t, s = is_temporal(n), is_spatial_transformer(n)
            counts["temporal"] += k * t
            counts["spatial_transformer"] += k * s
            counts["trainable"] += k * (t or s)
        return counts

    # -- forward --------------------------------------------------------------------------------------
    def _run(self, fn, *args):
        if self.gradient_checkpointing and torch.is_grad_enabled():
            return checkpoint(fn, *args, use_reentrant=False)
        return fn(*args)

    def _resnet(self, block, i: int, h, temb, f: int, skip=None):
        return self._run(block.res_units[i], h, temb, f, skip)

    def _attn(self, block, i: int, h, ctx, f: int):
        return self._run(block.attn_units[i], h, ctx, f)

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor,
        contexts_per_sample: int = 1,
    ) -> torch.Tensor:
        """``sample [B, C, F, H, W]``, ``timestep`` scalar or ``[B]``, text ``[B, L, D]`` -> ``[B, C, F, H, W]``.

        ``contexts_per_sample = k`` denoises each sample under k texts (guidance: the unconditional and the
        conditional one): text ``[k*B, L, D]``, output ``[k*B, ...]`` whose row ``j*B + i`` is sample i under
        text row ``j*B + i``, as if ``sample`` had been repeated k times. The layers before the first
        cross-attention see the same input in every copy, so they run once and their output is repeated.
        """
        b, c, f, h, w = sample.shape
        k = contexts_per_sample
        if k < 1 or encoder_hidden_states.shape[0] != k * b:
            # Per-video cross-attention would otherwise pair frames with the wrong text whenever the counts divide.
            raise ValueError(
                f"encoder_hidden_states has {encoder_hidden_states.shape[0]} rows for {b} videos x {k} contexts"
            )
        # An explicit layout: a channel-strided input (e.g. latents straight from the VAE encoder) would make the
        # folded view channels-last by accident, and torch 2.13's CPU conv backward segfaults on that layout.
        x = sample.transpose(1, 2).reshape(b * f, c, h, w).contiguous(memory_format=self.memory_format)
        t = torch.as_tensor(timestep, device=sample.device)
        t = t.expand(b) if t.ndim == 0 else t
        if t.shape != (b,):
            raise ValueError(f"timestep has shape {tuple(t.shape)}; expected a scalar or one per sample ({b})")
        temb = self.time_embedding(self.time_proj(t).to(sample.dtype))
        temb = temb.repeat_interleave(f, dim=0)
        # The text once per video (video_cross_attention); repeated per frame only if someone swapped the processors.
        per_video = all(isinstance(a.processor, PerVideoCrossAttnProcessor) for a in self._cross_attns)
        ctx = encoder_hidden_states if per_video else encoder_hidden_states.repeat_interleave(f, dim=0)

        def widen(x: torch.Tensor, temb: torch.Tensor, skips: list[torch.Tensor]):
            # Before the first layer that reads the text: from here on the k copies differ.
            if k == 1 or x.shape[0] == k * b * f:
                return x, temb, skips
            return torch.cat([x] * k), torch.cat([temb] * k), [torch.cat([s] * k) for s in skips]

        x = self.conv_in(x)
        skips = [x]
        for block in self.down_blocks:
            has_attn = bool(block.attn_units)
            for i in range(len(block.resnets)):
                x = self._resnet(block, i, x, temb, f)
                if has_attn:
                    x, temb, skips = widen(x, temb, skips)
                    x = self._attn(block, i, x, ctx, f)
                skips.append(x)
            for down in block.layers("downsamplers"):
                x = down(x)
                skips.append(x)

        mid = self.mid_block
        x, temb, skips = widen(x, temb, skips)
        x = self._resnet(mid, 0, x, temb, f)
        for i in range(len(mid.attentions)):
            x = self._attn(mid, i, x, ctx, f)
            x = self._resnet(mid, i + 1, x, temb, f)

        for block in self.up_blocks:
            has_attn = bool(block.attn_units)
            for i in range(len(block.resnets)):
                x = self._resnet(block, i, x, temb, f, skip=skips.pop())
                if has_attn:
                    x = self._attn(block, i, x, ctx, f)
            for up in block.layers("upsamplers"):
                x = up(x, skips[-1].shape[-2:])

        x = video_group_norm(self.conv_norm_out, x, f) if self.layout.norm_over_frames else self.conv_norm_out(x)
        x = self.conv_out(self.conv_act(x))
        return x.view(k * b, f, *x.shape[1:]).transpose(1, 2)
