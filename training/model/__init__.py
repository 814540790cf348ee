"""The VidRD model: inflated SD 2.1 UNet, temporal VAE decoder, frozen text encoder, weight loading."""

from training.model.loading import (
    LoadReport,
    SDComponents,
    WeightLoadError,
    load_lightning_checkpoint,
    load_sd_folder,
    load_sd_single_file,
    load_vidrd,
    save_vidrd,
)
from training.model.temporal import TempConv
from training.model.text_encoder import FrozenTextEncoder
from training.model.unet import VidRDUNet
from training.model.vae import TemporalVAE

__all__ = [
    "FrozenTextEncoder",
    "LoadReport",
    "SDComponents",
    "TempConv",
    "TemporalVAE",
    "VidRDUNet",
    "WeightLoadError",
    "load_lightning_checkpoint",
    "load_sd_folder",
    "load_sd_single_file",
    "load_vidrd",
    "save_vidrd",
]
