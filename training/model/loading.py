"""Weight loading: Stable Diffusion 2.1 (diffusers folder or original single file) into VidRD, VidRD
checkpoints (diffusers-style folders) and Lightning checkpoints.

Pickle files are read with ``torch.load(weights_only=True)`` only; safetensors is preferred
everywhere. Every load returns a :class:`LoadReport` that names what did not match, and the only keys
allowed to be missing from an SD checkpoint are the temporal layers VidRD adds.
"""

from __future__ import annotations

import json
import os
import pickle
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from diffusers.loaders.single_file_utils import (
    convert_ldm_unet_checkpoint,
    convert_ldm_vae_checkpoint,
    convert_open_clip_checkpoint,
    create_unet_diffusers_config_from_ldm,
    create_vae_diffusers_config_from_ldm,
)
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from training.model.sampling_defaults import sd_scheduler_config
from training.model.text_encoder import FrozenTextEncoder
from training.model.unet import VidRDUNet, is_temporal
from training.model.vae import TemporalVAE

EPSILON, V_PREDICTION = "epsilon", "v_prediction"
SD21_BASE_GLOBAL_STEP = 875000  # the released 512 epsilon checkpoint; the 768 v one differs


class WeightLoadError(RuntimeError):
    """Weights do not fit the model (non-temporal keys missing, or shapes differ)."""


@dataclass
class LoadReport:
    """What a load did: tensors loaded, temporal tensors left at their (zero) init, anything else."""

    part: str
    loaded: int = 0
    temporal_initialised: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"{self.part}: {self.loaded} tensors loaded, {len(self.temporal_initialised)} temporal tensors "
            f"initialised (zero-init residual), {len(self.missing)} missing, {len(self.unexpected)} unexpected"
        )


def read_state_dict(path: str) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file, or of a pickle (``.ckpt``/``.bin``/``.pt``) read weights-only."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such weights file")
    try:
        if path.endswith(".safetensors"):
            return load_file(path)
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, SafetensorError, ValueError, IndexError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise WeightLoadError(f"{path}: not a weights file this loader reads ({first})") from e
    if not isinstance(sd, dict):
        raise WeightLoadError(f"{path}: holds a {type(sd).__name__}, not a state dict of tensors")
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        extra = {k: v for k, v in sd.items() if k != "state_dict" and not isinstance(v, dict)}
        sd = {**sd["state_dict"], **extra}
    return sd


def load_into(
    model: nn.Module,
    state: dict[str, torch.Tensor],
    part: str,
    strict: bool = True,
    temporal_may_be_missing: bool = True,
) -> LoadReport:
    """Load ``state`` into ``model``. With ``strict``, nothing unexpected, no shape mismatch, and nothing missing
    but temporal tensors (which keep their zero-init identity) when ``temporal_may_be_missing``; the error names
    the first missing and the first unexpected key."""
    expected = model.state_dict()
    for k, v in state.items():
        if k in expected and not isinstance(v, torch.Tensor):
            raise WeightLoadError(f"{part}: {k} is a {type(v).__name__}, not a tensor")
        if k in expected and tuple(v.shape) != tuple(expected[k].shape):
            raise WeightLoadError(f"{part}: {k} has shape {tuple(v.shape)}, the model {tuple(expected[k].shape)}")
    result = model.load_state_dict(state, strict=False)
    report = LoadReport(part, loaded=len(state) - len(result.unexpected_keys))
    for k in result.missing_keys:
        allowed = temporal_may_be_missing and is_temporal(k)
        (report.temporal_initialised if allowed else report.missing).append(k)
    report.unexpected = list(result.unexpected_keys)
    if strict and (report.missing or report.unexpected):
        first = [f"first missing key {report.missing[0]!r}"] if report.missing else []
        first += [f"first unexpected key {report.unexpected[0]!r}"] if report.unexpected else []
        raise WeightLoadError(
            f"{part}: weights do not match the model: {', '.join(first)} ({len(report.missing)} missing, "
            f"{len(report.unexpected)} unexpected of {len(expected)} expected)"
        )
    return report


_UNET_ARGS = (
    "sample_size", "in_channels", "out_channels", "down_block_types", "up_block_types", "block_out_channels",
    "layers_per_block", "attention_head_dim", "cross_attention_dim", "use_linear_projection",
    "upcast_attention", "norm_num_groups", "norm_eps", "flip_sin_to_cos", "freq_shift",
)  # fmt: skip
_VAE_ARGS = (
    "in_channels", "out_channels", "down_block_types", "up_block_types", "block_out_channels",
    "layers_per_block", "latent_channels", "norm_num_groups", "sample_size", "scaling_factor",
)  # fmt: skip


def _pick(config: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    out = {k: config[k] for k in names if k in config and config[k] is not None}
    if isinstance(out.get("attention_head_dim"), list):
        out["attention_head_dim"] = tuple(out["attention_head_dim"])
    return out


def unet_from_config(config: dict[str, Any], **temporal: Any) -> VidRDUNet:
    """A VidRD UNet shaped like the SD ``UNet2DConditionModel`` described by ``config``."""
    if config.get("transformer_layers_per_block", 1) not in (1, [1, 1, 1, 1], (1, 1, 1, 1)):
        raise WeightLoadError("only transformer_layers_per_block=1 (SD 1.x/2.x) is supported")
    return VidRDUNet(**_pick(config, _UNET_ARGS), **temporal)


def vae_from_config(config: dict[str, Any], **temporal: Any) -> TemporalVAE:
    """A temporal VAE shaped like the SD ``AutoencoderKL`` described by ``config``."""
    return TemporalVAE(**_pick(config, _VAE_ARGS), **temporal)


@dataclass
class SDComponents:
    """What VidRD is built from: UNet, VAE, text encoder (when available), scheduler settings."""

    unet: VidRDUNet
    vae: TemporalVAE
    text_encoder: FrozenTextEncoder | None
    scheduler_config: dict[str, Any]
    prediction_type: str
    reports: list[LoadReport] = field(default_factory=list)


def weights_file(folder: str, stem: str = "diffusion_pytorch_model") -> str:
    for name in (f"{stem}.safetensors", f"{stem}.bin"):
        p = os.path.join(folder, name)
        if os.path.exists(p):
            return p
    raise FileNotFoundError(f"{folder}: no {stem}.safetensors or {stem}.bin")


def read_json(path: str) -> dict[str, Any]:
    """A config file's JSON object; FileNotFoundError when missing, WeightLoadError when it is not one."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: missing (expected a Stable Diffusion folder in diffusers layout)")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError, RecursionError) as e:  # a folder, bad UTF-8 or JSON, nested thousands deep
        raise WeightLoadError(f"{path}: not a readable JSON config ({type(e).__name__}: {e})") from e
    if not isinstance(data, dict):
        raise WeightLoadError(f"{path}: a JSON {type(data).__name__}, not a config object")
    return data


def check_scheduler_config(cfg: dict[str, Any], path: str) -> dict[str, Any]:
    """``cfg`` when the fields the samplers read have usable values; WeightLoadError naming the first that has
    not (a config edited by hand fails here, in a line, not as a TypeError inside a sampling step)."""
    checks = {
        "num_train_timesteps": lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0,
        "beta_start": lambda v: isinstance(v, int | float) and not isinstance(v, bool) and 0 < v < 1,
        "beta_end": lambda v: isinstance(v, int | float) and not isinstance(v, bool) and 0 < v < 1,
        "beta_schedule": lambda v: isinstance(v, str),
        "prediction_type": lambda v: v in (EPSILON, V_PREDICTION),
    }
    for name, ok in checks.items():
        if name in cfg and not ok(cfg[name]):
            raise WeightLoadError(f"{path}: {name} = {cfg[name]!r} is not a usable value")
    return cfg


def load_sd_folder(path: str, text_encoder: bool = True, torch_dtype: torch.dtype | None = None) -> SDComponents:
    """VidRD components from an SD 2.x folder in diffusers layout (unet/, vae/, text_encoder/, tokenizer/,
    scheduler/); the prediction type is the scheduler's."""
    ucfg = read_json(os.path.join(path, "unet", "config.json"))
    vcfg = read_json(os.path.join(path, "vae", "config.json"))
    spath = os.path.join(path, "scheduler", "scheduler_config.json")
    scfg = check_scheduler_config(read_json(spath), spath)
    unet = unet_from_config(ucfg)
    vae = vae_from_config(vcfg)
    reports = [
        load_into(unet, read_state_dict(weights_file(os.path.join(path, "unet"))), "unet"),
        load_into(vae.vae, read_state_dict(weights_file(os.path.join(path, "vae"))), "vae"),
    ]
    te = FrozenTextEncoder.from_pretrained(path, torch_dtype) if text_encoder else None
    if torch_dtype is not None:
        unet.to(torch_dtype)
        vae.to(torch_dtype)
    return SDComponents(unet, vae, te, scfg, scfg.get("prediction_type", EPSILON), reports)


def sd2_original_config(
    parameterization: str = "v",
    model_channels: int = 320,
    channel_mult: tuple[int, ...] = (1, 2, 4, 4),
    num_res_blocks: int = 2,
    attention_resolutions: tuple[int, ...] = (4, 2, 1),
    num_head_channels: int = 64,
    context_dim: int = 1024,
    vae_ch: int = 128,
    vae_ch_mult: tuple[int, ...] = (1, 2, 4, 4),
    vae_num_res_blocks: int = 2,
    scale_factor: float = 0.18215,
) -> dict[str, Any]:
    """The parts of Stability's ``v2-inference(-v).yaml`` that the converters read (defaults: SD 2.1)."""
    params: dict[str, Any] = {
        "scale_factor": scale_factor,
        "unet_config": {
            "params": {
                "in_channels": 4,
                "out_channels": 4,
                "model_channels": model_channels,
                "attention_resolutions": list(attention_resolutions),
                "num_res_blocks": num_res_blocks,
                "channel_mult": list(channel_mult),
                "num_head_channels": num_head_channels,
                "use_linear_in_transformer": True,
                "transformer_depth": 1,
                "context_dim": context_dim,
            }
        },
        "first_stage_config": {
            "params": {
                "embed_dim": 4,
                "ddconfig": {
                    "double_z": True,
                    "z_channels": 4,
                    "resolution": 256,
                    "in_channels": 3,
                    "out_ch": 3,
                    "ch": vae_ch,
                    "ch_mult": list(vae_ch_mult),
                    "num_res_blocks": vae_num_res_blocks,
                    "attn_resolutions": [],
                },
            }
        },
    }
    if parameterization == "v":
        params["parameterization"] = "v"
    return {"model": {"params": params}}


def infer_prediction_type(path: str, state: dict[str, Any], original_config: dict[str, Any] | None) -> str:
    """v or epsilon for an original SD 2.x file: its config's ``parameterization``, else the released base
    checkpoint's global step, else the file name ("base" -> epsilon); SD 2.1 (768) is v."""
    if original_config is not None:
        return V_PREDICTION if original_config["model"]["params"].get("parameterization") == "v" else EPSILON
    step = state.get("global_step")
    if step is not None and int(step) == SD21_BASE_GLOBAL_STEP:
        return EPSILON
    return EPSILON if "base" in os.path.basename(path).lower() else V_PREDICTION


def openclip_text_config() -> CLIPTextConfig:
    """SD 2.x's text tower (OpenCLIP ViT-H/14 minus its last layer, as diffusers ships it)."""
    return CLIPTextConfig(
        vocab_size=49408, hidden_size=1024, intermediate_size=4096, num_hidden_layers=23,
        num_attention_heads=16, max_position_embeddings=77, hidden_act="gelu", projection_dim=512,
    )  # fmt: skip


def load_sd_single_file(
    path: str,
    prediction_type: str | None = None,
    original_config: dict[str, Any] | None = None,
    tokenizer_dir: str | None = None,
    text_config: CLIPTextConfig | None = None,
    image_size: int | None = None,
) -> SDComponents:
    """VidRD components from an original SD 2.x ``.ckpt``/``.safetensors``.

    ``original_config`` is the parsed ``v2-inference(-v).yaml`` (default: SD 2.1's). The text encoder
    needs a tokenizer folder (the single file has no vocabulary); without one it is left out.
    """
    state = read_state_dict(path)
    pred = prediction_type or infer_prediction_type(path, state, original_config)
    cfg = original_config or sd2_original_config("v" if pred == V_PREDICTION else "eps")
    if image_size is None:
        image_size = 768 if pred == V_PREDICTION else 512
    with warnings.catch_warnings():
        # diffusers marks image_size deprecated, but without it the converters guess from key shapes,
        # which fails on non-standard sizes; the value only sets sample_size.
        warnings.simplefilter("ignore", FutureWarning)
        ucfg = create_unet_diffusers_config_from_ldm(cfg, state, image_size=image_size)
        vcfg = create_vae_diffusers_config_from_ldm(cfg, state, image_size=image_size)
    ucfg["upcast_attention"] = pred == V_PREDICTION
    unet, vae = unet_from_config(ucfg), vae_from_config(vcfg)
    reports = [
        load_into(unet, convert_ldm_unet_checkpoint(state, ucfg), "unet"),
        load_into(vae.vae, convert_ldm_vae_checkpoint(state, vcfg), "vae"),
    ]
    te = None
    if tokenizer_dir is not None:
        model = CLIPTextModel(text_config or openclip_text_config())
        converted = convert_open_clip_checkpoint(model, state)
        if not any(k.startswith("text_model.") for k in model.state_dict()):
            # transformers 5 names CLIPTextModel's tensors without the "text_model." prefix diffusers writes
            converted = {k.removeprefix("text_model."): v for k, v in converted.items()}
        reports.append(load_into(model, converted, "text_encoder"))
        te = FrozenTextEncoder(CLIPTokenizer.from_pretrained(tokenizer_dir, local_files_only=True), model)
    return SDComponents(unet, vae, te, sd_scheduler_config(pred), pred, reports)


def load_lightning_checkpoint(model: nn.Module, ckpt_path: str, prefix: str = "unet.") -> LoadReport:
    """Load the weights under ``prefix`` of a Lightning checkpoint's ``state_dict`` into ``model``."""
    state = read_state_dict(ckpt_path)
    sub = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    if not sub:
        raise WeightLoadError(f"{ckpt_path}: no weights under prefix {prefix!r}")
    return load_into(model, sub, f"{ckpt_path}:{prefix}")


def save_vidrd(folder: str, comps: SDComponents) -> None:
    """Write a VidRD checkpoint folder (diffusers style, safetensors): unet/, vae/, scheduler/, and
    text_encoder/ + tokenizer/ when the components have them."""
    os.makedirs(folder, exist_ok=True)
    comps.unet.save_pretrained(os.path.join(folder, "unet"))
    comps.vae.save_pretrained(os.path.join(folder, "vae"))
    if comps.text_encoder is not None:
        comps.text_encoder.model.save_pretrained(os.path.join(folder, "text_encoder"))
        comps.text_encoder.tokenizer.save_pretrained(os.path.join(folder, "tokenizer"))
    os.makedirs(os.path.join(folder, "scheduler"), exist_ok=True)
    with open(os.path.join(folder, "scheduler", "scheduler_config.json"), "w") as f:
        json.dump({**comps.scheduler_config, "prediction_type": comps.prediction_type}, f, indent=2)


CHECKPOINT_PARTS = ("unet/config.json", "vae/config.json", "scheduler/scheduler_config.json")


def check_checkpoint_folder(folder: str, text: bool = True) -> None:
    """A clear error naming the first missing part of a VidRD checkpoint folder (before diffusers, missing a local
    file, would try to download it)."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{folder}: no such checkpoint folder")
    parts = [*CHECKPOINT_PARTS, *(("text_encoder/config.json", "tokenizer") if text else ())]
    for part in parts:
        if not os.path.exists(os.path.join(folder, part)):
            raise FileNotFoundError(
                f"{folder}: no {part} (a VidRD checkpoint folder has unet/, vae/, scheduler/, text_encoder/ and "
                "tokenizer/; write one with vidrd train or vidrd convert)"
            )


def load_vidrd(folder: str, torch_dtype: torch.dtype | None = None) -> SDComponents:
    """Read a folder written by :func:`save_vidrd`."""
    check_checkpoint_folder(folder, text=False)
    spath = os.path.join(folder, "scheduler", "scheduler_config.json")
    scfg = check_scheduler_config(read_json(spath), spath)
    parts = []
    for name, cls in (("unet", VidRDUNet), ("vae", TemporalVAE)):
        read_json(os.path.join(folder, name, "config.json"))  # an object, before diffusers reads it
        try:
            parts.append(cls.from_pretrained(os.path.join(folder, name), torch_dtype=torch_dtype))
        except (OSError, ValueError, TypeError, KeyError) as e:  # diffusers' errors for weights that do not fit
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            raise WeightLoadError(f"{folder}/{name}: cannot be loaded ({type(e).__name__}: {first})") from e
    unet, vae = parts
    te = None
    if os.path.isdir(os.path.join(folder, "text_encoder")):
        te = FrozenTextEncoder.from_pretrained(folder, torch_dtype)
    return SDComponents(unet, vae, te, scfg, scfg.get("prediction_type", EPSILON))
