"""CLIP image-text similarity, batched on the GPU: open_clip (model name + pretrained file) or a
transformers CLIPModel folder.

Preprocessing runs on the device as tensors (short side resized to the model's input size with
bicubic filtering, centre crop, the model's mean/std), the same steps as open_clip's and OpenAI's
PIL transforms, without a round trip through PIL per frame. Text embeddings are cached per text:
a long video scores hundreds of frames against one label.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from curation.models.batching import BatchStats, run_batched
from curation.models.preprocess import OPENAI_MEAN, OPENAI_STD, images_to_batch


def clip_features(out) -> torch.Tensor:
    """Projected embeddings from CLIPModel.get_*_features: a tensor before transformers 5, an output with
    ``pooler_output`` since."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


class ClipScorer:
    """Cosine similarity between images and texts (one text per image, e.g. the video's label)."""

    def __init__(
        self,
        encode_image: Callable[[torch.Tensor], torch.Tensor],
        encode_text: Callable[[list[str]], torch.Tensor],
        image_size: int,
        mean: Sequence[float] = OPENAI_MEAN,
        std: Sequence[float] = OPENAI_STD,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        batch_size: int = 256,
        name: str = "clip",
    ):
        self.encode_image, self.encode_text = encode_image, encode_text
        self.image_size = image_size
        self.device, self.dtype = torch.device(device), dtype
        self.mean, self.std = tuple(mean), tuple(std)
        self.batch_size = batch_size
        self.name = name
        self.stats = BatchStats()
        self._text_cache: dict[str, torch.Tensor] = {}

    # -- loading -----------------------------------------------------------------------------------
    @classmethod
    def from_open_clip(
        cls, model_name: str, pretrained: str | None, device: str = "cuda", dtype: torch.dtype = torch.float16, **kw
    ) -> ClipScorer:
        """``open_clip.create_model(model_name, pretrained=<file>)``, e.g. ``ViT-L-14`` with a local
        ``open_clip_pytorch_model.bin`` (or a tag such as ``openai`` where there is network); or
        ``local-dir:FOLDER`` with no ``pretrained``: open_clip's own folder layout (``open_clip_config.json`` with
        the model and preprocessing config, and the weights), which needs no model name registered anywhere."""
        import open_clip

        if pretrained is not None and os.path.sep in pretrained and not os.path.isfile(pretrained):
            raise FileNotFoundError(f"{pretrained}: no such CLIP weights file (open_clip model {model_name})")
        if model_name.startswith("local-dir:") and not os.path.isfile(
            os.path.join(model_name[len("local-dir:") :], "open_clip_config.json")
        ):
            raise FileNotFoundError(f"{model_name}: no open_clip_config.json in that folder")
        model = open_clip.create_model(model_name, pretrained=pretrained, device=device).eval().to(dtype)
        tokenizer = open_clip.get_tokenizer(model_name)
        cfg = getattr(model.visual, "preprocess_cfg", {}) or {}
        size = model.visual.image_size
        size = size[0] if isinstance(size, (tuple, list)) else size
        dev = torch.device(device)
        return cls(
            lambda x: model.encode_image(x),
            lambda texts: model.encode_text(tokenizer(texts).to(dev)),
            int(size), cfg.get("mean", OPENAI_MEAN), cfg.get("std", OPENAI_STD), device, dtype,
            name=f"open_clip:{model_name}" + (f":{os.path.basename(pretrained)}" if pretrained else ""), **kw,
        )  # fmt: skip

    @classmethod
    def from_transformers(cls, path: str, device: str = "cuda", dtype: torch.dtype = torch.float16, **kw) -> ClipScorer:
        """A transformers CLIPModel folder (e.g. openai/clip-vit-large-patch14, laion/CLIP-ViT-H-14-...)."""
        from transformers import AutoTokenizer, CLIPModel

        local = os.path.isdir(path)
        try:
            model = CLIPModel.from_pretrained(path, dtype=dtype, local_files_only=local).to(device).eval()
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=local)
        except (OSError, ValueError) as e:
            raise FileNotFoundError(f"{path}: no CLIP model there (a transformers CLIPModel folder): {e}") from e
        mean, std = OPENAI_MEAN, OPENAI_STD
        pre = os.path.join(path, "preprocessor_config.json")
        if local and os.path.isfile(pre):
            with open(pre) as f:
                p = json.load(f)
            mean, std = p.get("image_mean", mean), p.get("image_std", std)
        dev = torch.device(device)
        max_len = model.config.text_config.max_position_embeddings

        def encode_text(texts: list[str]) -> torch.Tensor:
            tok = tokenizer(texts, padding=True, truncation=True, max_length=max_len, return_tensors="pt")
            return clip_features(model.get_text_features(**{k: v.to(dev) for k, v in tok.items()}))

        return cls(
            lambda x: clip_features(model.get_image_features(pixel_values=x)), encode_text,
            model.config.vision_config.image_size, mean, std, device, dtype,
            name=os.path.basename(os.path.normpath(path)), **kw,
        )  # fmt: skip

    # -- scoring -----------------------------------------------------------------------------------
    def preprocess(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """Frames -> the model's normalised input on the device (short side, bicubic, centre crop)."""
        return images_to_batch(images, self.image_size, self.mean, self.std, self.device, self.dtype, crop=True)

    def embed_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """L2-normalised float32 text embeddings ``[N, D]``, cached per text."""
        new = sorted({t for t in texts if t not in self._text_cache})
        if new:
            with torch.no_grad():
                emb = F.normalize(self.encode_text(new).float(), dim=-1)
            self._text_cache.update(zip(new, emb, strict=True))
        return torch.stack([self._text_cache[t] for t in texts])

    @torch.no_grad()
    def _embed(self, images: Sequence[np.ndarray]) -> list[torch.Tensor]:
        return list(F.normalize(self.encode_image(self.preprocess(images)).float(), dim=-1))

    def embed_images(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """L2-normalised float32 image embeddings ``[N, D]``, ``batch_size`` images at a time (halved on OOM)."""
        return torch.stack(run_batched(self._embed, list(images), self.batch_size, self.stats))

    def score(self, images: Sequence[np.ndarray], texts: Sequence[str]) -> np.ndarray:
        """Cosine similarity of each image with its text, batched ``batch_size`` images at a time."""
        if len(images) != len(texts):
            raise ValueError(f"{len(images)} images but {len(texts)} texts")
        if not len(images):
            return np.zeros(0, dtype=np.float32)
        img = self.embed_images(images)
        txt = self.embed_texts(texts).to(img.device)
        return (img * txt).sum(-1).cpu().numpy().astype(np.float32)
