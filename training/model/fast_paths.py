"""Fast paths for the VidRD UNet (and the temporal VAE): channels-last memory and regional ``torch.compile``.

Both change how the same arithmetic is laid out and launched, not what is computed, so outputs match
the plain path to floating-point rounding (``tests/test_fast_paths.py``; on GPU in bf16,
``benchmarks/bench_fast.py`` reports the difference). CUDA graphs for the fixed-shape sampling loop live
in ``inference/graphed.py``: they only make sense where one shape is replayed many times.

* **channels-last**: cuDNN's convolutions are NHWC kernels; fed NCHW tensors they transpose in and out
  (the top entries of ``benchmarks/profile_unet.py``'s eager profile). Conv2d weights become
  ``channels_last``, Temp-Conv's Conv3d weights ``channels_last_3d`` (the folded ``[B*F, C, H, W]``
  activations in NHWC, unfolded to ``[B, C, F, H, W]``, are exactly NDHWC, so Temp-Conv stays
  transpose-free too).
* **regional compile**: each repeated unit (ResNet, Temp-Conv, spatial transformer, Temp-Attn, up/down
  samplers) is compiled on its own, so instances of one class share compiled code and compile time
  stays a fraction of compiling the whole UNet; Inductor fuses GroupNorm + SiLU, GEGLU, residual adds
  and the layout copies around attention.

On by default on CUDA (:func:`FastPaths.for_device`); off on CPU, where Inductor's compile time
outweighs what it saves and torch's CPU conv backward mishandles channels-last inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

# One compiled graph per (unit class, input shape): the SD 2.1 UNet has ~14 ResNet shapes, and training
# and sampling each add their own; dynamo's default of 8 per code object would drop the rest to eager.
RECOMPILE_LIMIT = 64


@dataclass(frozen=True)
class FastPaths:
    """Which speed-ups to apply. ``cuda_graphs`` is used by sampling only (``inference.graphed``)."""

    channels_last: bool = True
    compile: bool = True
    cuda_graphs: bool = True
    compile_backend: str = "inductor"
    compile_mode: str | None = None

    @classmethod
    def off(cls) -> FastPaths:
        return cls(channels_last=False, compile=False, cuda_graphs=False)

    @classmethod
    def for_device(cls, device: torch.device | str, enabled: bool = True) -> FastPaths:
        """Defaults: everything on for CUDA, nothing on other devices or when ``enabled`` is False."""
        if not enabled or torch.device(device).type != "cuda":
            return cls.off()
        return cls()

    @property
    def any(self) -> bool:
        return self.channels_last or self.compile or self.cuda_graphs


def to_channels_last(module: nn.Module) -> nn.Module:
    """Store 4D weights NHWC and Conv3d weights NDHWC; models that read ``memory_format`` use it for inputs."""
    formats = {4: torch.channels_last, 5: torch.channels_last_3d}
    for p in module.parameters():
        if p.dim() in formats:
            p.data = p.data.contiguous(memory_format=formats[p.dim()])
    for m in module.modules():
        if hasattr(m, "memory_format"):
            m.memory_format = torch.channels_last
    return module


def repeated_units(model: nn.Module) -> list[nn.Module]:
    """The units regional compilation compiles: every block's ResNets, Temp-Convs, spatial transformers,
    Temp-Attns and up/down samplers (the UNet's and, for the VAE, the decoder's)."""
    units: list[nn.Module] = []
    for block in model.modules():
        for name in ("resnets", "temp_convs", "attentions", "temp_attentions", "downsamplers", "upsamplers"):
            children = getattr(block, name, None)
            if isinstance(children, nn.ModuleList):
                units.extend(children)
    return units


def compile_regions(model: nn.Module, backend: str = "inductor", mode: str | None = None) -> int:
    """``torch.compile`` each repeated unit in place (``nn.Module.compile``); returns how many.

    Static shapes (``dynamic=False``): sampling and training run few, fixed shapes, and kernels
    specialised to them are the fast ones.
    """
    import torch._dynamo

    cfg = torch._dynamo.config
    limit_name = "recompile_limit" if hasattr(cfg, "recompile_limit") else "cache_size_limit"
    setattr(cfg, limit_name, max(getattr(cfg, limit_name), RECOMPILE_LIMIT))
    units = repeated_units(model)
    for unit in units:
        unit.compile(backend=backend, mode=mode, dynamic=False)
    return len(units)


def apply_fast_paths(model: nn.Module, fast: FastPaths) -> nn.Module:
    """Apply ``fast``'s channels-last and compile settings to a UNet or VAE in place."""
    if fast.channels_last:
        to_channels_last(model)
    if fast.compile:
        compile_regions(model, fast.compile_backend, fast.compile_mode)
    return model
