"""``vidrd convert blip2-lavis CKPT --opt OPT_DIR --out DIR``: a LAVIS BLIP-2 OPT checkpoint as a transformers
``Blip2ForConditionalGeneration`` folder (with its processor), which ``short-videos`` loads like any BLIP-2.

The renames (LAVIS -> transformers): ``visual_encoder.*`` -> ``vision_model.*`` (``cls_token`` -> class
embedding, ``pos_embed`` -> position embedding, ``blocks.N.{norm1,norm2,attn.proj}`` -> ``encoder.layers.N.
{layer_norm1,layer_norm2,self_attn.projection}``), ``ln_vision`` -> ``vision_model.post_layernorm``,
``Qformer.bert.*`` -> ``qformer.*`` (``embeddings.LayerNorm`` -> ``layernorm``, ``{attention,crossattention}.self``
-> ``{...}.attention``), ``opt_proj`` -> ``language_projection``, ``opt_model`` -> ``language_model``. EVA's
attention keeps separate q and v biases and none for k; transformers has one qkv bias: ``[q_bias, 0, v_bias]``.
The Q-Former's text-side weights (word and position embeddings, the text FFN, the LM head) are not used by BLIP-2's
captioning and are left out, as LAVIS's OPT model sets them to None.

LAVIS's released BLIP-2 files hold only what BLIP-2 trained (Q-Former, query tokens, ``opt_proj``, ``ln_vision``);
its ViT-g comes from ``eva_vit_g.pth`` (``--vit``; its 40th block is dropped, as LAVIS builds 39) and OPT from the
Hugging Face folder (``--opt``, which also gives the OPT config and tokenizer). A checkpoint that holds the whole
model (``model.state_dict()`` of a LAVIS ``Blip2OPT``) needs neither weight file. Head counts cannot be read off the
weights: EVA ViT-g has 16, the BERT-base Q-Former 12 (the defaults).

``--vision-only`` writes just the ViT, ``ln_vision``, Q-Former and query tokens (with the config that describes them):
what MiniGPT-4 reads of a BLIP-2 (``long-videos``' ``stage.minigpt4_blip2``), from any LAVIS BLIP-2 checkpoint,
including the FlanT5-XXL one MiniGPT-4 was built on (``blip2_pretrained_flant5xxl.pth``); no OPT is needed.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch

# What LAVIS normalises images with before EVA ViT-g (BlipImageEvalProcessor), and how it resizes them.
LAVIS_MEAN = (0.48145466, 0.4578275, 0.40821073)
LAVIS_STD = (0.26862954, 0.26130258, 0.27577711)
EVA_G_DEPTH = 39
VISION_REQUIRED = ("query_tokens", "ln_vision.weight", "Qformer.bert.embeddings.LayerNorm.weight")
REQUIRED = (*VISION_REQUIRED, "opt_proj.weight")
LANGUAGE_SIDE = re.compile(r"(opt_proj|opt_model|t5_proj|t5_model)\.")
VISION = [
    (r"visual_encoder\.cls_token", "vision_model.embeddings.class_embedding"),
    (r"visual_encoder\.pos_embed", "vision_model.embeddings.position_embedding"),
    (r"visual_encoder\.patch_embed\.proj\.", "vision_model.embeddings.patch_embedding."),
    (r"visual_encoder\.blocks\.(\d+)\.norm1\.", r"vision_model.encoder.layers.\1.layer_norm1."),
    (r"visual_encoder\.blocks\.(\d+)\.norm2\.", r"vision_model.encoder.layers.\1.layer_norm2."),
    (r"visual_encoder\.blocks\.(\d+)\.attn\.qkv\.weight", r"vision_model.encoder.layers.\1.self_attn.qkv.weight"),
    (r"visual_encoder\.blocks\.(\d+)\.attn\.proj\.", r"vision_model.encoder.layers.\1.self_attn.projection."),
    (r"visual_encoder\.blocks\.(\d+)\.mlp\.", r"vision_model.encoder.layers.\1.mlp."),
    (r"ln_vision\.", "vision_model.post_layernorm."),
]
QFORMER = [
    (r"Qformer\.bert\.embeddings\.LayerNorm\.", "qformer.layernorm."),
    (r"Qformer\.bert\.encoder\.layer\.(\d+)\.(attention|crossattention)\.self\.",
     r"qformer.encoder.layer.\1.\2.attention."),
    (r"Qformer\.bert\.encoder\.layer\.(\d+)\.(attention|crossattention)\.output\.",
     r"qformer.encoder.layer.\1.\2.output."),
    (r"Qformer\.bert\.encoder\.layer\.(\d+)\.(intermediate_query|output_query)\.", r"qformer.encoder.layer.\1.\2."),
    (r"query_tokens", "query_tokens"),
    (r"opt_proj\.", "language_projection."),
    (r"opt_model\.", "language_model."),
]  # fmt: skip
# In LAVIS's state dict but not used for captioning (LAVIS's Blip2OPT sets them to None).
UNUSED = re.compile(
    r"Qformer\.(cls\.|bert\.embeddings\.(word_embeddings|position_embeddings|position_ids))"
    r"|Qformer\.bert\.encoder\.layer\.\d+\.(intermediate|output)\."
    r"|visual_encoder\.blocks\.\d+\.attn\.(q_bias|v_bias)"  # merged into qkv.bias
)


class NotBlip2Checkpoint(ValueError):
    """The file is not a LAVIS BLIP-2 OPT checkpoint (the message names the first missing key)."""


def load_lavis_state(path: str, required: tuple[str, ...] = REQUIRED) -> dict[str, torch.Tensor]:
    """The state dict in a LAVIS checkpoint (``{"model": ...}`` as LAVIS saves, or bare); NotBlip2Checkpoint names
    the first of ``required`` (default: what a BLIP-2 OPT checkpoint must have) that this one lacks."""
    return _state_dict(path, "a LAVIS BLIP-2 OPT checkpoint", required)


# What every EVA ViT-g file (eva_vit_g.pth, as LAVIS downloads it) holds, and the converter reads.
EVA_REQUIRED = ("cls_token", "pos_embed", "patch_embed.proj.weight", "blocks.0.mlp.fc1.weight")


def _state_dict(path: str, what: str, required: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """The named tensors in ``path`` (under ``model`` as LAVIS saves, or bare); NotBlip2Checkpoint saying the
    file is not ``what`` when it cannot be read, holds something else, or lacks one of ``required``."""
    if not os.path.isfile(path):
        raise NotBlip2Checkpoint(f"{path}: no such file")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, IndexError, OSError) as e:
        # not a torch file, empty, truncated, or holding objects
        raise NotBlip2Checkpoint(f"{path}: not readable as a weights-only torch checkpoint ({e})") from e
    state = raw.get("model", raw) if isinstance(raw, dict) else None
    if not isinstance(state, dict):
        raise NotBlip2Checkpoint(f"{path}: not {what} (no state dict)")
    missing = [k for k in required if k not in state]
    if missing:
        raise NotBlip2Checkpoint(f"{path}: not {what} (no {missing[0]!r})")
    odd = next((k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)), None)
    if odd is not None:
        raise NotBlip2Checkpoint(f"{path}: not {what} ({odd!r} is not a named tensor)")
    return state


def rename(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """LAVIS keys -> transformers keys, with each ViT block's q/v biases merged into one qkv bias."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if UNUSED.match(key):
            continue
        for pattern, repl in VISION + QFORMER:
            if re.match(pattern, key):
                out[re.sub(pattern, repl, key, count=1)] = value
                break
        else:
            raise NotBlip2Checkpoint(f"unexpected key {key!r} (not a BLIP-2 OPT checkpoint?)")
    for key in state:
        m = re.fullmatch(r"visual_encoder\.blocks\.(\d+)\.attn\.q_bias", key)
        if m:
            q, v = state[key], state[f"visual_encoder.blocks.{m.group(1)}.attn.v_bias"]
            out[f"vision_model.encoder.layers.{m.group(1)}.self_attn.qkv.bias"] = torch.cat([q, torch.zeros_like(q), v])
    return out


def _count(state: dict[str, Any], pattern: str) -> int:
    found = [int(m.group(1)) for k in state if (m := re.match(pattern, k))]
    return max(found) + 1 if found else 0


def blip2_config(state: dict[str, torch.Tensor], opt_config: dict[str, Any], vision_heads: int, qformer_heads: int):
    """A ``Blip2Config`` read off the LAVIS weights' shapes (and the OPT folder's config)."""
    from transformers import Blip2Config, Blip2QFormerConfig, Blip2VisionConfig, OPTConfig

    width = state["visual_encoder.cls_token"].shape[-1]
    patch = state["visual_encoder.patch_embed.proj.weight"].shape[-1]
    grid = math.isqrt(state["visual_encoder.pos_embed"].shape[1] - 1)
    layers = _count(state, r"Qformer\.bert\.encoder\.layer\.(\d+)\.")
    cross_key = re.compile(r"Qformer\.bert\.encoder\.layer\.(\d+)\.crossattention\.")
    cross = sorted({int(m.group(1)) for k in state if (m := cross_key.match(k))})
    vision = Blip2VisionConfig(
        hidden_size=width, intermediate_size=state["visual_encoder.blocks.0.mlp.fc1.weight"].shape[0],
        num_hidden_layers=_count(state, r"visual_encoder\.blocks\.(\d+)\."), num_attention_heads=vision_heads,
        image_size=grid * patch, patch_size=patch, layer_norm_eps=1e-6, qkv_bias=True,
    )  # fmt: skip
    qformer = Blip2QFormerConfig(
        hidden_size=state["query_tokens"].shape[-1], num_hidden_layers=layers, num_attention_heads=qformer_heads,
        intermediate_size=state["Qformer.bert.encoder.layer.0.intermediate_query.dense.weight"].shape[0],
        cross_attention_frequency=cross[1] - cross[0] if len(cross) > 1 else layers,
        encoder_hidden_size=width, layer_norm_eps=1e-12,
    )  # fmt: skip
    text = OPTConfig(**{k: v for k, v in opt_config.items() if k not in ("architectures", "_name_or_path")})
    return Blip2Config(vision_config=vision.to_dict(), qformer_config=qformer.to_dict(), text_config=text.to_dict(),
                       num_query_tokens=state["query_tokens"].shape[1])  # fmt: skip


def _with_vit(state: dict[str, torch.Tensor], ckpt: str, vit: str | None, depth: int) -> dict[str, torch.Tensor]:
    if any(k.startswith("visual_encoder.") for k in state):
        return state
    if vit is None:
        raise NotBlip2Checkpoint(f"{ckpt} holds no ViT weights: give --vit eva_vit_g.pth")
    eva = _state_dict(vit, "EVA ViT-g weights (eva_vit_g.pth)", EVA_REQUIRED)
    return state | {f"visual_encoder.{k}": v for k, v in eva.items()
                    if not (m := re.match(r"blocks\.(\d+)\.", k)) or int(m.group(1)) < depth}  # fmt: skip


def convert_vision(
    ckpt: str, out: str, vit: str | None = None, vision_heads: int = 16, qformer_heads: int = 12,
    vit_depth: int = EVA_G_DEPTH,
) -> Path:  # fmt: skip
    """Write the vision side of a LAVIS BLIP-2 (ViT, Q-Former, query tokens; ``config.json`` + ``model.safetensors``)
    as a transformers BLIP-2 folder holds it, for MiniGPT-4."""
    from safetensors.torch import save_file

    state = load_lavis_state(ckpt, VISION_REQUIRED)
    state = _with_vit({k: v for k, v in state.items() if not LANGUAGE_SIDE.match(k)}, ckpt, vit, vit_depth)
    config = blip2_config(state, {}, vision_heads, qformer_heads)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(folder)
    save_file({k: v.contiguous() for k, v in rename(state).items()}, folder / "model.safetensors")
    return folder


def convert(
    ckpt: str,
    opt: str,
    out: str,
    vit: str | None = None,
    vision_heads: int = 16,
    qformer_heads: int = 12,
    vit_depth: int = EVA_G_DEPTH,
) -> Path:
    """Write a transformers BLIP-2 folder (weights, config, processor, generation config) at ``out``."""
    from transformers import AutoTokenizer, Blip2ForConditionalGeneration, Blip2Processor, BlipImageProcessor

    state = _with_vit(load_lavis_state(ckpt), ckpt, vit, vit_depth)
    opt_dir = Path(opt)
    opt_config = json.loads((opt_dir / "config.json").read_text())
    if not any(k.startswith("opt_model.") for k in state):
        from transformers import OPTForCausalLM

        lm = OPTForCausalLM.from_pretrained(opt_dir, dtype=torch.float32)
        state |= {f"opt_model.{k}": v for k, v in lm.state_dict().items()}
    config = blip2_config(state, opt_config, vision_heads, qformer_heads)
    tok = AutoTokenizer.from_pretrained(opt_dir, use_fast=False)
    tok.add_special_tokens({"additional_special_tokens": ["<image>"]})
    config.image_token_index = tok.convert_tokens_to_ids("<image>")
    weights = rename(state)
    rows = weights["language_model.model.decoder.embed_tokens.weight"].shape[0]
    if config.image_token_index >= rows:
        raise NotBlip2Checkpoint(f"the OPT embeddings have {rows} rows: no room for the <image> token")
    model = Blip2ForConditionalGeneration(config)
    missing, unexpected = model.load_state_dict(weights, strict=False)
    missing = [k for k in missing if k != "language_model.lm_head.weight" or "opt_model.lm_head.weight" in state]
    if missing or unexpected:
        raise NotBlip2Checkpoint(f"{ckpt}: weights do not fit (missing {missing[:3]}, unexpected {unexpected[:3]})")
    if "language_model.lm_head.weight" not in weights:  # OPT ties its head to the input embeddings
        model.language_model.lm_head.weight = model.language_model.model.decoder.embed_tokens.weight
    # LAVIS ends a caption at the first newline (Blip2OPT.eos_token_id): so does the converted model.
    model.generation_config.eos_token_id = tok("\n", add_special_tokens=False).input_ids[0]
    model.save_pretrained(out)
    size = config.vision_config.image_size
    images = BlipImageProcessor(
        size={"height": size, "width": size}, image_mean=list(LAVIS_MEAN), image_std=list(LAVIS_STD), resample=3
    )  # fmt: skip (3: bicubic, as LAVIS)
    Blip2Processor(image_processor=images, tokenizer=tok, num_query_tokens=config.num_query_tokens).save_pretrained(out)
    return Path(out)
