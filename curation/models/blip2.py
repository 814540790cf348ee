"""BLIP-2 captioning through ``transformers`` (Blip2ForConditionalGeneration: OPT-2.7b and FlanT5-XL
variants), batched, in half precision on GPU."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from transformers import Blip2ForConditionalGeneration, Blip2Processor

from curation.models.batching import BatchStats, run_batched


class Blip2Captioner:
    """Images + text prompts -> generated text (the prompt itself is not part of the answer)."""

    def __init__(
        self,
        model: Blip2ForConditionalGeneration,
        processor: Blip2Processor,
        device: str | torch.device = "cpu",
        max_new_tokens: int = 30,
        batch_size: int = 16,
        name: str = "blip2",
    ):
        self.model = model.to(device).eval()
        self.processor = processor
        self.device = torch.device(device)
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.name = name
        self.stats = BatchStats()

    @classmethod
    def from_pretrained(
        cls, path: str, device: str = "cuda", dtype: torch.dtype = torch.float16, **kwargs
    ) -> Blip2Captioner:
        """A local folder (e.g. a copy of Salesforce/blip2-opt-2.7b or blip2-flan-t5-xl) or, with network,
        a hub id."""
        local = os.path.isdir(path)
        hub_id = not local and not os.path.isabs(path) and not path.startswith(".") and path.count("/") == 1
        try:
            if not (local or hub_id):
                raise OSError("not a folder and not a hub id (org/name)")
            processor = Blip2Processor.from_pretrained(path, local_files_only=local)
            model = Blip2ForConditionalGeneration.from_pretrained(path, dtype=dtype, local_files_only=local)
        except (OSError, ValueError) as e:
            raise FileNotFoundError(
                f"{path}: no BLIP-2 model there (give a local copy of Salesforce/blip2-opt-2.7b or "
                f"Salesforce/blip2-flan-t5-xl, or a hub id where there is network): {e}"
            ) from e
        return cls(model, processor, device, name=os.path.basename(os.path.normpath(path)), **kwargs)

    @torch.no_grad()
    def _generate(self, batch: Sequence[tuple[np.ndarray, str]]) -> list[str]:
        images = [Image.fromarray(img) for img, _ in batch]
        inputs = self.processor(images=images, text=[p for _, p in batch], return_tensors="pt", padding=True)
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        if self.model.config.use_decoder_only_language_model:  # OPT returns the prompt tokens first
            out = out[:, inputs["input_ids"].shape[1] :]
        return [t.strip() for t in self.processor.tokenizer.batch_decode(out, skip_special_tokens=True)]

    def caption(self, images: Sequence[np.ndarray], prompts: Sequence[str]) -> list[str]:
        """One answer per ``(image [H, W, 3] uint8, prompt)``, batched across all of them; an out-of-memory
        batch is retried at half the size (``self.stats`` counts it)."""
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images but {len(prompts)} prompts")
        return run_batched(self._generate, list(zip(images, prompts, strict=True)), self.batch_size, self.stats)
