"""GroupNorm for channels-last activations, written so a compiler reads memory in order.

A group's statistics run over its channels and every pixel (and frame). In channels-last memory a
pixel's channels are contiguous and consecutive pixels are ``C`` elements apart, so a reduction that
walks a group pixel by pixel (as GroupNorm's own kernels and Inductor's lowering of it do) reads a few
bytes out of every memory sector. Here each channel's mean and variance come first, from a reduction
over pixels in which neighbouring threads read neighbouring channels, and the group's follow from its
channels' exactly (law of total variance: equal counts per channel). Same result as ``F.group_norm``
up to rounding; used by ``training.model.fast_paths`` inside compiled regions only (eager, its few
small kernels are no faster than GroupNorm's one).
"""

from __future__ import annotations

import torch
from torch import nn


def group_norm_by_channel_stats(
    x: torch.Tensor, groups: int, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float
) -> torch.Tensor:
    """``F.group_norm(x, groups, weight, bias, eps)`` for ``x`` of shape ``[N, C, *spatial]``."""
    n, c = x.shape[:2]
    dims = tuple(range(2, x.dim()))
    var_c, mean_c = torch.var_mean(x.float(), dim=dims, correction=0)  # [N, C], Welford in fp32
    mean_c, var_c = mean_c.view(n, groups, -1), var_c.view(n, groups, -1)
    mean_g = mean_c.mean(-1, keepdim=True)
    var_g = var_c.mean(-1, keepdim=True) + (mean_c - mean_g).square().mean(-1, keepdim=True)
    scale = torch.rsqrt(var_g + eps).expand(n, groups, c // groups).reshape(n, c)
    if weight is not None:
        scale = scale * weight.float()
    shift = -mean_g.expand(n, groups, c // groups).reshape(n, c) * scale
    if bias is not None:
        shift = shift + bias.float()
    shape = (n, c) + (1,) * len(dims)
    return (x.float() * scale.view(shape) + shift.view(shape)).to(x.dtype)


class ChannelStatsGroupNorm(nn.GroupNorm):
    """``nn.GroupNorm`` (same parameters, same state dict) computed by :func:`group_norm_by_channel_stats`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return group_norm_by_channel_stats(x, self.num_groups, self.weight, self.bias, self.eps)


def use_channel_stats_group_norm(module: nn.Module) -> int:
    """Turn every plain ``nn.GroupNorm`` under ``module`` into a :class:`ChannelStatsGroupNorm` in place
    (no new parameters: only the class changes); returns how many."""
    norms = [m for m in module.modules() if type(m) is nn.GroupNorm]
    for m in norms:
        m.__class__ = ChannelStatsGroupNorm
    return len(norms)
