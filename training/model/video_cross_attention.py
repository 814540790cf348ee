"""Cross-attention to the text once per video instead of once per frame.

The 2D layers see frames folded into the batch, ``[B*F, N, C]``, and SD's cross-attention would need
the text repeated F times (``[B*F, L, D]``): F identical key/value projections and F copies of the
context. Cross-attention treats every query token on its own, so the F frames of a video can be one
query sequence of ``F*N`` tokens against the video's single context ``[B, L, D]``: the same result, with
the key/value work and memory divided by F.
"""

from __future__ import annotations

import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0, FusedAttnProcessor2_0
from torch import nn


class PerVideoCrossAttnProcessor:
    """A diffusers attention processor for ``attn2``: accepts a context with one row per video.

    When the context's batch equals the queries' (per-frame context, or a plain image model) it is SD's
    own ``AttnProcessor2_0`` unchanged. ``fused``: the attention's key/value projections are one layer
    (``training.model.fused_projections``), run by ``FusedAttnProcessor2_0``.
    """

    def __init__(self, fused: bool = False) -> None:
        self.base = FusedAttnProcessor2_0() if fused else AttnProcessor2_0()

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        **kwargs,
    ) -> torch.Tensor:
        ctx = encoder_hidden_states
        if ctx is None or hidden_states.ndim != 3 or ctx.shape[0] == hidden_states.shape[0]:
            return self.base(attn, hidden_states, ctx, attention_mask, temb, **kwargs)
        bf, n, c = hidden_states.shape
        b = ctx.shape[0]
        if bf % b:
            raise ValueError(f"{bf} query rows are not a whole number of frames for {b} context rows")
        out = self.base(attn, hidden_states.reshape(b, (bf // b) * n, c), ctx, attention_mask, temb, **kwargs)
        return out.reshape(bf, n, out.shape[-1])


def cross_attentions(model: nn.Module) -> list[Attention]:
    """Every diffusers ``Attention`` in ``model`` that attends to an external context (SD's ``attn2``)."""
    return [m for m in model.modules() if isinstance(m, Attention) and m.is_cross_attention]


def use_per_video_context(model: nn.Module) -> int:
    """Give every cross-attention of ``model`` a :class:`PerVideoCrossAttnProcessor`; returns how many."""
    attns = cross_attentions(model)
    for a in attns:
        a.set_processor(PerVideoCrossAttnProcessor())
    return len(attns)
