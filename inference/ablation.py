"""Ablation of the long-video settings (the shape of the paper's figure 6): vary M, alpha and beta one
at a time around a base setting and measure temporal consistency at clip boundaries.

Metrics, on the generated frames (pixels in [0, 1]) and on nothing else:

* ``boundary``: mean absolute change between consecutive frames where the video passes from one clip
  into the next (``LongVideoConfig.seam_steps``: video frames ``v = i (N-1)`` -> ``v + 1`` for the paper's join);
* ``within``: the same change between consecutive frames inside clips;
* ``ratio = boundary / within``: 1 means a seam looks like any other frame step; above 1, a jump;
* with ``--clip DIR`` (a CLIP model folder in transformers layout, e.g. a saved
  ``openai/clip-vit-large-patch14``): ``clip_boundary`` / ``clip_within``, the mean cosine similarity
  of consecutive frames' CLIP image embeddings across seams and inside clips.

    python -m inference.ablation --checkpoint DIR --prompt "a corgi running on the beach" \\
        --vary M=2,4,8 --vary alpha=0,0.5,1,2 --vary beta=0,0.5,1 --out ablation/

writes ``results.json``, ``results.md`` (a table) and ``ablation.png`` (one panel per parameter).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from inference.choices import CLIP_FRAMES, LONG_VIDEO_FRAMES, PAPER_GUIDANCE, PAPER_SIZE, PAPER_STEPS
from inference.long_video import LongVideoConfig
from inference.pipeline import GenerationSettings, VidRDPipeline
from inference.prompts import VideoRequest

PARAMS = {"M": "prompt_frames", "alpha": "alpha", "beta": "beta"}


def boundary_metrics(video: np.ndarray, seams: list[int]) -> dict[str, float]:
    """``video [F, H, W, 3]`` uint8 and its ``seams`` (``LongVideoConfig.seam_steps``) -> boundary / within-clip
    mean absolute frame change and their ratio."""
    x = video.astype(np.float32) / 255.0
    steps = np.abs(np.diff(x, axis=0)).mean(axis=(1, 2, 3))  # steps[v] = change from frame v to v+1
    inside = [v for v in range(len(steps)) if v not in set(seams)]
    boundary = float(steps[seams].mean()) if seams else float("nan")
    within = float(steps[inside].mean()) if inside else float("nan")
    return {"boundary": boundary, "within": within, "ratio": boundary / within if within > 0 else float("nan")}


class ClipFrameScorer:
    """CLIP image embeddings of frames (transformers ``CLIPModel`` + its image processor, local files)."""

    def __init__(self, path: str, device: str = "cpu", batch: int = 64):
        import torch
        from transformers import CLIPImageProcessor, CLIPModel

        self.torch = torch
        self.model = CLIPModel.from_pretrained(path, local_files_only=True).to(device).eval()
        self.proc = CLIPImageProcessor.from_pretrained(path, local_files_only=True)
        self.device, self.batch = device, batch

    def embed(self, video: np.ndarray) -> np.ndarray:
        """``[F, H, W, 3]`` uint8 -> unit-norm ``[F, D]``."""
        out = []
        with self.torch.no_grad():
            for i in range(0, len(video), self.batch):
                px = self.proc(images=list(video[i : i + self.batch]), return_tensors="pt")["pixel_values"]
                e = self.model.get_image_features(pixel_values=px.to(self.device))
                e = e if isinstance(e, self.torch.Tensor) else e.pooler_output
                out.append(self.torch.nn.functional.normalize(e.float(), dim=-1).cpu().numpy())
        return np.concatenate(out)


def clip_metrics(emb: np.ndarray, seams: list[int]) -> dict[str, float]:
    """Mean cosine similarity of consecutive frames across seams and inside clips."""
    sims = (emb[1:] * emb[:-1]).sum(axis=1)
    seams = set(seams)
    inside = [v for v in range(len(sims)) if v not in seams]
    return {
        "clip_boundary": float(sims[sorted(seams)].mean()) if seams else float("nan"),
        "clip_within": float(sims[inside].mean()) if inside else float("nan"),
    }


def run_ablation(
    pipe: VidRDPipeline,
    prompts: list[str],
    base: GenerationSettings,
    vary: dict[str, list[float]],
    clip: ClipFrameScorer | None = None,
) -> list[dict]:
    """One row per (parameter, value): the metrics averaged over the prompts."""
    rows = []
    for name, values in vary.items():
        for value in values:
            v = int(value) if name == "M" else float(value)
            long = replace(base.long, **{PARAMS[name]: v})
            s = replace(base, long=long)
            chunks = [f for _, f in pipe.generate([VideoRequest([p]) for p in prompts], s, progress=False)]
            videos = np.concatenate(chunks, axis=1)
            seams = long.seam_steps(videos.shape[1])
            ms = [boundary_metrics(video, seams) for video in videos]
            if clip is not None:
                ms = [{**m, **clip_metrics(clip.embed(v), seams)} for m, v in zip(ms, videos, strict=True)]
            row = {"param": name, "value": v, **{k: float(np.mean([m[k] for m in ms])) for k in ms[0]}}
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def table(rows: list[dict]) -> str:
    has_clip = any("clip_boundary" in r for r in rows)
    head = "| parameter | value | boundary change | within-clip change | ratio |"
    if has_clip:
        head += " CLIP sim at seams | CLIP sim inside |"
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    for r in rows:
        line = f"| {r['param']} | {r['value']:g} | {r['boundary']:.4f} | {r['within']:.4f} | {r['ratio']:.3f} |"
        if has_clip:
            line += f" {r['clip_boundary']:.4f} | {r['clip_within']:.4f} |"
        lines.append(line)
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["param"] for r in rows))
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.2), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        rs = [r for r in rows if r["param"] == name]
        ax.plot([r["value"] for r in rs], [r["ratio"] for r in rs], "o-", label="boundary / within")
        ax.axhline(1.0, color="grey", lw=0.8, ls="--")
        ax.set_xlabel(name)
        ax.set_ylabel("frame change ratio at seams")
        ax.set_title(f"vary {name}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_vary(items: list[str]) -> dict[str, list[float]]:
    out = {}
    for item in items:
        name, _, vals = item.partition("=")
        if name not in PARAMS or not vals:
            raise ValueError(f"--vary {item!r}: expected M=..., alpha=... or beta=... with comma-separated values")
        out[name] = [float(v) for v in vals.split(",")]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--prompt", action="append", required=True, help="repeat for several prompts")
    ap.add_argument("--vary", action="append", default=[], help="M=2,4,8 | alpha=0,1,2 | beta=0,0.5,1")
    ap.add_argument("--frames", type=int, default=LONG_VIDEO_FRAMES)
    ap.add_argument("--clip-frames", type=int, default=CLIP_FRAMES)
    ap.add_argument("--prompt-frames", type=int, default=8)
    ap.add_argument("--alpha", type=float, default=1.0)
    ap.add_argument("--beta", type=float, default=1.0)
    ap.add_argument("--steps", type=int, default=PAPER_STEPS)
    ap.add_argument("--guidance", type=float, default=PAPER_GUIDANCE)
    ap.add_argument("--size", type=int, default=PAPER_SIZE)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--clip", help="CLIP model folder (transformers layout) for CLIP frame similarity")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    try:
        vary = parse_vary(args.vary or ["M=2,4,8", "alpha=0,0.5,1,2", "beta=0,0.5,1"])
        long = LongVideoConfig(args.clip_frames, args.prompt_frames, args.alpha, args.beta)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    base = GenerationSettings(
        frames=args.frames, steps=args.steps, guidance=args.guidance, seed=args.seed, height=args.size,
        width=args.size, long=long,
    )  # fmt: skip
    pipe = VidRDPipeline.from_checkpoint(args.checkpoint, args.device)
    clip = ClipFrameScorer(args.clip, args.device) if args.clip else None
    rows = run_ablation(pipe, args.prompt, base, vary, clip)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"base": repr(base), "rows": rows}, indent=2))
    (out / "results.md").write_text(table(rows) + "\n")
    plot(rows, out / "ablation.png")
    print(table(rows))
    print(f"written: {out / 'results.json'}, {out / 'results.md'}, {out / 'ablation.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
