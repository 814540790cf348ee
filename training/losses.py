"""Losses for fine-tuning the temporal VAE decoder (paper 4.4, A.1.2): a PatchGAN discriminator with
hinge loss and Stable Diffusion's adaptive discriminator weight, and an optional perceptual term."""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn


class PatchDiscriminator(nn.Module):
    """PatchGAN (Isola et al.), the layout SD's autoencoder training uses: ``layers`` stride-2 convs,
    one stride-1 conv, then a 1-channel map of per-patch logits."""

    def __init__(self, in_channels: int = 3, channels: int = 64, layers: int = 3):
        super().__init__()
        mods: list[nn.Module] = [nn.Conv2d(in_channels, channels, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < layers else 1
            mods += [
                nn.Conv2d(channels * prev, channels * mult, 4, stride, 1, bias=False),
                nn.BatchNorm2d(channels * mult),
                nn.LeakyReLU(0.2, True),
            ]
        mods.append(nn.Conv2d(channels * mult, 1, 4, 1, 1))
        self.net = nn.Sequential(*mods)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """Discriminator hinge loss: push real logits above 1 and fake ones below -1."""
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def adaptive_weight(rec_loss: torch.Tensor, g_loss: torch.Tensor, last_layer: torch.Tensor) -> torch.Tensor:
    """SD's balance of the adversarial term: ||grad rec|| / ||grad adv|| at the generator's last layer,
    clamped to [0, 1e4] and detached."""
    rec_grad = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    g_grad = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    return (rec_grad.norm() / (g_grad.norm() + 1e-4)).clamp(0.0, 1e4).detach()


class Perceptual(nn.Module):
    """An LPIPS-style distance loaded from a TorchScript file (e.g. ``torch.jit.script(lpips.LPIPS(net="vgg"))``
    saved where its VGG weights were available): ``(x, y)`` in [-1, 1] -> per-image distances."""

    def __init__(self, path: str):
        super().__init__()
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"{path}: no perceptual-loss file. Export one where LPIPS's VGG weights exist: "
                "torch.jit.script(lpips.LPIPS(net='vgg').eval()).save(PATH); or leave `perceptual` unset for L1 only"
            )
        self.net = torch.jit.load(path, map_location="cpu").eval().requires_grad_(False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.net(x, y).reshape(x.shape[0], -1).mean(dim=1)
