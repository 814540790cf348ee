"""The two temporal layers VidRD adds to Stable Diffusion (paper 4.1, A.1.3, figure 9), as the authors'
released code builds them (``docs/official_vidrd.md`` sections 2-3).

* :class:`TempConv`: a residual stack of (GroupNorm, SiLU, Dropout, Conv3d over frames only) groups after
  every ResNet; 4 groups in the UNet, 3 in the VAE decoder. Parameter names ``convs.{0,3,4,7,...}`` are
  the release's.
* :class:`TemporalSelfAttention`: Temp-Attn's multi-head self-attention over each pixel's frames
  (``to_q/to_k/to_v`` without bias, ``to_out.0``), run inside every spatial transformer block by
  ``training.model.video_blocks``.

Each ends in a zero-initialised layer and is added residually. With one frame both are skipped, as in the
release (which multiplies their output by 0).
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from training.model.attention_kernels import block_diagonal_cached, block_diagonal_mask, sequences_per_row, sliced_sdpa


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class TempConv(nn.Module):
    """Temp-Conv: ``num_layers`` x (GroupNorm, SiLU, Dropout, Conv3d with a ``(kernel_frames, 1, 1)`` kernel),
    added to its input.

    The kernel mixes each pixel's features across neighbouring frames ("tube" processing in figure 9) and
    leaves spatial mixing to the frozen 2D ResNets; the GroupNorms see the whole ``[B, C, F, H, W]`` video, so
    their statistics span frames. The last Conv3d starts at zero.
    """

    def __init__(
        self,
        channels: int,
        num_layers: int = 4,
        kernel_frames: int = 3,
        norm_groups: int = 32,
        eps: float = 1e-5,
        dropout: float = 0.1,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(num_layers):
            layers += [
                nn.GroupNorm(norm_groups, channels, eps=eps),
                nn.SiLU(),
                nn.Dropout(dropout),
                nn.Conv3d(channels, channels, (kernel_frames, 1, 1), padding=(kernel_frames // 2, 0, 0)),
            ]
        self.convs = nn.Sequential(*layers)
        _zero(self.convs[-1])

    @property
    def radius(self) -> int:
        """Frames on each side that one output frame depends on."""
        return sum(m.kernel_size[0] // 2 for m in self.convs if isinstance(m, nn.Conv3d))

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        if num_frames == 1:
            return x  # the release multiplies the stack's output by 0 for images
        bf, c, h, w = x.shape
        v = x.view(bf // num_frames, num_frames, c, h, w).transpose(1, 2)  # [B, C, F, H, W]
        out = self.convs(v).transpose(1, 2).reshape(bf, c, h, w)
        return x + out


def sinusoidal_frame_encoding(num_frames: int, dim: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Sinusoidal encoding ``[F, dim]`` of frame index; works for any number of frames."""
    pos = torch.arange(num_frames, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(num_frames, dim, device=device, dtype=torch.float32)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)
    return pe.to(dtype)


@lru_cache(maxsize=64)
def frame_position_encoding(num_frames: int, dim: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """:func:`sinusoidal_frame_encoding`, cached: rebuilding it costs a handful of tiny kernel launches per
    Temp-Attn, which shows in launch-bound eager sampling. (Compiled code builds it inline instead, where
    Inductor folds it into one small kernel.)"""
    # A normal tensor even when first built under inference_mode, so training can reuse the cached one.
    with torch.inference_mode(False), torch.no_grad():
        return sinusoidal_frame_encoding(num_frames, dim, device, dtype)


class TemporalSelfAttention(nn.Module):
    """Multi-head self-attention over a short sequence (the frames), through SDPA.

    Parameters as the release's diffusers-0.14 ``CrossAttention``: ``to_q``, ``to_k``, ``to_v`` without bias,
    ``to_out.0`` with one (zero-initialised), ``heads`` of ``dim / heads`` channels. The three projections run
    as one GEMM over their concatenated weights (gradients reach each; the copy is ``3 dim^2`` elements, small
    against the ``B*H*W*F*dim`` activations).

    ``pack_length`` > 0 packs consecutive sequences into rows of up to that many tokens, attended with a
    block-diagonal mask: the same result, but GPU attention kernels work on tiles of 64-128 queries and a
    row of 8 or 16 frames leaves most of each tile idle (and launches one tile per pixel and head).
    Off by default (CPU's math kernel would compute the masked-out scores); ``fast_paths`` turns it on for
    training on CUDA.
    """

    def __init__(self, dim: int, heads: int, pack_length: int = 0):
        super().__init__()
        if dim % heads:
            raise ValueError(f"{dim} channels do not split into {heads} heads")
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(dim, dim, bias=False)
        self.to_v = nn.Linear(dim, dim, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim), nn.Dropout(0.0)])
        _zero(self.to_out[0])
        self.pack_length = pack_length

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, f, d = x.shape
        per_row = sequences_per_row(n, f, self.pack_length) if self.pack_length else 1
        rows, length = n // per_row, per_row * f
        w = torch.cat([self.to_q.weight, self.to_k.weight, self.to_v.weight])
        q, k, v = F.linear(x, w).view(rows, length, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        if per_row == 1:
            out = sliced_sdpa(q, k, v)
        else:
            build = block_diagonal_mask if torch.compiler.is_compiling() else block_diagonal_cached
            out = sliced_sdpa(q, k, v, mask=build(f, per_row, x.device))
        return self.to_out[1](self.to_out[0](out.transpose(1, 2).reshape(n, f, d)))
