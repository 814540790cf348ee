"""Tiny random-weight VidRD components (SD-2-shaped, a few hundred thousand parameters).

For the demo, the tests and anyone checking the plumbing on a CPU: the real configuration comes from
Stable Diffusion 2.1's files; these keep every code path (text encoder, temporal UNet, temporal VAE,
v/epsilon scheduler) at a size that runs in seconds. Nothing is downloaded: the tokenizer is a
character-level CLIP BPE vocabulary written on the spot.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import torch
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from training.model.loading import EPSILON, SDComponents
from training.model.sampling_defaults import sd_scheduler_config
from training.model.text_encoder import FrozenTextEncoder
from training.model.unet import VidRDUNet
from training.model.vae import TemporalVAE

TINY_UNET = dict(
    sample_size=8,
    block_out_channels=(32, 64),
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    layers_per_block=1,
    attention_head_dim=(2, 4),
    cross_attention_dim=32,
    norm_num_groups=32,  # SD's original layout has no group count: it is always 32
    use_linear_projection=True,
)
TINY_VAE = dict(
    block_out_channels=(32, 64),
    down_block_types=("DownEncoderBlock2D",) * 2,
    up_block_types=("UpDecoderBlock2D",) * 2,
    layers_per_block=1,
    norm_num_groups=32,
    sample_size=32,
)
TINY_TEXT = dict(
    hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=77,
    projection_dim=32, hidden_act="gelu", bos_token_id=0, eos_token_id=1, pad_token_id=1,
)  # fmt: skip


def write_char_tokenizer(folder: str | Path) -> CLIPTokenizer:
    """A CLIP tokenizer over single characters (vocab.json + empty merges), saved in ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    chars = string.ascii_lowercase + string.digits + ".,!?'-"
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in chars:
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    tok.save_pretrained(str(folder))
    return tok


def tiny_components(workdir: str | Path, seed: int = 0, prediction_type: str = EPSILON) -> SDComponents:
    """Random tiny UNet, temporal VAE and text encoder (tokenizer files go to ``workdir/tokenizer``)."""
    torch.manual_seed(seed)
    tok = write_char_tokenizer(Path(workdir) / "tokenizer")
    text = CLIPTextModel(CLIPTextConfig(vocab_size=len(tok), **TINY_TEXT))
    unet = VidRDUNet(**TINY_UNET)
    vae = TemporalVAE(**TINY_VAE)
    return SDComponents(unet, vae, FrozenTextEncoder(tok, text), sd_scheduler_config(prediction_type), prediction_type)
