"""Fast paths for the VidRD UNet (and the temporal VAE): channels-last memory, packed temporal attention,
a channels-last GroupNorm and regional ``torch.compile``.

Each changes how the same arithmetic is laid out and launched, not what is computed, so outputs match
the plain path to floating-point rounding (``tests/test_fast_paths.py``; on GPU in bf16,
``benchmarks/bench_fast.py`` reports the difference). CUDA graphs (``training.model.cuda_graphs``) replay the
fixed-shape sampling step and, in training, the frozen text encoder: they only pay where one shape repeats.

* **channels-last**: cuDNN's convolutions are NHWC kernels; fed NCHW tensors they transpose in and out
  (the top entries of an eager profile, ``benchmarks/profile_units.py``). Conv2d weights become
  ``channels_last``, Temp-Conv's Conv3d weights ``channels_last_3d`` (the folded ``[B*F, C, H, W]``
  activations in NHWC, unfolded to ``[B, C, F, H, W]``, are exactly NDHWC, so Temp-Conv stays
  transpose-free too).
* **packed temporal attention**: Temp-Attn's sequences are only F frames long; GPU attention kernels
  work in tiles of 64-128 queries, so each pixel's 8 or 16 frames leave most of a tile idle. Consecutive
  sequences are packed into rows of ``pack_temporal_attention`` tokens under a block-diagonal mask
  (``training.model.temporal.TemporalSelfAttention``): the same scores, far fewer and fuller tiles.
* **GroupNorm from channel statistics** (``training.model.group_norm``): in channels-last memory, a
  reduction per group walks memory with stride C; per-channel statistics first read it in order.
* **fused attention projections** (sampling; ``training.model.fused_projections``): one GEMM for each
  self-attention's queries, keys and values and one for each cross-attention's keys and values.
* **regional compile**: each repeated unit (ResNet + Temp-Conv, spatial transformer + Temp-Attn, up/down
  samplers; ``training.model.units``) is compiled on its own, so instances of one class share compiled code
  and compile time stays a fraction of compiling the whole UNet; Inductor fuses GroupNorm + SiLU, GEGLU,
  residual adds and the layout changes between a 2D layer and its temporal layer.

On by default on CUDA (:meth:`FastPaths.for_device` for sampling, :meth:`FastPaths.for_training`); off on
CPU, where Inductor's compile time outweighs what it saves and torch's CPU conv backward mishandles
channels-last inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from training.model.compile_cache import enable_compile_cache
from training.model.fused_projections import fuse_attention_projections
from training.model.group_norm import use_channel_stats_group_norm
from training.model.temporal import TemporalSelfAttention
from training.model.units import LEVEL_LAYERS, VideoBlock

# One compiled graph per (unit class, input shape): the SD 2.1 UNet has ~14 ResNet shapes, and training
# and sampling each add their own; dynamo's default of 8 per code object would drop the rest to eager.
RECOMPILE_LIMIT = 64
# 8 frames x 8 sequences per Temp-Attn row: as fast as 32 or 128 and ~2x one row per pixel (benchmarks/RESULTS.md).
TRAINING_PACK_LENGTH = 64


@dataclass(frozen=True)
class FastPaths:
    """Which speed-ups to apply. ``cuda_graphs``: the sampling step (``inference.pipeline``) or, in training, the
    frozen text encoder (``training.model.text_encoder``), each replayed from ``training.model.cuda_graphs``."""

    channels_last: bool = True
    pack_temporal_attention: int = 0  # tokens per packed Temp-Attn row; 0: one row per pixel
    channel_stats_group_norm: bool = False  # inside compiled regions (training.model.group_norm)
    compile: bool = True
    fuse_projections: bool = True  # sampling only: fused weights are views, gradients would miss the originals
    cuda_graphs: bool = True
    compile_backend: str = "inductor"
    compile_mode: str | None = None

    @classmethod
    def off(cls) -> FastPaths:
        return cls(channels_last=False, compile=False, cuda_graphs=False, fuse_projections=False)

    @classmethod
    def for_device(cls, device: torch.device | str, enabled: bool = True) -> FastPaths:
        """Sampling defaults: channels-last, fused attention projections, regional compile and CUDA graphs on
        CUDA; nothing on other devices or when ``enabled`` is False."""
        if not enabled or torch.device(device).type != "cuda":
            return cls.off()
        return cls()

    @classmethod
    def for_mode(cls, mode: str, device: torch.device | str) -> FastPaths:
        """Sampling paths by name: ``compile`` (:meth:`for_device`), ``graphs`` (CUDA graphs and fused attention
        projections, nothing compiled: fast at once; channels-last is left out, since without compiled regions
        eager GroupNorm converts the layout back), ``off``. Anything but ``off`` needs CUDA (elsewhere: off)."""
        if mode not in ("compile", "graphs", "off"):
            raise ValueError(f"fast path {mode!r}: one of compile, graphs, off")
        if mode == "off" or torch.device(device).type != "cuda":
            return cls.off()
        if mode == "graphs":
            return cls(channels_last=False, compile=False, fuse_projections=True, cuda_graphs=True)
        return cls()

    @classmethod
    def for_training(cls, device: torch.device | str, enabled: bool = True) -> FastPaths:
        """Training defaults on CUDA: channels-last, packed Temp-Attn rows, GroupNorm from channel statistics,
        regional compile and CUDA graphs for the frozen text encoder (the UNet's step stays out of graphs: it
        trains; no fused projections: gradients would reach only the fused copies); nothing elsewhere.

        Packing and the channel-statistics GroupNorm pay in the training step's forward + backward at 8
        frames and not in 16-frame sampling (``benchmarks/bench_temporal_units.py``), hence two sets.
        """
        if not enabled or torch.device(device).type != "cuda":
            return cls.off()
        return cls(
            pack_temporal_attention=TRAINING_PACK_LENGTH,
            channel_stats_group_norm=True,
            fuse_projections=False,
        )

    @property
    def any(self) -> bool:
        return (
            self.channels_last
            or bool(self.pack_temporal_attention)
            or self.channel_stats_group_norm
            or self.compile
            or self.cuda_graphs
            or self.fuse_projections
        )


def to_channels_last(module: nn.Module) -> nn.Module:
    """Store 4D weights NHWC and Conv3d weights NDHWC; models that read ``memory_format`` use it for inputs."""
    formats = {4: torch.channels_last, 5: torch.channels_last_3d}
    for p in module.parameters():
        if p.dim() in formats:
            p.data = p.data.contiguous(memory_format=formats[p.dim()])
    for m in module.modules():
        if hasattr(m, "memory_format"):  # the models, and the video blocks for their units
            m.memory_format = torch.channels_last
    return module


def pack_temporal_attention(module: nn.Module, pack_length: int) -> int:
    """Set every Temp-Attn's packed row length (0: unpacked); returns how many attentions were set."""
    attns = [m for m in module.modules() if isinstance(m, TemporalSelfAttention)]
    for a in attns:
        a.pack_length = pack_length
    return len(attns)


def repeated_units(model: nn.Module) -> list[nn.Module]:
    """The units regional compilation compiles: each video block's units and samplers
    (:meth:`training.model.units.VideoBlock.compile_units`), and the layers of the 2D levels that have no temporal
    layers (the VAE's encoder and its decoder's mid block)."""
    units: list[nn.Module] = []
    for level in model.modules():
        if isinstance(level, VideoBlock):
            units += level.compile_units()
            continue
        for name in LEVEL_LAYERS:
            children = getattr(level, name, None)
            if isinstance(children, nn.ModuleList):
                units.extend(children)
    return units


def compile_regions(model: nn.Module, backend: str = "inductor", mode: str | None = None) -> int:
    """``torch.compile`` each repeated unit (:func:`repeated_units`) in place (``nn.Module.compile``);
    returns how many.

    Static shapes (``dynamic=False``): sampling and training run few, fixed shapes, and kernels
    specialised to them are the fast ones.
    """
    import torch._dynamo

    # Compiled kernels persist across processes in a keyed per-user folder (training.model.compile_cache).
    first = next(model.parameters(), None)
    enable_compile_cache(first.device if first is not None else None)
    cfg = torch._dynamo.config
    limit_name = "recompile_limit" if hasattr(cfg, "recompile_limit") else "cache_size_limit"
    setattr(cfg, limit_name, max(getattr(cfg, limit_name), RECOMPILE_LIMIT))
    units = repeated_units(model)
    for unit in units:
        unit.compile(backend=backend, mode=mode, dynamic=False)
    return len(units)


def apply_fast_paths(model: nn.Module, fast: FastPaths) -> nn.Module:
    """Apply ``fast``'s settings to a UNet or VAE in place (the GroupNorm swap only in compiled regions,
    where it pays)."""
    if fast.channels_last:
        to_channels_last(model)
    if fast.pack_temporal_attention:
        pack_temporal_attention(model, fast.pack_temporal_attention)
    if fast.fuse_projections:
        fuse_attention_projections(model)
    if fast.compile:
        if fast.channel_stats_group_norm:
            for unit in repeated_units(model):
                use_channel_stats_group_norm(unit)
        compile_regions(model, fast.compile_backend, fast.compile_mode)
    return model
