"""Tiny random-weight BLIP-2 (OPT or T5), CLIP and MiniGPT-4 models saved like the published ones, so
the loading, scoring and captioning paths run in tests and the demo without downloads."""

from __future__ import annotations

import string
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    Blip2Config,
    Blip2ForConditionalGeneration,
    Blip2Processor,
    Blip2QFormerConfig,
    Blip2VisionConfig,
    OPTConfig,
    PreTrainedTokenizerFast,
    T5Config,
)
from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

WORDS = [
    "a",
    "an",
    "the",
    "of",
    "in",
    "on",
    "with",
    "and",
    "is",
    "are",
    "person",
    "people",
    "man",
    "woman",
    "video",
    "frame",
    "shows",
    "doing",
    "playing",
    "yes",
    "no",
    "Yes",
    "No",
]


def word_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer over a few English words and the letters (enough for tiny captions)."""
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, "<image>": 3}
    for w in [*WORDS, *string.ascii_lowercase]:
        vocab.setdefault(w, len(vocab))
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                   bos_token="</s>")  # fmt: skip


def tiny_blip2(folder: str | Path, language_model: str = "opt", seed: int = 0) -> Path:
    """Save a random tiny BLIP-2 (``opt`` decoder-only or ``t5`` encoder-decoder) with its processor."""
    tok = word_tokenizer()
    n = len(tok)
    if language_model == "opt":
        text = OPTConfig(vocab_size=n, hidden_size=32, num_hidden_layers=1, ffn_dim=64, num_attention_heads=2,
                         word_embed_proj_dim=32, max_position_embeddings=64, pad_token_id=0, bos_token_id=1,
                         eos_token_id=1)  # fmt: skip
    elif language_model == "t5":
        text = T5Config(vocab_size=n, d_model=32, d_ff=64, d_kv=16, num_layers=1, num_heads=2, pad_token_id=0,
                        eos_token_id=1, decoder_start_token_id=0)  # fmt: skip
    else:
        raise ValueError(f"language_model must be 'opt' or 't5', got {language_model!r}")
    cfg = Blip2Config(
        vision_config=Blip2VisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                        num_attention_heads=2, image_size=32, patch_size=8).to_dict(),
        qformer_config=Blip2QFormerConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                          intermediate_size=64, encoder_hidden_size=32, vocab_size=64).to_dict(),
        text_config=text.to_dict(), num_query_tokens=4, image_token_index=3,
    )  # fmt: skip
    torch.manual_seed(seed)
    folder = Path(folder)
    Blip2ForConditionalGeneration(cfg).save_pretrained(folder)
    image_proc = BlipImageProcessorPil(size={"height": 32, "width": 32})
    Blip2Processor(image_processor=image_proc, tokenizer=tok, num_query_tokens=4).save_pretrained(folder)
    return folder


def tiny_clip(folder: str | Path, seed: int = 0) -> Path:
    """Save a random tiny transformers CLIPModel with a word tokenizer and its preprocessing values."""
    from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPVisionConfig

    tok = word_tokenizer()
    cfg = CLIPConfig(
        text_config=CLIPTextConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                   num_attention_heads=2, max_position_embeddings=32, pad_token_id=0,
                                   bos_token_id=1, eos_token_id=1).to_dict(),
        vision_config=CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                       num_attention_heads=2, image_size=32, patch_size=8).to_dict(),
        projection_dim=16,
    )  # fmt: skip
    torch.manual_seed(seed)
    folder = Path(folder)
    CLIPModel(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(
        '{"image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711]}'
    )
    return folder


def tiny_minigpt4(folder: str | Path, seed: int = 0) -> dict[str, Path]:
    """The three published pieces of MiniGPT-4 at tiny size: a BLIP-2 folder, a LLaMA folder and a
    ``{"model": {"llama_proj.weight", "llama_proj.bias"}}`` checkpoint. Returns their paths."""
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = Path(folder)
    blip2 = tiny_blip2(folder / "blip2", "opt", seed)
    tok = word_tokenizer()
    torch.manual_seed(seed + 1)
    llm_cfg = LlamaConfig(vocab_size=len(tok), hidden_size=48, intermediate_size=96, num_hidden_layers=1,
                          num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                          pad_token_id=0, bos_token_id=1, eos_token_id=1)  # fmt: skip
    LlamaForCausalLM(llm_cfg).save_pretrained(folder / "llm")
    tok.save_pretrained(folder / "llm")
    qformer_hidden = Blip2Config.from_pretrained(blip2).qformer_config.hidden_size
    proj = torch.nn.Linear(qformer_hidden, llm_cfg.hidden_size)
    torch.save({"model": {f"llama_proj.{k}": v for k, v in proj.state_dict().items()}}, folder / "minigpt4.pth")
    return {"blip2": blip2, "llm": folder / "llm", "checkpoint": folder / "minigpt4.pth"}
