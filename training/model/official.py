"""The authors' released VidRD in this project's model: their UNet checkpoint (``ModelT2V.pth``, a Lightning
checkpoint with ``unet.*`` and ``text_encoder.*``) and their fine-tuned temporal VAE folder.

The official layout of :class:`~training.model.unet.VidRDUNet` has the release's parameter names and shapes,
so the UNet loads without renaming; the VAE needs diffusers 0.14's mid-block attention names
(``query/key/value/proj_attn``) mapped and a ``vae.`` prefix; the text encoder needs the prefix that newer
transformers dropped and loses the ``position_ids`` buffer it no longer stores. Every load is strict: a
wrong file is an error naming the first missing and the first unexpected key (``loading.load_into``). Facts
about the release: ``docs/official_vidrd.md``.
"""

from __future__ import annotations

import json
import os
import pickle
import re
from dataclasses import dataclass
from typing import Any

import torch
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from training.model.loading import (
    EPSILON,
    LoadReport,
    SDComponents,
    WeightLoadError,
    load_into,
    read_json,
    read_state_dict,
    save_vidrd,
    unet_from_config,
    vae_from_config,
    weights_file,
)
from training.model.text_encoder import FrozenTextEncoder
from training.model.unet import VidRDUNet
from training.model.vae import TemporalVAE
from training.model.video_blocks import OFFICIAL

# The release's 3D block names and the SD 2.x blocks they inflate.
BLOCKS_3D = {
    "CrossAttnDownBlock3D": "CrossAttnDownBlock2D",
    "DownBlock3D": "DownBlock2D",
    "CrossAttnUpBlock3D": "CrossAttnUpBlock2D",
    "UpBlock3D": "UpBlock2D",
    "UNetMidBlock3DCrossAttn": "UNetMidBlock2DCrossAttn",
}
# ModelT2V's flags (configs/example.yaml); any other value builds a model the release did not publish.
RELEASE_FLAGS = {
    "add_temp_embed": True,
    "add_temp_conv": True,
    "add_temp_transformer": False,
    "add_temp_attn_only_on_upblocks": False,
    "prepend_first_frame": False,
}
# diffusers 0.14 named the VAE mid-block attention's layers like this.
OLD_VAE_ATTENTION = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}
# The release trains and samples at 256x256, and its loader sets sample_size = 256 // 8.
RELEASE_SAMPLE_SIZE = 32


def unet_config_2d(config: dict[str, Any]) -> dict[str, Any]:
    """An SD ``UNet2DConditionModel`` config from the release's constructor config (3D block names, temporal
    flags) or from an SD 2.x ``unet/config.json``; refuses flags the release did not use."""
    for flag, value in RELEASE_FLAGS.items():
        if flag in config and bool(config[flag]) != value:
            raise WeightLoadError(f"{flag}={config[flag]!r}: the released VidRD (ModelT2V) uses {flag}={value}")
    out = dict(config)
    for key in ("down_block_types", "up_block_types"):
        out[key] = [BLOCKS_3D.get(t, t) for t in config[key]]
    if "mid_block_type" in config:
        out["mid_block_type"] = BLOCKS_3D.get(config["mid_block_type"], config["mid_block_type"])
    return out


def load_official_unet(
    state_dict: dict[str, torch.Tensor], constructor_config: dict[str, Any], layout: str = OFFICIAL
) -> VidRDUNet:
    """The release's UNet (state dict without the ``unet.`` prefix) as a :class:`VidRDUNet` of ``layout``."""
    unet = unet_from_config(unet_config_2d(constructor_config), layout=layout)
    load_into(unet, state_dict, "unet", temporal_may_be_missing=False)  # the release has every temporal key
    return unet


def vae_key(name: str) -> str:
    """A release VAE key (diffusers 0.14 names, no prefix) as :class:`TemporalVAE` names it."""
    parts = name.split(".")
    if "attentions" in parts:
        i = parts.index("attentions") + 2  # ....attentions.<n>.<layer>.<weight|bias>
        if i < len(parts) and parts[i] in OLD_VAE_ATTENTION:
            parts[i] = OLD_VAE_ATTENTION[parts[i]]
    return "vae." + ".".join(parts)


def load_official_vae(state_dict: dict[str, torch.Tensor], constructor_config: dict[str, Any]) -> TemporalVAE:
    """The release's ``TemporalAutoencoderKL`` (its folder's state dict and ``config.json``) as a
    :class:`TemporalVAE`. Temporal convs missing from the file keep their zero-init identity, as the release's
    loader fills them from init."""
    return _load_vae(state_dict, constructor_config)[0]


def _load_vae(
    state_dict: dict[str, torch.Tensor], constructor_config: dict[str, Any]
) -> tuple[TemporalVAE, LoadReport]:
    if constructor_config.get("act_fn", "silu") != "silu":
        raise WeightLoadError(f"act_fn={constructor_config['act_fn']!r}: SD's VAE (and TemporalVAE) use silu")
    vae = vae_from_config(constructor_config)
    return vae, load_into(vae, {vae_key(k): v for k, v in state_dict.items()}, "vae")


def text_encoder_state(state: dict[str, torch.Tensor], model: CLIPTextModel) -> dict[str, torch.Tensor]:
    """The release's ``text_encoder.*`` weights (transformers 4.30 names) in ``model``'s names: the
    ``text_model.`` prefix newer transformers dropped, and no ``position_ids`` buffer where it is not stored."""
    keys = set(model.state_dict())
    out = {}
    for k, v in state.items():
        if (
            k not in keys
            and k.startswith("text_model.")
            and k.removeprefix("text_model.") in keys | {"embeddings.position_ids"}
        ):
            k = k.removeprefix("text_model.")
        if k.endswith("embeddings.position_ids") and k not in keys:
            continue  # a buffer of older transformers: arange(77), rebuilt by the model itself
        out[k] = v
    return out


def read_release_checkpoint(path: str, trust_pickle: bool = False) -> dict[str, torch.Tensor]:
    """The ``state_dict`` of a Lightning checkpoint such as ``ModelT2V.pth``, read with ``weights_only=True``
    unless ``trust_pickle`` (a checkpoint whose hyper-parameters pickle other objects needs it)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    if os.path.getsize(path) == 0:
        raise WeightLoadError(f"{path}: an empty file (0 bytes), not a PyTorch checkpoint")
    try:
        try:  # memory-mapped: the release's file is about 6 GB
            ckpt = torch.load(path, map_location="cpu", weights_only=not trust_pickle, mmap=True)
        except RuntimeError as e:
            if "mmap" not in str(e):
                raise
            ckpt = torch.load(path, map_location="cpu", weights_only=not trust_pickle)  # legacy format
    except pickle.UnpicklingError as e:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        if found is None:
            raise WeightLoadError(f"{path}: not a PyTorch checkpoint (unreadable pickle)") from e
        raise WeightLoadError(
            f"{path}: pickles {found.group(1)}, which a weights-only load refuses. If you trust the file, pass "
            "--trust-pickle"
        ) from e
    except (RuntimeError, EOFError, ValueError, IndexError, OSError) as e:  # zip, mmap and legacy-format errors
        raise WeightLoadError(f"{path}: not a PyTorch checkpoint ({(str(e).splitlines() or [''])[0][:200]})") from e
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not any(isinstance(k, str) and k.startswith("unet.") for k in state):
        raise WeightLoadError(f"{path}: no 'unet.*' weights in its state_dict: not a VidRD release checkpoint")
    odd = next((k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)), None)
    if odd is not None:
        raise WeightLoadError(f"{path}: {odd!r} in its state_dict is not a named tensor: not a VidRD release")
    return state


def _under(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


@dataclass
class ConversionReport:
    """What :func:`convert_release` wrote."""

    out: str
    unet_tensors: int
    text_encoder_source: str
    vae_source: str
    vae_temporal_filled: int
    parameters: dict[str, int]

    def lines(self) -> list[str]:
        p = self.parameters
        return [
            f"unet: {self.unet_tensors} tensors (official layout): {p['total']:,} parameters, "
            f"{p['temporal']:,} temporal, {p['trainable']:,} in the paper's trainable set",
            f"text encoder: {self.text_encoder_source}",
            f"vae: {self.vae_source}" + (f" ({self.vae_temporal_filled} temporal tensors at identity init)"
                                         if self.vae_temporal_filled else ""),
            f"written: {self.out}",
        ]  # fmt: skip


def convert_release(
    ckpt: str, sd_folder: str, out: str, temporal_vae: str | None = None, trust_pickle: bool = False
) -> ConversionReport:
    """Write a VidRD checkpoint folder (``save_vidrd``: safetensors) from the release.

    ``ckpt``: ``ModelT2V.pth``; ``sd_folder``: Stable Diffusion 2.1-base in diffusers layout (UNet config,
    tokenizer, text-encoder config, scheduler, and the 2D VAE when no temporal VAE is given);
    ``temporal_vae``: the release's fine-tuned VAE folder (``config.json`` + ``diffusion_pytorch_model.bin``).
    As in the release, the text encoder's weights come from the checkpoint and ``vae.*`` keys in it are used
    only without a temporal VAE folder.
    """
    state = read_release_checkpoint(ckpt, trust_pickle)
    ucfg = read_json(os.path.join(sd_folder, "unet", "config.json"))
    unet_state = _under(state, "unet.")
    unet = load_official_unet(unet_state, {**ucfg, "sample_size": RELEASE_SAMPLE_SIZE})

    tok = CLIPTokenizer.from_pretrained(os.path.join(sd_folder, "tokenizer"), local_files_only=True)
    text_cfg = CLIPTextConfig.from_pretrained(os.path.join(sd_folder, "text_encoder"), local_files_only=True)
    text_model = CLIPTextModel(text_cfg)
    te_state = _under(state, "text_encoder.")
    if te_state:
        load_into(text_model, text_encoder_state(te_state, text_model), f"{ckpt}: text_encoder",
                  temporal_may_be_missing=False)  # fmt: skip
        te_source = f"{ckpt} ({len(te_state)} tensors)"
    else:
        text_model = CLIPTextModel.from_pretrained(os.path.join(sd_folder, "text_encoder"), local_files_only=True)
        te_source = f"{sd_folder}/text_encoder (the checkpoint has no text_encoder.* weights)"

    if temporal_vae is not None:
        vcfg = read_json(os.path.join(temporal_vae, "config.json"))
        vae_state = read_state_dict(weights_file(temporal_vae))
        vae_source = f"{temporal_vae} (temporal decoder)"
    else:
        vcfg = read_json(os.path.join(sd_folder, "vae", "config.json"))
        vae_state = _under(state, "vae.")
        source = f"{ckpt} vae.*" if vae_state else f"{sd_folder}/vae"
        vae_state = vae_state or read_state_dict(weights_file(os.path.join(sd_folder, "vae")))
        vae_source = f"{source} (2D decoder; no temporal VAE folder given)"
    vae, vae_report = _load_vae(vae_state, vcfg)

    scfg = read_json(os.path.join(sd_folder, "scheduler", "scheduler_config.json"))
    comps = SDComponents(unet, vae, FrozenTextEncoder(tok, text_model), scfg, scfg.get("prediction_type", EPSILON))
    save_vidrd(out, comps)
    with open(os.path.join(out, "conversion.json"), "w") as f:
        json.dump({"from": "vidrd-release", "ckpt": os.path.abspath(ckpt), "sd": os.path.abspath(sd_folder),
                   "temporal_vae": temporal_vae and os.path.abspath(temporal_vae)}, f, indent=2)  # fmt: skip
    filled = len(vae_report.temporal_initialised)
    return ConversionReport(out, len(unet_state), te_source, vae_source, filled, unet.parameter_counts())
