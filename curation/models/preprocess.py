"""Image preprocessing as batched tensor work on the model's device (no PIL round trip per frame)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def images_to_batch(
    images: Sequence[np.ndarray],
    size: int,
    mean: Sequence[float],
    std: Sequence[float],
    device: torch.device,
    dtype: torch.dtype,
    crop: bool,
) -> torch.Tensor:
    """``[H, W, 3]`` uint8 frames -> normalised ``[N, 3, size, size]``, bicubic with antialiasing (as PIL).

    ``crop``: short side to ``size`` then centre crop (CLIP); else a direct square resize (BLIP-2 and
    MiniGPT-4's eval transform).
    """
    out = []
    for img in images:
        x = torch.from_numpy(np.ascontiguousarray(img)).to(device).permute(2, 0, 1)[None].float() / 255.0
        h, w = x.shape[-2:]
        if crop:
            scale = size / min(h, w)
            nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
        else:
            nh = nw = size
        x = F.interpolate(x, size=(nh, nw), mode="bicubic", align_corners=False, antialias=True)
        top, left = (nh - size) // 2, (nw - size) // 2
        out.append(x[..., top : top + size, left : left + size])
    m = torch.tensor(mean, device=device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=device).view(1, 3, 1, 1)
    return ((torch.cat(out).clamp(0, 1) - m) / s).to(dtype)
