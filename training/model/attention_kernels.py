"""How Temp-Attn's many short sequences reach the GPU's attention kernels: the backend order, slicing of very large
batches, and packing several frame sequences into one attention row under a block-diagonal mask. Kernel tuning,
kept apart from the layer itself (``training.model.temporal``); the same arithmetic on every path."""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

# Temporal attention runs one short sequence per pixel, so its batch is B*H*W: 65,536 for 64 clips of
# 32x32 latents. cuDNN's fused attention backward fails at that size (seen with torch 2.11,
# "mha_graph.execute ... is_good()") and the memory-efficient kernel puts the batch in a grid dimension of
# at most 65,535, so larger batches go through SDPA in slices of this many sequences.
SDPA_MAX_SEQUENCES = 32768


# For rows of 8-16 frames the memory-efficient kernel measured fastest (benchmarks/RESULTS.md, Temp-Attn kernels:
# benchmarks/bench_temporal_units.py). SDPA's own choice is tuned for long sequences; this keeps its order otherwise.
CUDA_SDPA_PRIORITY = [
    SDPBackend.EFFICIENT_ATTENTION,
    SDPBackend.CUDNN_ATTENTION,
    SDPBackend.FLASH_ATTENTION,
    SDPBackend.MATH,
]


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if not q.is_cuda:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    with sdpa_kernel(CUDA_SDPA_PRIORITY, set_priority=True):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def sliced_sdpa(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    max_sequences: int = SDPA_MAX_SEQUENCES,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """``F.scaled_dot_product_attention`` over ``[N, heads, L, d]`` in slices of at most ``max_sequences``;
    ``mask`` (``[L, L]``, True = attend) is shared by all."""
    if q.shape[0] <= max_sequences:
        return _sdpa(q, k, v, mask)
    return torch.cat([
        _sdpa(q[i : i + max_sequences], k[i : i + max_sequences], v[i : i + max_sequences], mask)
        for i in range(0, q.shape[0], max_sequences)
    ])  # fmt: skip


@lru_cache(maxsize=16)
def block_diagonal_cached(num_frames: int, per_row: int, device: torch.device) -> torch.Tensor:
    with torch.inference_mode(False), torch.no_grad():
        return block_diagonal_mask(num_frames, per_row, device)


def block_diagonal_mask(num_frames: int, per_row: int, device: torch.device) -> torch.Tensor:
    """``[per_row*F, per_row*F]`` boolean mask: position i may attend to j iff both lie in one F-frame sequence."""
    seq = torch.arange(per_row * num_frames, device=device) // num_frames
    return seq[:, None] == seq[None, :]


def sequences_per_row(num_sequences: int, num_frames: int, pack_length: int) -> int:
    """How many F-frame sequences to pack into one attention row of at most ``pack_length`` tokens:
    the largest power of two that fits and divides ``num_sequences`` (1 means no packing)."""
    per_row = 1
    while per_row * 2 * num_frames <= pack_length and num_sequences % (per_row * 2) == 0:
        per_row *= 2
    return per_row
