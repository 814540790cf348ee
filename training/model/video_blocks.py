"""SD's 2D blocks run on a video whose frames are folded into the batch (``[B*F, C, H, W]``, b-major), in
the two layouts VidRD supports.

* ``official`` (the authors' released code, ``docs/official_vidrd.md`` sections 1-5):
  the ResNets' GroupNorms and the UNet's output GroupNorm pool their statistics over all F frames, and
  the sinusoidal frame embedding is added to the transformer's residual stream before Temp-Attn.
* ``framewise`` (the paper's text): every GroupNorm is per frame and the frame embedding only enters
  Temp-Attn's input, so a model whose temporal layers are still at their zero init is Stable Diffusion
  applied frame by frame.

Both layouts have the same parameters under the same names; only these two behaviours differ
(:class:`Layout`). Temp-Attn sits inside each ``BasicTransformerBlock`` after the cross-attention and
before the feed-forward, with ``temp_norm`` / ``temp_attn`` registered on the block itself, so the
release's state-dict names (``...transformer_blocks.0.temp_attn.to_q.weight``) are ours.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.models.attention import BasicTransformerBlock
from diffusers.models.resnet import ResnetBlock2D
from diffusers.models.transformers.transformer_2d import Transformer2DModel
from torch import nn

from training.model.temporal import TemporalSelfAttention, frame_position_encoding, sinusoidal_frame_encoding

OFFICIAL, FRAMEWISE = "official", "framewise"
LAYOUTS = (OFFICIAL, FRAMEWISE)


@dataclass(frozen=True)
class Layout:
    """The two behaviours in which the released code departs from the paper's text."""

    norm_over_frames: bool  # ResNet and output GroupNorm statistics pooled over the video's frames
    embedding_in_residual: bool  # the frame embedding stays in the transformer's residual stream

    @classmethod
    def named(cls, name: str) -> Layout:
        if name == OFFICIAL:
            return cls(norm_over_frames=True, embedding_in_residual=True)
        if name == FRAMEWISE:
            return cls(norm_over_frames=False, embedding_in_residual=False)
        raise ValueError(f"unknown layout {name!r}; expected one of {LAYOUTS}")


def video_group_norm(norm: nn.GroupNorm, x: torch.Tensor, num_frames: int) -> torch.Tensor:
    """``norm`` over each video of ``x [B*F, C, H, W]``: statistics of a group span its F frames.

    The module is called on the ``[B, C, F, H, W]`` view, so a swapped GroupNorm class
    (``training.model.group_norm``) applies here too. In channels-last memory the view is exactly
    channels-last-3d and nothing is copied.
    """
    bf, c, h, w = x.shape
    v = x.view(bf // num_frames, num_frames, c, h, w).transpose(1, 2)
    return norm(v).transpose(1, 2).reshape(bf, c, h, w)


def check_sd_resnet(resnet: ResnetBlock2D) -> None:
    """Refuse ResNet settings :func:`resnet_over_frames` does not implement (SD 1.x/2.x use none of them)."""
    if resnet.upsample is not None or resnet.downsample is not None or resnet.time_embedding_norm != "default":
        raise ValueError("the official layout supports SD's ResNets only (no up/down sampling, default time norm)")


def resnet_over_frames(resnet: ResnetBlock2D, x: torch.Tensor, temb: torch.Tensor | None, num_frames: int):
    """``ResnetBlock2D.forward`` (SD's settings) with both GroupNorms over frames: the release's 3D ResNet. A copy
    of diffusers' forward: ``tests/test_diffusers_drift.py`` fails when the installed diffusers computes otherwise."""
    h = resnet.nonlinearity(video_group_norm(resnet.norm1, x, num_frames))
    h = resnet.conv1(h)
    if resnet.time_emb_proj is not None and temb is not None:
        if not resnet.skip_time_act:
            temb = resnet.nonlinearity(temb)
        h = h + resnet.time_emb_proj(temb)[:, :, None, None]
    h = resnet.nonlinearity(video_group_norm(resnet.norm2, h, num_frames))
    h = resnet.conv2(resnet.dropout(h))
    if resnet.conv_shortcut is not None:
        x = resnet.conv_shortcut(x)
    return (x + h) / resnet.output_scale_factor


def add_temporal_attention(transformer: Transformer2DModel) -> None:
    """Give every block of SD's spatial transformer its Temp-Attn (``temp_norm``, ``temp_attn``), with the
    spatial self-attention's head count (SD 2.1: 64 channels per head)."""
    for block in transformer.transformer_blocks:
        if block.norm_type != "layer_norm" or block.pos_embed is not None or block.only_cross_attention:
            raise ValueError("Temp-Attn is built into SD's transformer blocks only (layer norm, no positional embed)")
        dim = block.norm1.normalized_shape[0]
        block.temp_norm = nn.LayerNorm(dim, eps=1e-5)
        block.temp_attn = TemporalSelfAttention(dim, block.attn1.heads)


def _frame_embedding(num_frames: int, dim: int, like: torch.Tensor) -> torch.Tensor:
    # Compiled code builds the table inline, where Inductor folds it into one small kernel.
    encode = sinusoidal_frame_encoding if torch.compiler.is_compiling() else frame_position_encoding
    return encode(num_frames, dim, like.device, like.dtype)


def temporal_part(block: BasicTransformerBlock, h: torch.Tensor, num_frames: int, layout: Layout) -> torch.Tensor:
    """Temp-Attn on tokens ``h [B*F, N, C]``: each of the N positions attends over its F frames."""
    bf, n, c = h.shape
    b = bf // num_frames
    pe = _frame_embedding(num_frames, c, h)
    hv = h.view(b, num_frames, n, c)
    with_pe = hv + pe[None, :, None, :]
    if num_frames == 1:
        # The release adds the embedding in place before remembering the residual and multiplies the
        # attention by 0: one frame keeps pe[0] (0 on even channels, 1 on odd) in its residual stream.
        return with_pe.view(bf, n, c) if layout.embedding_in_residual else h
    seq = with_pe.transpose(1, 2).reshape(b * n, num_frames, c)
    out = block.temp_attn(block.temp_norm(seq)).view(b, n, num_frames, c).transpose(1, 2)
    base = with_pe if layout.embedding_in_residual else hv
    return (base + out).reshape(bf, n, c)


def transformer_block(
    block: BasicTransformerBlock, h: torch.Tensor, context: torch.Tensor, num_frames: int, layout: Layout
) -> torch.Tensor:
    """SD's ``BasicTransformerBlock`` (self-attention, cross-attention, GEGLU FF) with Temp-Attn before the FF (a copy
    of diffusers' forward for SD's settings, held to it by ``tests/test_diffusers_drift.py``)."""
    h = block.attn1(block.norm1(h)) + h
    h = block.attn2(block.norm2(h), encoder_hidden_states=context) + h
    h = temporal_part(block, h, num_frames, layout)
    return block.ff(block.norm3(h)) + h


def spatial_transformer(
    transformer: Transformer2DModel,
    x: torch.Tensor,
    context: torch.Tensor,
    num_frames: int,
    layout: Layout,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> torch.Tensor:
    """SD's ``Transformer2DModel`` on ``x [B*F, C, H, W]`` (per-frame GroupNorm, projections, blocks with
    Temp-Attn, residual), returned in ``memory_format``.

    The tokens ``[B*F, H*W, C]`` are the NHWC view of the image batch, so channels-last output costs nothing;
    NCHW output (diffusers' own choice, and what CPU training needs: torch 2.13's CPU conv backward mishandles
    channels-last inputs) is one copy. ``tests/test_diffusers_drift.py`` holds it to ``Transformer2DModel.forward``.
    """
    bf, _c, hh, ww = x.shape
    h = transformer.norm(x)
    linear = transformer.use_linear_projection
    if not linear:
        h = transformer.proj_in(h)
    inner = h.shape[1]
    h = h.permute(0, 2, 3, 1).reshape(bf, hh * ww, inner)
    if linear:
        h = transformer.proj_in(h)
    for block in transformer.transformer_blocks:
        h = transformer_block(block, h, context, num_frames, layout)
    if linear:
        h = transformer.proj_out(h)
    h = h.reshape(bf, hh, ww, -1).permute(0, 3, 1, 2)
    if not linear:
        h = transformer.proj_out(h.contiguous(memory_format=memory_format))
    nhwc = memory_format == torch.channels_last or (
        not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
    )
    return (h + x).contiguous(memory_format=torch.channels_last if nhwc else torch.contiguous_format)
