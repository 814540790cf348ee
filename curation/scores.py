"""``vidrd curate scores --shards DIR [DIR ...] --clip SPEC [--aesthetic FILE]``: learned quality signals, on Ray,
where the user has the weights.

- ``clip_score``: cosine similarity between the caption and the mean CLIP embedding of the sample's keyframes
  (the keyframes of ``curation.dedup``), with any CLIP the long-videos stage takes (``open_clip:NAME:FILE``,
  ``open_clip:local-dir:FOLDER``, a transformers folder, ``tiny``).
- ``aesthetic``: the LAION aesthetic predictor, an MLP over the L2-normalised CLIP image embedding
  (:class:`AestheticMLP`, loaded strictly from a local ``.pth``, e.g. ``sac+logos+ava1-l14-linearMSE.pth`` for
  ViT-L/14), applied to the normalised mean keyframe embedding.

The shape is the model stages': CPU tasks decode keyframes per shard, a pool of model actors (one per GPU, or
one on the CPU) batches them, the driver gathers the small result rows. Each set gets ``_scores.parquet``
(``shards.sidecars``) stamped with its index's fingerprint; readers add ``aesthetic`` and ``clip_score`` beside
the index columns (``where: "aesthetic >= 4.5 and clip_score >= 0.25"``). Tars are never rewritten.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from torch import nn

from curation.shard_jobs import (
    NO_FRAMES,
    SPREAD_FRAMES,
    decode_keyframes,
    finalized_indexes,
    indexed_shard_items,
    resize_short,
    sample_rows,
)
from shards.sidecars import SCORES, write_sidecar

SCORES_SCHEMA = pa.schema(
    [
        pa.field("key", pa.string(), nullable=False),
        pa.field("aesthetic", pa.float64()),  # null without an aesthetic model
        pa.field("clip_score", pa.float64()),
    ]
)


class AestheticMLP(nn.Module):
    """The LAION aesthetic predictor's head (improved-aesthetic-predictor): CLIP image embedding -> a 1-10 score.
    Parameter names are the released file's (``layers.0.weight`` ...), so it loads strictly."""

    def __init__(self, dim: int = 768):
        super().__init__()
        self.dim = dim
        self.layers = nn.Sequential(
            nn.Linear(dim, 1024), nn.Dropout(0.2), nn.Linear(1024, 128), nn.Dropout(0.2),
            nn.Linear(128, 64), nn.Dropout(0.1), nn.Linear(64, 16), nn.Linear(16, 1),
        )  # fmt: skip

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        return self.layers(emb).squeeze(-1)

    @classmethod
    def from_file(cls, path: str) -> AestheticMLP:
        """Load a released predictor; a file that is not one is named with the first key that does not fit."""
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: no aesthetic predictor file")
        state = _load_state(path, "not a LAION aesthetic predictor")
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        first = state.get("layers.0.weight") if isinstance(state, dict) else None
        if first is None:
            raise ValueError(f"{path}: not a LAION aesthetic predictor (no layers.0.weight)")
        model = cls(int(first.shape[1]))
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(
                f"{path}: not a LAION aesthetic predictor (missing {missing[:1]}, unexpected {unexpected[:1]})"
            )
        return model.eval()


def read_keyframes(item: dict[str, Any], keyframes: int, size: int) -> list[dict[str, Any]]:
    """One row per sample of a shard: its keyframes at short side ``size`` and its caption, or its error."""

    def work(m: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
        frames = decode_keyframes(m["mp4"], int(meta["frames"]), keyframes)
        return {
            "caption": m["txt"].decode("utf-8", "replace") if "txt" in m else (meta.get("captions") or [""])[0],
            "frames": resize_short(frames, size),
        }

    return sample_rows(item, {"caption": "", "frames": NO_FRAMES}, work)


def mean_embeddings(clip, videos: list[np.ndarray]) -> torch.Tensor:
    """``[N, D]``: each video's keyframe CLIP embeddings averaged, then L2-normalised (one batched CLIP pass)."""
    emb = clip.embed_images([f for frames in videos for f in frames])
    per_video = emb.split([len(frames) for frames in videos])
    return torch.nn.functional.normalize(torch.stack([e.mean(0) for e in per_video]), dim=-1)


class ScoreActor:
    """CLIP (+ the aesthetic head) on one device; scores a batch of samples' keyframes and captions."""

    def __init__(self, clip: str, aesthetic: str | None, device: str, dtype: str, batch_size: int):
        from curation.stages.long_videos import load_clip
        from devices import resolve_device

        self.clip = load_clip(clip, device, dtype, batch_size)
        self.head = AestheticMLP.from_file(aesthetic).to(resolve_device(device)) if aesthetic else None

    @torch.no_grad()
    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["key"])
        aesthetic = np.full(n, np.nan)
        clip_score = np.full(n, np.nan)
        ok = [i for i in range(n) if not batch["error"][i]]
        if ok:
            mean = mean_embeddings(self.clip, [batch["frames"][i] for i in ok])
            text = self.clip.embed_texts([str(batch["caption"][i]) for i in ok]).to(mean.device)
            clip_score[ok] = (mean * text).sum(-1).cpu().numpy()
            if self.head is not None:
                if self.head.dim != mean.shape[1]:
                    raise ValueError(
                        f"the aesthetic head takes {self.head.dim}-d embeddings, CLIP gives {mean.shape[1]}"
                    )
                aesthetic[ok] = self.head(mean.to(next(self.head.parameters()).dtype)).float().cpu().numpy()
        return {"set": batch["set"], "key": batch["key"], "aesthetic": aesthetic, "clip_score": clip_score,
                "error": batch["error"]}  # fmt: skip


def _load_state(path: str, what: str) -> object:
    """A weights file's contents, loaded lazily (``mmap``) and safely (tensors only); ValueError ``path: what``
    for a file torch cannot read as one."""
    try:
        if path.endswith(".safetensors"):
            from safetensors import safe_open

            with safe_open(path, "pt") as f:
                return dict.fromkeys(f.keys())  # the names are what is checked here
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # pickle, zip and safetensors errors alike: the file is not what it claims
        raise ValueError(f"{path}: {what} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from e


def check_clip_spec(spec: str) -> None:
    """FileNotFoundError for a CLIP spec whose local file or folder is not there, ValueError for one that is not
    a CLIP of the kind the spec says (what can be checked without loading the model: folder layout, config,
    parameter names)."""
    if spec == "tiny":
        return
    if spec.startswith("open_clip:local-dir:"):
        path = spec[len("open_clip:local-dir:") :]
        _exists(spec, path)
        _json_object(os.path.join(path, "open_clip_config.json"), spec, "an open_clip folder")
    elif spec.startswith("open_clip:"):
        parts = spec.split(":", 2)
        if len(parts) != 3:
            raise ValueError(f"--clip {spec!r}: expected open_clip:NAME:FILE or open_clip:local-dir:FOLDER")
        path = parts[2]
        if os.path.sep not in path:  # a bare tag (openai) is fetched by open_clip
            return
        _exists(spec, path)
        state = _load_state(path, "not a CLIP checkpoint")
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        if not isinstance(state, dict) or not any(str(k).removeprefix("module.").startswith("visual.") for k in state):
            raise ValueError(f"--clip {spec!r}: {path} is not a CLIP checkpoint (no visual.* weights)")
    else:
        _exists(spec, spec)
        config = _json_object(os.path.join(spec, "config.json"), spec, "a transformers CLIP folder")
        if "clip" not in str(config.get("model_type", "")):
            raise ValueError(f"--clip {spec!r}: not a CLIP (config.json model_type is {config.get('model_type')!r})")


def _exists(spec: str, path: str) -> None:
    if not os.path.exists(path):
        raise FileNotFoundError(f"--clip {spec!r}: {path} does not exist")


def _json_object(path: str, spec: str, what: str) -> dict:
    import json

    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError, RecursionError) as e:
        raise ValueError(f"--clip {spec!r}: not a CLIP: {what} holds a readable {os.path.basename(path)}") from e
    if not isinstance(data, dict):
        raise ValueError(f"--clip {spec!r}: not a CLIP: {path} is not a JSON object")
    return data


def scores(
    sets: list[str],
    clip: str,
    aesthetic: str | None = None,
    device: str = "auto",
    dtype: str = "float16",
    batch_size: int = 64,
    keyframes: int = SPREAD_FRAMES,
    size: int = 224,
) -> dict[str, Any]:
    """Score every sample of ``sets`` on the current Ray cluster and write each set's ``_scores.parquet``."""
    import ray

    from curation.model_pipeline import model_resources
    from curation.partition import RunnerConfig

    check_clip_spec(clip)  # a wrong path is an error now, not a crash in every actor
    if aesthetic:
        AestheticMLP.from_file(aesthetic)
    indexes = finalized_indexes(sets, "scores")
    per_actor, actors = model_resources(RunnerConfig())
    items, missing = indexed_shard_items(sets, indexes, {"aesthetic": np.nan, "clip_score": np.nan})
    rows = (
        ray.data.from_items(items)
        .flat_map(lambda it: read_keyframes(it, keyframes, size))
        .map_batches(
            ScoreActor,
            fn_constructor_kwargs={
                "clip": clip,
                "aesthetic": aesthetic,
                "device": device,
                "dtype": dtype,
                "batch_size": batch_size,
            },
            batch_size=batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_gpus=per_actor,
        )
        .take_all()
    )
    rows += missing
    failed = [f"{r['key']}: {r['error']}" for r in rows if r["error"]]
    settings = {
        "clip": clip,
        "aesthetic": os.path.basename(aesthetic) if aesthetic else "",
        "keyframes": str(keyframes),
    }
    for s in sets:
        mine = [{"key": r["key"], "aesthetic": _num(r["aesthetic"]), "clip_score": _num(r["clip_score"])}
                for r in rows if r["set"] == s and not r["error"]]  # fmt: skip
        write_sidecar(s, SCORES, pa.Table.from_pylist(mine, schema=SCORES_SCHEMA), indexes[s], settings)
    return {"samples": len(rows), "scored": len(rows) - len(failed), "not_scored": failed, "sets": len(sets)}


def _num(x: Any) -> float | None:
    x = float(x)
    return None if np.isnan(x) else x
