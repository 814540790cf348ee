"""Tiny random-weight Stable-Diffusion-2-shaped components, written in the layouts users have:
a diffusers folder and an original (LDM) single-file checkpoint. Nothing is downloaded."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from training.model.tiny import TINY_TEXT, TINY_UNET, TINY_VAE, write_char_tokenizer

UNET, VAE = TINY_UNET, TINY_VAE
# The layout whose fresh model is SD frame by frame: the 2D-equivalence tests build it.
FRAMEWISE = dict(layout="framewise")
TEXT = dict(TINY_TEXT, vocab_size=0)


def tiny_unet2d(seed: int = 0) -> UNet2DConditionModel:
    torch.manual_seed(seed)
    m = UNet2DConditionModel(**UNET)
    # diffusers zero-inits nothing we rely on, but random biases make equivalence checks stricter.
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return m


def tiny_vae(seed: int = 0) -> AutoencoderKL:
    torch.manual_seed(seed)
    return AutoencoderKL(**VAE)


def write_tokenizer(folder: Path) -> CLIPTokenizer:
    return write_char_tokenizer(folder)


def tiny_text_model(vocab_size: int, seed: int = 0) -> CLIPTextModel:
    torch.manual_seed(seed)
    return CLIPTextModel(CLIPTextConfig(**{**TEXT, "vocab_size": vocab_size}))


def write_sd_folder(root: Path, prediction_type: str = "v_prediction") -> Path:
    """unet/, vae/, text_encoder/, tokenizer/, scheduler/ as diffusers saves them."""
    tiny_unet2d().save_pretrained(root / "unet")
    tiny_vae().save_pretrained(root / "vae")
    tok = write_tokenizer(root / "tokenizer")
    tok.save_pretrained(root / "tokenizer")
    tiny_text_model(len(tok)).save_pretrained(root / "text_encoder")
    (root / "scheduler").mkdir(parents=True, exist_ok=True)
    (root / "scheduler" / "scheduler_config.json").write_text(
        json.dumps({"_class_name": "DDIMScheduler", "prediction_type": prediction_type, "num_train_timesteps": 1000})
    )
    return root


# --- diffusers -> original LDM key names (the inverse of diffusers' single-file converters) ---------------

_RES = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1", "norm2": "out_layers.0",
        "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}  # fmt: skip


def _res(rest: str, table=_RES) -> str:
    head, _, tail = rest.partition(".")
    return f"{table.get(head, head)}.{tail}"


def unet_to_ldm(sd: dict[str, torch.Tensor], layers: int) -> dict[str, torch.Tensor]:
    out = {}
    n = layers + 1
    for k, v in sd.items():
        p = k.split(".")
        rest = ".".join(p[4:])
        if p[0] == "time_embedding":
            nk = f"time_embed.{0 if p[1] == 'linear_1' else 2}.{p[2]}"
        elif p[0] == "conv_in":
            nk = f"input_blocks.0.0.{p[1]}"
        elif p[0] == "conv_norm_out":
            nk = f"out.0.{p[1]}"
        elif p[0] == "conv_out":
            nk = f"out.2.{p[1]}"
        elif p[0] == "down_blocks":
            i, kind, j = int(p[1]), p[2], int(p[3])
            if kind == "resnets":
                nk = f"input_blocks.{n * i + j + 1}.0.{_res(rest)}"
            elif kind == "attentions":
                nk = f"input_blocks.{n * i + j + 1}.1.{rest}"
            else:
                nk = f"input_blocks.{n * (i + 1)}.0.op.{p[-1]}"
        elif p[0] == "mid_block":
            kind, j = p[1], int(p[2])
            rest = ".".join(p[3:])
            nk = f"middle_block.{1 if kind == 'attentions' else 2 * j}.{_res(rest) if kind == 'resnets' else rest}"
        elif p[0] == "up_blocks":
            i, kind, j = int(p[1]), p[2], int(p[3])
            if kind == "resnets":
                nk = f"output_blocks.{n * i + j}.0.{_res(rest)}"
            elif kind == "attentions":
                nk = f"output_blocks.{n * i + j}.1.{rest}"
            else:
                has_attn = any(x.startswith(f"up_blocks.{i}.attentions.") for x in sd)
                nk = f"output_blocks.{n * i + layers}.{2 if has_attn else 1}.conv.{p[-1]}"
        else:
            raise KeyError(k)
        out[f"model.diffusion_model.{nk}"] = v
    return out


_VRES = {"conv_shortcut": "nin_shortcut"}
_VATT = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out": "proj_out"}


def vae_to_ldm(sd: dict[str, torch.Tensor], levels: int) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in sd.items():
        p = k.split(".")
        if p[0] in ("quant_conv", "post_quant_conv"):
            nk = k
        else:
            side = p[0]
            if p[1] in ("conv_in", "conv_out"):
                nk = k
            elif p[1] == "conv_norm_out":
                nk = f"{side}.norm_out.{p[2]}"
            elif p[1] in ("down_blocks", "up_blocks"):
                i = int(p[2]) if p[1] == "down_blocks" else levels - 1 - int(p[2])
                grp = "down" if p[1] == "down_blocks" else "up"
                if p[3] == "resnets":
                    nk = f"{side}.{grp}.{i}.block.{p[4]}.{_res('.'.join(p[5:]), _VRES)}"
                else:
                    nk = f"{side}.{grp}.{i}.{'downsample' if grp == 'down' else 'upsample'}.conv.{p[-1]}"
            elif p[2] == "resnets":
                nk = f"{side}.mid.block_{int(p[3]) + 1}.{_res('.'.join(p[4:]), _VRES)}"
            else:  # mid_block.attentions.0.<name>[.0].<param>
                name = _VATT[p[4]]
                nk = f"{side}.mid.attn_1.{name}.{p[-1]}"
                if name in ("q", "k", "v", "proj_out") and v.ndim == 2:
                    v = v[:, :, None, None]
        out[f"first_stage_model.{nk}"] = v
    return out


def write_single_file(path: Path, global_step: int | None = None) -> dict[str, torch.Tensor]:
    """An original-layout SD checkpoint of the tiny UNet and VAE; returns the diffusers-named originals."""
    unet_sd, vae_sd = tiny_unet2d().state_dict(), tiny_vae().state_dict()
    ldm = {**unet_to_ldm(unet_sd, UNET["layers_per_block"]), **vae_to_ldm(vae_sd, len(VAE["block_out_channels"]))}
    ldm = {k: v.contiguous() for k, v in ldm.items()}
    if path.suffix == ".safetensors":
        save_file(ldm, str(path))
    else:
        payload = {"state_dict": ldm}
        if global_step is not None:
            payload["global_step"] = global_step
        torch.save(payload, path)
    return {"unet": unet_sd, "vae": vae_sd}


def tiny_original_config(parameterization: str = "v") -> dict:
    from training.model.loading import sd2_original_config

    return sd2_original_config(
        parameterization, model_channels=32, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(1,),
        num_head_channels=16, context_dim=32, vae_ch=32, vae_ch_mult=(1, 2), vae_num_res_blocks=1,
    )  # fmt: skip


RENAMES = [("self_attn.out_proj", "attn.out_proj"), ("layer_norm1", "ln_1"), ("layer_norm2", "ln_2"),
           ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj")]  # fmt: skip


def text_to_openclip(sd: dict[str, torch.Tensor], prefix: str = "cond_stage_model.model.") -> dict[str, torch.Tensor]:
    """A transformers CLIPTextModel state dict in OpenCLIP's layout (as SD 2.x single files hold it)."""
    out: dict[str, torch.Tensor] = {}
    fixed = {
        "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
        "text_model.embeddings.position_embedding.weight": "positional_embedding",
        "text_model.final_layer_norm.weight": "ln_final.weight",
        "text_model.final_layer_norm.bias": "ln_final.bias",
    }
    qkv: dict[str, dict[str, torch.Tensor]] = {}
    sd = {k if k.startswith("text_model.") else f"text_model.{k}": v for k, v in sd.items()}
    for k, v in sd.items():
        if k in fixed:
            out[prefix + fixed[k]] = v
            continue
        if not k.startswith("text_model.encoder.layers."):
            continue  # buffers such as position_ids
        i, rest = k[len("text_model.encoder.layers.") :].split(".", 1)
        base = f"{prefix}transformer.resblocks.{i}."
        for proj in ("q_proj", "k_proj", "v_proj"):
            if rest.startswith(f"self_attn.{proj}."):
                kind = rest.rsplit(".", 1)[1]
                qkv.setdefault(f"{base}attn.in_proj_{kind}", {})[proj] = v
                break
        else:
            for a, b in RENAMES:
                rest = rest.replace(a, b)
            out[base + rest] = v
    for k, parts in qkv.items():
        out[k] = torch.cat([parts["q_proj"], parts["k_proj"], parts["v_proj"]])
    hidden = sd["text_model.final_layer_norm.weight"].shape[0]
    out[prefix + "text_projection"] = torch.zeros(hidden, hidden)
    return out
