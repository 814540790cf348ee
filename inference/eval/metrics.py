"""FVD (Fréchet distance of I3D features), video IS and CLIP similarity, in float64."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class FeatureStats:
    """Mean and covariance of a feature set (what FVD compares); cached as ``.npz``."""

    mu: np.ndarray
    sigma: np.ndarray
    count: int

    @classmethod
    def of(cls, feats: np.ndarray) -> FeatureStats:
        f = np.asarray(feats, dtype=np.float64)
        if f.ndim != 2 or len(f) < 2:
            raise ValueError(f"need [N >= 2, D] features, got {f.shape}")
        return cls(f.mean(0), np.cov(f, rowvar=False), len(f))

    def save(self, path: str | Path) -> None:
        np.savez(path, mu=self.mu, sigma=self.sigma, count=self.count)

    @classmethod
    def load(cls, path: str | Path) -> FeatureStats:
        d = np.load(path)
        return cls(d["mu"], d["sigma"], int(d["count"]))


def _sqrt_psd(a: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((a + a.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(a: FeatureStats, b: FeatureStats) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)), in float64.

    Tr((S_a S_b)^(1/2)) is taken as the sum of square roots of the eigenvalues of the symmetric
    S_a^(1/2) S_b S_a^(1/2) (same spectrum), which stays real and stable where ``sqrtm`` of the
    non-symmetric product can return complex noise.
    """
    s = _sqrt_psd(a.sigma)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(s @ b.sigma @ s), 0, None)).sum()
    diff = a.mu - b.mu
    return float(diff @ diff + np.trace(a.sigma) + np.trace(b.sigma) - 2 * cross)


def inception_score(probs: np.ndarray, splits: int = 10) -> tuple[float, float]:
    """exp(E_x KL(p(y|x) || p(y))) over ``splits`` equal parts: (mean, std), as TGAN reports it."""
    p = np.asarray(probs, dtype=np.float64)
    if len(p) < splits:
        raise ValueError(f"{len(p)} videos cannot make {splits} splits")
    scores = []
    for part in np.array_split(p, splits):
        py = part.mean(0, keepdims=True)
        kl = (part * (np.log(part + 1e-12) - np.log(py + 1e-12))).sum(1)
        scores.append(float(np.exp(kl.mean())))
    return float(np.mean(scores)), float(np.std(scores))


class ClipSimilarity:
    """CLIPSIM: mean cosine similarity between each frame and the prompt, x100 is not applied (0..1 scale).

    CLIP from a local folder in Hugging Face layout (e.g. openai/clip-vit-large-patch14 or
    laion/CLIP-ViT-H-14-laion2B-s32B-b79K), through ``transformers``.
    """

    def __init__(self, path: str | Path, device: str = "cpu", batch: int = 64):
        import torch
        from transformers import CLIPModel, CLIPProcessor

        if not Path(path, "config.json").is_file():
            raise FileNotFoundError(f"{path}: no CLIP model folder (config.json, weights, tokenizer, preprocessor)")
        self.torch = torch
        self.model = CLIPModel.from_pretrained(str(path), local_files_only=True).to(device).eval()
        self.proc = CLIPProcessor.from_pretrained(str(path), local_files_only=True)
        self.device, self.batch = device, batch

    def __call__(self, video: np.ndarray, prompt: str) -> float:
        """``[F, H, W, 3]`` uint8 and its prompt -> mean frame-text cosine similarity."""
        t = self.torch
        with t.no_grad():
            ids = self.proc(text=[prompt], return_tensors="pt", padding=True, truncation=True)
            txt = self.model.get_text_features(**{k: v.to(self.device) for k, v in ids.items()})
            txt = txt if isinstance(txt, t.Tensor) else txt.pooler_output
            txt = t.nn.functional.normalize(txt.float(), dim=-1)
            sims = []
            for i in range(0, len(video), self.batch):
                px = self.proc(images=list(video[i : i + self.batch]), return_tensors="pt")["pixel_values"]
                img = self.model.get_image_features(pixel_values=px.to(self.device))
                img = img if isinstance(img, t.Tensor) else img.pooler_output
                sims.append((t.nn.functional.normalize(img.float(), dim=-1) @ txt.T).squeeze(1))
            return float(t.cat(sims).mean())
