"""Runs inside the LAVIS environment (``vidrd env lavis``), never in the project's own: it imports only torch,
numpy, LAVIS and LAVIS's pinned transformers, and talks to the project through files.

    python lavis_side.py tiny --out DIR             a random tiny LAVIS BLIP-2 OPT built with no network
    python lavis_side.py reference --model DIR --image NPY --out NPZ
                                                    LAVIS's own outputs for the converter's check
    python lavis_side.py serve --model NAME:TYPE [--device cuda]
                                                    caption requests on stdin, answers on stdout (the LAVIS backend
                                                    of ``short-videos``; ``curation.models.lavis_blip2``), with
                                                    ``tiny:DIR`` a model made by ``tiny``

How ``tiny`` builds a BLIP-2 offline (LAVIS fetches three things on init): ``bert-base-uncased`` (the Q-Former's
config, weights and tokenizer) is a tiny random BERT written into a private Hugging Face cache under DIR/hf,
read with ``HF_HUB_OFFLINE=1``; EVA ViT-g (downloaded by ``create_eva_vit_g``) is replaced by LAVIS's own
``VisionTransformer`` class at tiny width; the OPT language model is a tiny random ``OPTForCausalLM`` folder with
a byte-level tokenizer, passed as ``opt_model``. Every weight is then drawn at random (LAVIS starts the ViT's
q/v biases at zero; random ones make the converter's bias merge show).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from functools import partial
from pathlib import Path

import numpy as np
import torch

TINY = {
    "image_size": 28, "patch_size": 14, "vision_width": 64, "vision_depth": 2, "vision_heads": 4,
    "mlp_ratio": 4.3637, "qformer_width": 32, "qformer_layers": 2, "qformer_heads": 4, "qformer_intermediate": 64,
    "num_query_token": 4, "opt_width": 32, "opt_layers": 2, "opt_heads": 4, "opt_ffn": 64,
}  # fmt: skip
BERT_WORDS = ["[PAD]", "[unused0]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "the", "video", "of", "man", "dog"]


def offline(folder: Path) -> None:
    """Read Hugging Face files only from ``folder``/hf (set before transformers is imported: it reads these once)."""
    os.environ["HF_HOME"] = str(folder / "hf")
    os.environ["HF_HUB_OFFLINE"] = os.environ["TRANSFORMERS_OFFLINE"] = "1"


def _hf_cache_entry(hf_home: Path, repo: str, files: Path) -> None:
    """Place ``files`` (a saved model/tokenizer folder) where the hub cache keeps ``repo``'s main revision."""
    root = hf_home / "hub" / f"models--{repo.replace('/', '--')}"
    snap = root / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True, exist_ok=True)
    for f in files.iterdir():
        (snap / f.name).write_bytes(f.read_bytes())
    (root / "refs").mkdir(exist_ok=True)
    (root / "refs" / "main").write_text("0" * 40)


def _byte_vocab() -> tuple[dict[str, int], list[str]]:
    from transformers.models.gpt2.tokenization_gpt2 import bytes_to_unicode

    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for ch in bytes_to_unicode().values():
        vocab.setdefault(ch, len(vocab))
    return vocab, ["#version: 0.2"]


def tiny(out: Path, seed: int = 0) -> dict:
    """Build, randomise and save a tiny LAVIS ``Blip2OPT`` under ``out`` (``model.pth``: its full state dict,
    ``opt/``: the OPT folder, ``dims.json``); returns the dims."""
    from transformers import BertConfig, BertTokenizer, OPTConfig, OPTForCausalLM
    from transformers import BertLMHeadModel as HFBertLMHead

    out.mkdir(parents=True, exist_ok=True)
    d = TINY
    torch.manual_seed(seed)
    bert = out / "bert-files"
    bert.mkdir(exist_ok=True)
    (bert / "vocab.txt").write_text("\n".join(BERT_WORDS) + "\n")
    BertTokenizer(str(bert / "vocab.txt")).save_pretrained(bert)
    cfg = BertConfig(vocab_size=len(BERT_WORDS) + 1, hidden_size=d["qformer_width"],
                     num_hidden_layers=d["qformer_layers"], num_attention_heads=d["qformer_heads"],
                     intermediate_size=d["qformer_intermediate"], max_position_embeddings=64,
                     is_decoder=True)  # fmt: skip
    HFBertLMHead(cfg).save_pretrained(bert)
    _hf_cache_entry(out / "hf", "bert-base-uncased", bert)
    opt = out / "opt"
    vocab, merges = _byte_vocab()
    opt.mkdir(exist_ok=True)
    (opt / "vocab.json").write_text(json.dumps(vocab))
    (opt / "merges.txt").write_text("\n".join(merges) + "\n")
    from transformers import GPT2Tokenizer

    GPT2Tokenizer(str(opt / "vocab.json"), str(opt / "merges.txt"), bos_token="</s>", eos_token="</s>",
                  unk_token="<unk>", pad_token="<pad>", add_bos_token=True).save_pretrained(opt)  # fmt: skip
    (opt / "tokenizer_config.json").write_text(json.dumps(
        {**json.loads((opt / "tokenizer_config.json").read_text()), "tokenizer_class": "GPT2Tokenizer"}))  # fmt: skip
    # more embedding rows than tokens, as OPT has (50272 for 50265): room for the converted model's <image> token
    opt_cfg = OPTConfig(vocab_size=len(vocab) + 12, hidden_size=d["opt_width"], num_hidden_layers=d["opt_layers"],
                        ffn_dim=d["opt_ffn"], num_attention_heads=d["opt_heads"], word_embed_proj_dim=d["opt_width"],
                        max_position_embeddings=128, pad_token_id=1, bos_token_id=2, eos_token_id=2)  # fmt: skip
    OPTForCausalLM(opt_cfg).save_pretrained(opt)
    model = build(out, d)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.2)
    torch.save({"model": model.state_dict()}, out / "model.pth")
    (out / "dims.json").write_text(json.dumps(d))
    return d


def build(out: Path, d: dict):
    """A ``Blip2OPT`` with tiny stand-ins for what LAVIS would download (see the module docstring); the process
    must have started with :func:`offline` for ``out``."""
    import lavis.models.blip2_models.blip2 as blip2
    from lavis.models.blip2_models.blip2_opt import Blip2OPT
    from lavis.models.eva_vit import VisionTransformer

    def tiny_eva(img_size=224, drop_path_rate=0.0, use_checkpoint=False, precision="fp32"):
        return VisionTransformer(img_size=img_size, patch_size=d["patch_size"], use_mean_pooling=False,
                                 embed_dim=d["vision_width"], depth=d["vision_depth"], num_heads=d["vision_heads"],
                                 mlp_ratio=d["mlp_ratio"], qkv_bias=True, drop_path_rate=0.0,
                                 norm_layer=partial(torch.nn.LayerNorm, eps=1e-6))  # fmt: skip

    blip2.create_eva_vit_g = tiny_eva
    model = Blip2OPT(vit_model="eva_clip_g", img_size=d["image_size"], vit_precision="fp32",
                     num_query_token=d["num_query_token"], opt_model=str(out / "opt"))  # fmt: skip
    return model.float().eval()


@torch.no_grad()
def reference(model_dir: Path, image: Path, out: Path, max_length: int = 12) -> None:
    """LAVIS's image embeddings, Q-Former output, first-token logits and greedy caption tokens for ``image``
    (``[B, 3, H, W]`` float32, already normalised), written to ``out`` (npz)."""
    d = json.loads((model_dir / "dims.json").read_text())
    model = build(model_dir, d)
    state = torch.load(model_dir / "model.pth", map_location="cpu")["model"]
    model.load_state_dict(state)
    x = torch.from_numpy(np.load(image))
    image_embeds = model.ln_vision(model.visual_encoder(x))
    atts = torch.ones(image_embeds.shape[:-1], dtype=torch.long)
    queries = model.query_tokens.expand(x.shape[0], -1, -1)
    query = model.Qformer.bert(query_embeds=queries, encoder_hidden_states=image_embeds,
                               encoder_attention_mask=atts, return_dict=True)  # fmt: skip
    inputs_opt = model.opt_proj(query.last_hidden_state)
    tokens = model.opt_tokenizer([""] * x.shape[0], return_tensors="pt")
    embeds = torch.cat([inputs_opt, model.opt_model.get_input_embeddings()(tokens.input_ids)], dim=1)
    mask = torch.cat([torch.ones(inputs_opt.shape[:-1], dtype=torch.long), tokens.attention_mask], dim=1)
    logits = model.opt_model(inputs_embeds=embeds, attention_mask=mask, return_dict=True).logits[:, -1]
    ids = model.opt_model.generate(input_ids=tokens.input_ids, query_embeds=inputs_opt, attention_mask=mask,
                                   do_sample=False, num_beams=1, max_new_tokens=max_length, min_length=1,
                                   eos_token_id=model.eos_token_id)  # fmt: skip
    captions = model.opt_tokenizer.batch_decode(ids[:, tokens.input_ids.shape[1] :], skip_special_tokens=True)
    np.savez(out, image_embeds=image_embeds.numpy(), query_output=query.last_hidden_state.numpy(),
             first_logits=logits.numpy(), prompt_ids=tokens.input_ids.numpy(),
             generated=ids[:, tokens.input_ids.shape[1] :].numpy(), captions=np.array(captions))  # fmt: skip


def read_message(stream) -> object | None:
    """One length-prefixed pickle from ``stream`` (None at end of stream)."""
    import pickle

    head = stream.read(8)
    if len(head) < 8:
        return None
    return pickle.loads(stream.read(int.from_bytes(head, "little")))


def write_message(stream, obj: object) -> None:
    import pickle

    data = pickle.dumps(obj)
    stream.write(len(data).to_bytes(8, "little") + data)
    stream.flush()


def load_for_captions(spec: str, device: str):
    """(model, image processor) for ``NAME:TYPE`` (LAVIS's model zoo) or ``tiny:DIR``."""
    if spec.startswith("tiny:"):
        from lavis.processors.blip_processors import BlipImageEvalProcessor

        folder = Path(spec[len("tiny:") :])
        d = json.loads((folder / "dims.json").read_text())
        model = build(folder, d)
        model.load_state_dict(torch.load(folder / "model.pth", map_location="cpu")["model"])
        return model.to(device), BlipImageEvalProcessor(image_size=d["image_size"])
    from lavis.models import load_model_and_preprocess

    name, model_type = spec.split(":", 1)
    model, vis, _ = load_model_and_preprocess(name=name, model_type=model_type, is_eval=True, device=device)
    return model, vis["eval"]


@torch.no_grad()
def serve(spec: str, device: str) -> int:
    """Answer ``{"images": [uint8 HxWx3], "prompts": [str], "max_new_tokens": n}`` with ``{"captions": [...]}``
    (greedy, one LAVIS ``generate`` per distinct prompt) until stdin closes. LAVIS prints to stdout, so the
    answers go to a duplicate of the original stdout and stdout itself is pointed at stderr."""
    from PIL import Image

    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    model, processor = load_for_captions(spec, device)
    write_message(answers, {"ready": spec})
    die_after = int(os.environ.get("VIDRD_LAVIS_DIE_AFTER", "0"))  # tests: a server that dies mid-run
    served = 0
    while (request := read_message(sys.stdin.buffer)) is not None:
        if die_after and served >= die_after:
            os._exit(3)
        images = [processor(Image.fromarray(np.asarray(im))) for im in request["images"]]
        captions: list[str] = [""] * len(images)
        groups: dict[str, list[int]] = {}
        for i, prompt in enumerate(request["prompts"]):
            groups.setdefault(prompt, []).append(i)
        for prompt, idx in groups.items():
            x = torch.stack([images[i] for i in idx]).to(device)
            got = model.generate({"image": x, "prompt": prompt}, num_beams=1,
                                 max_length=request.get("max_new_tokens", 30), min_length=1)  # fmt: skip
            for i, text in zip(idx, got, strict=True):
                captions[i] = text
        write_message(answers, {"captions": captions})
        served += 1
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("tiny")
    t.add_argument("--out", type=Path, required=True)
    r = sub.add_parser("reference")
    r.add_argument("--model", type=Path, required=True)
    r.add_argument("--image", type=Path, required=True)
    r.add_argument("--out", type=Path, required=True)
    v = sub.add_parser("serve")
    v.add_argument("--model", required=True, help="NAME:TYPE of LAVIS's model zoo, or tiny:DIR")
    v.add_argument("--device", default="cpu")
    a = ap.parse_args(argv)
    if a.cmd == "serve":
        if a.model.startswith("tiny:"):
            offline(Path(a.model[len("tiny:") :]))
        return serve(a.model, a.device)
    offline(a.out if a.cmd == "tiny" else a.model)
    if a.cmd == "tiny":
        print(json.dumps(tiny(a.out)))
    else:
        reference(a.model, a.image, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
