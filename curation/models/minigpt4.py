"""MiniGPT-4 (Zhu et al. 2023) for relevance questions and segment captions, batched.

The model is BLIP-2's frozen vision side (EVA-ViT-g with its final LayerNorm, the Q-Former and its 32
query tokens), one linear projection into the language model's embedding space, and a Vicuna/LLaMA
language model. It is assembled from the published pieces:

* ``blip2``: a transformers BLIP-2 folder; only ``vision_model``, ``qformer`` and ``query_tokens`` are
  read (MiniGPT-4 was trained on the Q-Former of BLIP-2 FlanT5-XXL: Salesforce/blip2-flan-t5-xxl);
* ``llm``: a transformers causal LM folder (Vicuna-7B v0, as MiniGPT-4's 7B checkpoint expects);
* ``checkpoint``: MiniGPT-4's released ``pretrained_minigpt4_7b.pth`` (``{"model": {"llama_proj.weight",
  "llama_proj.bias", ...}}``); only the projection is taken from it.

Prompts follow MiniGPT-4's Vicuna-v0 conversation format, with the image's 32 projected query
embeddings in place of ``<ImageHere>``. Relevance is read from one forward pass: the probability of
"yes" against "no" as the answer's first token, so a frame costs one LLM step, not a generation.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from curation.models.batching import BatchStats, run_batched
from curation.models.preprocess import OPENAI_MEAN, OPENAI_STD, images_to_batch

SYSTEM = (
    "Give the following image: <Img>ImageContent</Img>. You will be able to see the image once I provide it "
    "to you. Please answer my questions."
)
IMAGE_SLOT = "<ImageHere>"
STOP = "###"


def conversation(question: str) -> str:
    """MiniGPT-4's single-turn prompt around one image."""
    return f"{SYSTEM}###Human: <Img>{IMAGE_SLOT}</Img> {question}###Assistant:"


def _read_prefixed(folder: str, prefixes: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Tensors whose names start with ``prefixes`` from a transformers folder (one or sharded safetensors)."""
    from safetensors import safe_open

    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.isfile(index):
        with open(index) as f:
            files = sorted({v for k, v in json.load(f)["weight_map"].items() if k.startswith(prefixes)})
    else:
        files = ["model.safetensors"]
    out: dict[str, torch.Tensor] = {}
    for name in files:
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: missing (a transformers BLIP-2 folder with safetensors weights)")
        with safe_open(path, "pt") as f:
            for k in f.keys():  # noqa: SIM118 (safe_open is not iterable)
                if k.startswith(prefixes):
                    out[k] = f.get_tensor(k)
    return out


class MiniGPT4(nn.Module):
    """Images + questions -> answers, and P(yes) for yes/no questions."""

    def __init__(
        self,
        vision: nn.Module,
        qformer: nn.Module,
        query_tokens: torch.Tensor,
        llm: nn.Module,
        tokenizer,
        image_size: int = 224,
        max_new_tokens: int = 40,
        batch_size: int = 16,
        name: str = "minigpt4",
    ):
        super().__init__()
        self.vision, self.qformer, self.llm = vision, qformer, llm
        self.query_tokens = nn.Parameter(query_tokens)
        self.llama_proj = nn.Linear(query_tokens.shape[-1], llm.config.hidden_size)
        self.tokenizer = tokenizer
        self.image_size, self.max_new_tokens, self.batch_size, self.name = image_size, max_new_tokens, batch_size, name
        self.stats = BatchStats()
        self.yes_ids = self._first_tokens(("Yes", "yes", " Yes", " yes"))
        self.no_ids = self._first_tokens(("No", "no", " No", " no"))

    def _first_tokens(self, words: Sequence[str]) -> list[int]:
        """The first token of each spelling of an answer word (unknown tokens left out)."""
        ids = set()
        for w in words:
            t = self.tokenizer(w, add_special_tokens=False)["input_ids"]
            if t and t[0] != self.tokenizer.unk_token_id:
                ids.add(t[0])
        if not ids:
            raise ValueError(f"the tokenizer has no token for {list(words)}")
        return sorted(ids)

    # -- loading -----------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, blip2: str, llm: str, checkpoint: str, device: str = "cuda",
                        dtype: torch.dtype = torch.float16, **kw) -> MiniGPT4:  # fmt: skip
        """Assemble from a BLIP-2 folder, a Vicuna/LLaMA folder and MiniGPT-4's projection checkpoint."""
        from transformers import AutoModelForCausalLM, AutoTokenizer, Blip2Config, Blip2QFormerModel, Blip2VisionModel

        for path, what in ((blip2, "BLIP-2 folder"), (llm, "language model folder"), (checkpoint, "MiniGPT-4 .pth")):
            if not os.path.exists(path):
                raise FileNotFoundError(f"{path}: no such {what} (see README, 'Weights')")
        cfg = Blip2Config.from_pretrained(blip2)
        state = _read_prefixed(blip2, ("vision_model.", "qformer.", "query_tokens"))
        with torch.device("meta"):
            vision, qformer = Blip2VisionModel(cfg.vision_config), Blip2QFormerModel(cfg.qformer_config)
        vision.load_state_dict({k[13:]: v for k, v in state.items() if k.startswith("vision_model.")}, assign=True)
        qformer.load_state_dict({k[8:]: v for k, v in state.items() if k.startswith("qformer.")}, assign=True)
        lm = AutoModelForCausalLM.from_pretrained(llm, dtype=dtype)
        tok = AutoTokenizer.from_pretrained(llm)
        model = cls(vision, qformer, state["query_tokens"], lm, tok, cfg.vision_config.image_size, **kw)
        ck = torch.load(checkpoint, map_location="cpu", weights_only=True)
        ck = ck.get("model", ck)
        proj = {k.removeprefix("llama_proj."): v for k, v in ck.items() if k.startswith("llama_proj.")}
        if set(proj) != {"weight", "bias"}:
            raise ValueError(f"{checkpoint}: no llama_proj.weight/bias (is it a MiniGPT-4 checkpoint?)")
        model.llama_proj.load_state_dict(proj)
        model.name = f"minigpt4:{os.path.basename(os.path.normpath(llm))}"
        return model.to(device=device, dtype=dtype).eval()

    # -- forward pieces ----------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.llama_proj.weight.device

    def image_embeds(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """``[N, num_query_tokens, llm_hidden]``: what stands in the prompt for each image."""
        dtype = self.llama_proj.weight.dtype
        x = images_to_batch(images, self.image_size, OPENAI_MEAN, OPENAI_STD, self.device, dtype, crop=False)
        v = self.vision(pixel_values=x).last_hidden_state
        q = self.query_tokens.expand(v.shape[0], -1, -1)
        mask = torch.ones(v.shape[:-1], dtype=torch.long, device=v.device)
        out = self.qformer(query_embeds=q, encoder_hidden_states=v, encoder_attention_mask=mask).last_hidden_state
        return self.llama_proj(out)

    def _prompt_embeds(self, images: Sequence[np.ndarray], questions: Sequence[str]):
        """Left-padded prompt embeddings and attention mask for a batch."""
        img = self.image_embeds(images)
        embed = self.llm.get_input_embeddings()
        seqs = []
        for i, q in enumerate(questions):
            before, after = conversation(q).split(IMAGE_SLOT)
            a = self.tokenizer(before, return_tensors="pt")["input_ids"][0].to(self.device)  # with BOS
            b = self.tokenizer(after, add_special_tokens=False, return_tensors="pt")["input_ids"][0].to(self.device)
            seqs.append(torch.cat([embed(a), img[i], embed(b)]))
        n = max(len(s) for s in seqs)
        emb = img.new_zeros(len(seqs), n, img.shape[-1])
        mask = torch.zeros(len(seqs), n, dtype=torch.long, device=self.device)
        for i, s in enumerate(seqs):
            emb[i, n - len(s) :] = s
            mask[i, n - len(s) :] = 1
        return emb, mask

    @torch.no_grad()
    def _answer(self, batch: Sequence[tuple[np.ndarray, str]]) -> list[str]:
        emb, mask = self._prompt_embeds([b[0] for b in batch], [b[1] for b in batch])
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        out = self.llm.generate(inputs_embeds=emb, attention_mask=mask, max_new_tokens=self.max_new_tokens,
                                do_sample=False, pad_token_id=pad)  # fmt: skip
        texts = self.tokenizer.batch_decode(out, skip_special_tokens=True)
        return [t.split(STOP)[0].strip() for t in texts]

    @torch.no_grad()
    def _p_yes(self, batch: Sequence[tuple[np.ndarray, str]]) -> list[float]:
        emb, mask = self._prompt_embeds([b[0] for b in batch], [b[1] for b in batch])
        pos = mask.cumsum(-1) - 1
        logits = self.llm(inputs_embeds=emb, attention_mask=mask, position_ids=pos.clamp(min=0)).logits[:, -1].float()
        yes = torch.logsumexp(logits[:, self.yes_ids], -1)
        no = torch.logsumexp(logits[:, self.no_ids], -1)
        return torch.sigmoid(yes - no).cpu().tolist()

    # -- public ------------------------------------------------------------------------------------
    def ask(self, images: Sequence[np.ndarray], questions: Sequence[str]) -> list[str]:
        """One generated answer per (image, question), batched; OOM halves the batch (``self.stats``)."""
        if len(images) != len(questions):
            raise ValueError(f"{len(images)} images but {len(questions)} questions")
        return run_batched(self._answer, list(zip(images, questions, strict=True)), self.batch_size, self.stats)

    def p_yes(self, images: Sequence[np.ndarray], questions: Sequence[str]) -> np.ndarray:
        """P("yes") / (P("yes") + P("no")) as the first answer token, per (image, yes/no question)."""
        if len(images) != len(questions):
            raise ValueError(f"{len(images)} images but {len(questions)} questions")
        got = run_batched(self._p_yes, list(zip(images, questions, strict=True)), self.batch_size, self.stats)
        return np.asarray(got, dtype=np.float32)
