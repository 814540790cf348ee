"""One projection GEMM per attention instead of three (self-attention) or two (cross-attention).

SD's attentions project queries, keys and values with separate ``Linear`` layers: three GEMMs that read the
same input. Diffusers' ``Attention.fuse_projections`` builds the concatenated layer (``to_qkv``; ``to_kv`` for
cross-attention, where only keys and values share the text as input) and ``FusedAttnProcessor2_0`` uses it:
one larger GEMM, which at the UNet's small widths (320 channels at the top level) runs closer to the GPU's
matmul rate than three narrow ones, and fewer kernels per call. The cross-attentions keep VidRD's per-video
context (``training.model.video_cross_attention``) on top of the fused processor.

For sampling: the separate layers become views of the fused weight, so memory is not doubled and weights
copied into either stay in step (a captured CUDA graph keeps reading them in place); gradients would reach
only the fused copy, and the state dict gains the fused keys, so training and checkpoints use unfused models.
"""

from __future__ import annotations

import torch
from diffusers.models.attention_processor import Attention, FusedAttnProcessor2_0
from torch import nn

from training.model.video_cross_attention import PerVideoCrossAttnProcessor


def _share(parts: list[nn.Linear], fused: nn.Linear) -> None:
    """Make each layer in ``parts`` a view of its rows of ``fused`` (weights, and biases where they have them)."""
    start = 0
    for p in parts:
        n = p.out_features
        p.weight.data = fused.weight.data[start : start + n]
        if p.bias is not None:
            p.bias.data = fused.bias.data[start : start + n]
        start += n


@torch.no_grad()
def fuse_attention_projections(model: nn.Module) -> int:
    """Fuse the projections of every diffusers ``Attention`` in ``model`` in place; returns how many.

    Cross-attentions with a per-video context keep it (:class:`PerVideoCrossAttnProcessor` over the fused
    processor); every other attention gets ``FusedAttnProcessor2_0``. Refuses attentions with trainable
    parameters: their gradients would reach only the fused copies.
    """
    attns = [m for m in model.modules() if isinstance(m, Attention) and not getattr(m, "fused_projections", False)]
    if any(p.requires_grad for a in attns for p in a.parameters()):
        raise ValueError(
            "fused attention projections are for inference: freeze the model first (requires_grad_(False))"
        )
    for a in attns:
        a.fuse_projections()
        if a.is_cross_attention:
            _share([a.to_k, a.to_v], a.to_kv)
        else:
            _share([a.to_q, a.to_k, a.to_v], a.to_qkv)
        if isinstance(a.processor, PerVideoCrossAttnProcessor):
            a.set_processor(PerVideoCrossAttnProcessor(fused=True))
        else:
            a.set_processor(FusedAttnProcessor2_0())
    return len(attns)
