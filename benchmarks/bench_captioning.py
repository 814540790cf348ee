"""Model throughput of the curation stages at real size (random weights), against the one-at-a-time loop.

What the model actors of ``short-videos`` and ``long-videos`` do, per GPU, measured in one run beside
the plain loop that LAVIS's examples show (preprocess one image, ``generate`` for it, next image):

* BLIP-2 OPT-2.7b (ViT-g + Q-Former + OPT-2.7b, fp16): captions/s, 30 new tokens each, greedy;
* CLIP ViT-L/14 (fp16): frames scored/s against a label;
* MiniGPT-4 with a 7B LLaMA (ViT-g + Q-Former + Vicuna-7B size, fp16): relevance questions/s (P(yes)
  from one forward pass; the loop generates the answer as MiniGPT-4's demo does) and captions/s.

Random weights built from the published configurations; a word-level tokenizer stands in for the
real ones (the work per token is the same). Images: 256x340 RGB frames. Needs a GPU.

    python -m benchmarks.bench_captioning [--json OUT.json] [--quick]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

import numpy as np
import torch

from benchmarks.common import environment, per_second
from curation.models.blip2 import Blip2Captioner
from curation.models.clip import ClipScorer, clip_features
from curation.models.minigpt4 import MiniGPT4
from curation.models.tiny import word_tokenizer

DT = torch.float16
DEV = torch.device("cuda")


def timed(fn: Callable[[], object], n: int) -> float:
    """Items per second of ``fn`` (which handles ``n`` items), after one warm-up call."""
    return per_second(fn, n, warmup=1, cuda=True)


def frames(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (256, 340, 3), dtype=np.uint8) for _ in range(n)]


def build(cls, cfg):
    """Random weights straight on the GPU in half precision."""
    torch.manual_seed(0)
    old = torch.get_default_dtype()
    torch.set_default_dtype(DT)
    try:
        with DEV:
            return cls(cfg).eval()
    finally:
        torch.set_default_dtype(old)


def blip2_opt27b():
    from transformers import Blip2Config, Blip2ForConditionalGeneration, Blip2Processor, OPTConfig
    from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

    tok = word_tokenizer()
    opt = OPTConfig(vocab_size=50272, hidden_size=2560, num_hidden_layers=32, ffn_dim=10240, num_attention_heads=32,
                    word_embed_proj_dim=2560, max_position_embeddings=2048, pad_token_id=0, bos_token_id=1,
                    eos_token_id=1)  # fmt: skip
    cfg = Blip2Config(text_config=opt.to_dict(), num_query_tokens=32, image_token_index=3)  # ViT-g, Q-Former defaults
    model = build(Blip2ForConditionalGeneration, cfg)
    proc = Blip2Processor(image_processor=BlipImageProcessorPil(size={"height": 224, "width": 224}), tokenizer=tok,
                          num_query_tokens=32)  # fmt: skip
    return model, proc


def bench_blip2(n_batched: int, n_loop: int, batch: int) -> dict:
    model, proc = blip2_opt27b()
    imgs, prompt = frames(n_batched), "Question: What is happening in this picture of playing guitar? Answer:"
    cap = Blip2Captioner(model, proc, DEV, max_new_tokens=30, batch_size=batch, name="blip2-opt-2.7b-random")

    def loop() -> None:  # LAVIS example: one image through the processor and generate at a time
        for img in imgs[:n_loop]:
            x = proc(images=[img], text=[prompt], return_tensors="pt").to(DEV)
            x["pixel_values"] = x["pixel_values"].to(DT)
            model.generate(**x, max_new_tokens=30, do_sample=False)

    res = {
        "params_B": sum(p.numel() for p in model.parameters()) / 1e9,
        "batched_per_s": timed(lambda: cap.caption(imgs, [prompt] * len(imgs)), n_batched),
        "loop_per_s": timed(loop, n_loop), "batch_size": batch, "oom_retries": cap.stats.oom_retries,
    }  # fmt: skip
    return res


def bench_clip(n_batched: int, n_loop: int, batch: int) -> dict:
    from transformers import CLIPConfig, CLIPModel
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    tok = word_tokenizer()
    cfg = CLIPConfig(
        text_config={"vocab_size": 49408, "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                     "num_attention_heads": 12, "max_position_embeddings": 77, "projection_dim": 768},
        vision_config={"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24,
                       "num_attention_heads": 16, "image_size": 224, "patch_size": 14, "projection_dim": 768},
        projection_dim=768,
    )  # fmt: skip
    model = build(CLIPModel, cfg)

    def encode_text(texts: list[str]) -> torch.Tensor:
        ids = tok(texts, padding=True, return_tensors="pt")
        return clip_features(model.get_text_features(input_ids=ids["input_ids"].to(DEV),
                                                 attention_mask=ids["attention_mask"].to(DEV)))  # fmt: skip

    scorer = ClipScorer(lambda x: clip_features(model.get_image_features(pixel_values=x)), encode_text, 224,
                        device=DEV, dtype=DT, batch_size=batch, name="clip-vit-l-14-random")  # fmt: skip
    proc = CLIPImageProcessorPil(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224})
    imgs = frames(n_batched)

    def loop() -> None:  # one frame at a time: PIL preprocessing, encode image and label, cosine
        with torch.no_grad():
            for img in imgs[:n_loop]:
                pix = proc(images=[img], return_tensors="pt")["pixel_values"].to(DEV, DT)
                a = clip_features(model.get_image_features(pixel_values=pix))
                b = encode_text(["playing guitar"])
                torch.nn.functional.cosine_similarity(a, b).item()

    res = {
        "params_B": sum(p.numel() for p in model.parameters()) / 1e9,
        "batched_per_s": timed(lambda: scorer.score(imgs, ["playing guitar"] * len(imgs)), n_batched),
        "loop_per_s": timed(loop, n_loop), "batch_size": batch,
    }  # fmt: skip
    return res


def minigpt4_7b(batch: int) -> MiniGPT4:
    from transformers import Blip2Config, Blip2QFormerModel, Blip2VisionModel, LlamaConfig, LlamaForCausalLM

    tok = word_tokenizer()
    b2 = Blip2Config()
    llm = build(LlamaForCausalLM, LlamaConfig(vocab_size=32000, hidden_size=4096, intermediate_size=11008,
                                              num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
                                              max_position_embeddings=2048, pad_token_id=0, bos_token_id=1,
                                              eos_token_id=1))  # fmt: skip
    vision, qformer = build(Blip2VisionModel, b2.vision_config), build(Blip2QFormerModel, b2.qformer_config)
    query = torch.randn(1, 32, b2.qformer_config.hidden_size, device=DEV, dtype=DT) * 0.02
    m = MiniGPT4(vision, qformer, query, llm, tok, 224, max_new_tokens=30, batch_size=batch, name="minigpt4-7b-random")
    return m.to(DEV, DT).eval()


def bench_minigpt4(n_batched: int, n_loop: int, batch: int) -> dict:
    m = minigpt4_7b(batch)
    imgs = frames(n_batched)
    q = "Is this picture related to playing guitar? Answer yes or no."
    c = "Describe what is happening in this picture of playing guitar in one sentence."

    def loop(question: str, k: int) -> Callable[[], None]:  # MiniGPT-4's demo: one image, generate, next
        def run() -> None:
            old, m.batch_size = m.batch_size, 1
            try:
                m.ask(imgs[:k], [question] * k)
            finally:
                m.batch_size = old

        return run

    res = {
        "params_B": sum(p.numel() for p in m.parameters()) / 1e9,
        "relevance_batched_per_s": timed(lambda: m.p_yes(imgs, [q] * len(imgs)), n_batched),
        "relevance_loop_per_s": timed(loop(q, n_loop), n_loop),
        "caption_batched_per_s": timed(lambda: m.ask(imgs[: n_batched // 2], [c] * (n_batched // 2)), n_batched // 2),
        "caption_loop_per_s": timed(loop(c, n_loop), n_loop), "batch_size": batch,
    }  # fmt: skip
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--quick", action="store_true", help="fewer items (a smoke run)")
    ap.add_argument("--only", choices=["blip2", "clip", "minigpt4"], action="append")
    a = ap.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("needs a GPU")
    k = 4 if a.quick else 1
    out = environment()
    only = a.only or ["blip2", "clip", "minigpt4"]
    if "blip2" in only:
        out["blip2_opt_2.7b"] = bench_blip2(256 // k, 16 // k, 64)
        torch.cuda.empty_cache()  # the models of one part are gone before the next is built
    if "clip" in only:
        out["clip_vit_l_14"] = bench_clip(1024 // k, 128 // k, 256)
        torch.cuda.empty_cache()
    if "minigpt4" in only:
        out["minigpt4_7b"] = bench_minigpt4(128 // k, 8 // k, 32)
    print(json.dumps(out, indent=2))
    for name, r in out.items():
        if isinstance(r, dict):
            for key in [x for x in r if x.endswith("batched_per_s")]:
                loop = r[key.replace("batched", "loop")]
                print(f"{name:16s} {key:28s} {r[key]:8.1f}/s  loop {loop:7.1f}/s  x{r[key] / loop:5.1f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
