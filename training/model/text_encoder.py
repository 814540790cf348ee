"""SD 2.1's text encoder: the OpenCLIP ViT-H/14 text tower as shipped in the diffusers layout
(``transformers.CLIPTextModel`` + ``CLIPTokenizer``), with the empty-prompt embedding cached for CFG.

Frozen by default (the paper); :meth:`FrozenTextEncoder.set_trainable` lets it fine-tune with the UNet, as the
authors' release did (its checkpoint holds ``text_encoder.*`` weights). Frozen on CUDA, training replays it from
a CUDA graph (:meth:`FrozenTextEncoder.use_cuda_graphs`): at full size its ~560 small launches a step cost the host
far more time (32 ms under the profiler) than they give the GPU (3 ms), and the host is what the loop waits on
(`benchmarks/RESULTS.md`, the training loop's profile)."""

from __future__ import annotations

import torch
from torch import nn
from transformers import CLIPTextModel, CLIPTokenizer

from training.model.cuda_graphs import CUDAGraphed


class FrozenTextEncoder(nn.Module):
    """Prompts -> ``[B, 77, 1024]`` token embeddings (last hidden state, as SD 2.x uses them)."""

    def __init__(self, tokenizer: CLIPTokenizer, text_model: CLIPTextModel):
        super().__init__()
        self.tokenizer = tokenizer
        self.model = text_model.eval().requires_grad_(False)
        self._empty: torch.Tensor | None = None
        self.trainable = False
        self._graphed: CUDAGraphed | None = None

    def set_trainable(self, trainable: bool = True, gradient_checkpointing: bool = False) -> None:
        """Fine-tune the text tower (gradients, dropout as configured) or freeze it again."""
        self.trainable = trainable
        if trainable:
            self._graphed = None  # graphs carry no gradients
        self.model.requires_grad_(trainable)
        if trainable and gradient_checkpointing:
            self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self._empty = None
        self.train(self.training)

    def use_cuda_graphs(self, enabled: bool = True) -> None:
        """While frozen and on CUDA, replay the forward from a CUDA graph per batch shape, autocast state and
        inference mode (captured on first use; same kernels, so the same numbers). Off, or while the encoder
        trains (graphs carry no gradients): plain eager calls."""
        on = enabled and not self.trainable
        self._graphed = CUDAGraphed(self._hidden_states, eager_on_failure=True) if on else None

    def _hidden_states(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model(ids)[0]

    @classmethod
    def from_pretrained(cls, sd_folder: str, torch_dtype: torch.dtype | None = None) -> FrozenTextEncoder:
        """Load ``tokenizer/`` and ``text_encoder/`` from a Stable Diffusion folder in diffusers layout."""
        tok = CLIPTokenizer.from_pretrained(sd_folder, subfolder="tokenizer", local_files_only=True)
        model = CLIPTextModel.from_pretrained(
            sd_folder, subfolder="text_encoder", torch_dtype=torch_dtype, local_files_only=True
        )
        return cls(tok, model)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def forward(self, prompts: list[str]) -> torch.Tensor:
        with torch.set_grad_enabled(self.trainable and torch.is_grad_enabled()):
            return self._encode(prompts)

    def _encode(self, prompts: list[str]) -> torch.Tensor:
        ids = self.tokenizer(
            prompts,
            padding="max_length",
            # The text model's positions are the real limit (77 for SD); some tokenizer configs omit it.
            max_length=self.model.config.max_position_embeddings,
            truncation=True,
            return_tensors="pt",
        ).input_ids
        device = self.device
        if device.type == "cuda":  # a pageable copy would wait for the GPU; training queues steps ahead of it
            ids = ids.pin_memory()
        ids = ids.to(device, non_blocking=True)
        if self._graphed is not None:
            return self._graphed(ids)
        return self._hidden_states(ids)

    def empty(self, batch: int = 1) -> torch.Tensor:
        """The unconditional (empty-prompt) embedding, computed once (every time while it trains)."""
        if self.trainable:
            return self([""]).expand(batch, -1, -1)
        if self._empty is None or self._empty.device != self.device:
            with torch.no_grad():
                self._empty = self([""])
        return self._empty.expand(batch, -1, -1)

    def train(self, mode: bool = True) -> FrozenTextEncoder:
        # Frozen: stays in eval mode whatever the enclosing module does.
        return super().train(mode and self.trainable)
