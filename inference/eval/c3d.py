"""The UCF-101 C3D classifier the video Inception Score is measured with (TGAN / TGANv2 and the PyTorch
code derived from them, e.g. StyleGAN-V's ``c3d_ucf101.pt``).

Weights from a local path: a TorchScript file (called as ``net(x)``), or a state dict in the C3D layout
(``conv1a ... conv5b``, ``fc6``, ``fc7``, ``fc8`` with 101 outputs; ``conv1``/``conv2`` as in the
c3d-pytorch port are accepted too). Input: 16 frames, 112x112 (TGANv2's evaluation: frames in
[0, 255] resized to 128x171, the dataset mean subtracted, centre crop 112).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from inference.eval.weights import load_network

C3D_FRAMES, C3D_SIZE, C3D_RESIZE = 16, 112, (128, 171)
# Per-channel means (RGB) of the Sports-1M C3D mean volume, used when no mean file is given.
C3D_MEAN_RGB = (101.4, 97.7, 90.3)
CONVS = [("conv1a", 3, 64), ("conv2a", 64, 128), ("conv3a", 128, 256), ("conv3b", 256, 256),
         ("conv4a", 256, 512), ("conv4b", 512, 512), ("conv5a", 512, 512), ("conv5b", 512, 512)]  # fmt: skip
POOL_AFTER = {"conv1a": (1, 2, 2), "conv2a": (2, 2, 2), "conv3b": (2, 2, 2), "conv4b": (2, 2, 2), "conv5b": (2, 2, 2)}


class C3D(nn.Module):
    """C3D (Tran et al. 2015). ``width`` scales every channel count (1.0 = published; tests use small ones)."""

    def __init__(self, num_classes: int = 101, width: float = 1.0):
        super().__init__()

        def c(n: int) -> int:
            return max(1, round(n * width))

        for name, cin, cout in CONVS:
            setattr(self, name, nn.Conv3d(3 if cin == 3 else c(cin), c(cout), 3, padding=1))
        self.fc6 = nn.Linear(c(512) * 16, c(4096))
        self.fc7 = nn.Linear(c(4096), c(4096))
        self.fc8 = nn.Linear(c(4096), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, 16, 112, 112]`` (mean-subtracted, 0-255 scale) -> logits ``[B, num_classes]``."""
        for name, _, _ in CONVS:
            x = F.relu(getattr(self, name)(x))
            if name in POOL_AFTER:
                k = POOL_AFTER[name]
                x = F.max_pool3d(x, k, k, padding=(0, 1, 1) if name == "conv5b" else 0)
        x = F.relu(self.fc6(x.flatten(1)))
        return self.fc8(F.relu(self.fc7(x)))


def published_keys() -> list[str]:
    return [f"{n}.{p}" for n in [*(c[0] for c in CONVS), "fc6", "fc7", "fc8"] for p in ("weight", "bias")]


def preprocess(videos: np.ndarray | torch.Tensor, mean: torch.Tensor | None = None) -> torch.Tensor:
    """``[B, T, H, W, 3]`` uint8 -> ``[B, 3, 16, 112, 112]``: 16 frames evenly spaced (all when T = 16),
    resized to 128x171, mean subtracted (a ``[3, 16, 128, 171]`` volume or per-channel), centre crop 112."""
    x = torch.as_tensor(videos)
    b, t = x.shape[:2]
    if t < C3D_FRAMES:
        raise ValueError(f"C3D needs {C3D_FRAMES} frames, got {t}")
    idx = torch.linspace(0, t - 1, C3D_FRAMES).round().long()
    x = x[:, idx].reshape(b * C3D_FRAMES, *x.shape[2:]).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=C3D_RESIZE, mode="bilinear", align_corners=False)
    x = x.reshape(b, C3D_FRAMES, 3, *C3D_RESIZE).permute(0, 2, 1, 3, 4)
    x = x - (mean if mean is not None else torch.tensor(C3D_MEAN_RGB).view(3, 1, 1, 1))
    top, left = (C3D_RESIZE[0] - C3D_SIZE) // 2, (C3D_RESIZE[1] - C3D_SIZE) // 2
    return x[..., top : top + C3D_SIZE, left : left + C3D_SIZE].contiguous()


class C3DProbabilities:
    """UCF-101 class probabilities of uint8 videos."""

    def __init__(self, path: str | Path, device: str = "cpu", batch: int = 16, mean_file: str | Path | None = None):
        self.device, self.batch = device, batch
        self.mean = torch.from_numpy(np.load(mean_file)).float() if mean_file else None

        def build(state: dict[str, torch.Tensor]) -> C3D:
            for old, new in (("conv1.", "conv1a."), ("conv2.", "conv2a.")):  # the c3d-pytorch port's names
                for k in [k for k in state if k.startswith(old)]:
                    state[new + k[len(old) :]] = state.pop(k)
            return C3D(state["fc8.weight"].shape[0], state["conv1a.weight"].shape[0] / 64)

        self.net, _ = load_network(
            path, device, build,
            "C3D weights not found. IS needs the C3D trained on UCF-101 used by TGAN/TGANv2 (e.g. StyleGAN-V's "
            "c3d_ucf101.pt, dropbox.com/s/jxpu7avzdc9n97q, or a state dict converted from TGANv2's "
            "conv3d_deepnetA_ucf.npz)",
        )  # fmt: skip

    @torch.no_grad()
    def __call__(self, videos: np.ndarray) -> np.ndarray:
        """``[N, T, H, W, 3]`` uint8 -> ``[N, classes]`` float64 probabilities."""
        out = []
        for i in range(0, len(videos), self.batch):
            y = self.net(preprocess(videos[i : i + self.batch], self.mean).to(self.device)).double()
            if not torch.allclose(y.sum(1), torch.ones_like(y[:, 0]), atol=1e-3) or (y < 0).any():
                y = y.softmax(1)  # the model returned logits
            out.append(y.cpu().numpy())
        return np.concatenate(out)
