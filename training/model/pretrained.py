"""One entry point for every weight source the trainer and the tools accept."""

from __future__ import annotations

import json
import os
import tempfile

import torch

from training.model.loading import (
    EPSILON,
    SDComponents,
    load_into,
    load_sd_folder,
    load_sd_single_file,
    load_vidrd,
    read_json,
    read_state_dict,
    vae_from_config,
    weights_file,
)
from training.model.tiny import tiny_components
from training.model.unet import VidRDUNet
from training.model.vae import TemporalVAE

TINY = "tiny"


def is_vidrd_folder(path: str) -> bool:
    """A folder written by ``save_vidrd`` (its UNet config is a ``VidRDUNet``'s)."""
    cfg = os.path.join(path, "unet", "config.json")
    if not os.path.isfile(cfg):
        return False
    with open(cfg) as f:
        return json.load(f).get("_class_name") == "VidRDUNet"


def load_components(
    source: str,
    prediction_type: str | None = None,
    workdir: str | None = None,
    seed: int = 0,
    torch_dtype: torch.dtype | None = None,
    layout: str | None = None,
) -> SDComponents:
    """VidRD components from ``source``:

    - ``"tiny"``: random tiny weights (tokenizer files written under ``workdir``);
    - a VidRD checkpoint folder (``unet/config.json`` with temporal settings);
    - a Stable Diffusion 2.x folder in diffusers layout (temporal layers start at identity);
    - an original SD 2.x ``.ckpt`` / ``.safetensors`` file (with ``tokenizer/`` beside it for the text encoder).

    ``layout``: the UNet's layout (``official`` or ``framewise``); default: a VidRD folder's own, else official.
    Both layouts have the same parameters, so any source loads into either.
    """
    if source == TINY:
        comps = tiny_components(workdir or tempfile.mkdtemp(prefix="vidrd-tiny-"), seed, prediction_type or EPSILON)
    elif os.path.isdir(source):
        comps = (
            load_vidrd(source, torch_dtype) if is_vidrd_folder(source) else load_sd_folder(source, True, torch_dtype)
        )
    elif os.path.isfile(source):
        tok = os.path.join(os.path.dirname(source), "tokenizer")
        comps = load_sd_single_file(source, prediction_type, tokenizer_dir=tok if os.path.isdir(tok) else None)
    else:
        raise FileNotFoundError(
            f"{source}: not a file or folder. Give 'tiny', a VidRD checkpoint folder, a Stable Diffusion 2.1 folder "
            "in diffusers layout (e.g. a local copy of stabilityai/stable-diffusion-2-1-base) or an SD 2.x .ckpt"
        )
    if prediction_type is not None and prediction_type != comps.prediction_type:
        raise ValueError(f"{source} predicts {comps.prediction_type}, not {prediction_type}")
    if layout is not None and layout != comps.unet.config.layout:
        comps.unet = with_layout(comps.unet, layout)
    return comps


def load_vae(source: str, seed: int = 0) -> TemporalVAE:
    """The VAE :func:`load_components` gives for ``source``, without building the UNet and text encoder where the
    VAE has a folder of its own (a VidRD or diffusers folder: SD 2.1's UNet alone is 3.5 GB to read)."""
    folder = os.path.join(source, "vae")
    if not os.path.isdir(folder):
        return load_components(source, seed=seed).vae
    if is_vidrd_folder(source):
        return TemporalVAE.from_pretrained(folder)
    vae = vae_from_config(read_json(os.path.join(folder, "config.json")))
    load_into(vae.vae, read_state_dict(weights_file(folder)), "vae")
    return vae


def with_layout(unet: VidRDUNet, layout: str) -> VidRDUNet:
    """The same weights in a UNet of another layout."""
    # Without "_use_default_values": diffusers drops the keys it lists, and a default layout would stay.
    config = {k: v for k, v in unet.config.items() if k != "_use_default_values"}
    other = VidRDUNet.from_config({**config, "layout": layout})
    other.load_state_dict(unet.state_dict())
    return torch.nn.Module.to(other, next(unet.parameters()).dtype)  # ModelMixin.to warns on every cast
