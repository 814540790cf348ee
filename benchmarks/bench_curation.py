"""CPU throughput of the curation stages per core, beside the raw H.264 encode limit on the same frames.

One process, one core (the stages run one Ray task per core, so per-core figures scale with cores):

* ``pseudo-videos``: LAION-like 640x480 JPEGs -> zoom/pan videos (short side 256, 15 fps, ~2.3 s);
* ``captioned``: WebVid-like 640x360 30 fps 4 s H.264 clips -> decode, resize (short side 256), re-encode;
* limit: libx264 (through PyAV, the same encoder FFmpeg uses, same preset and crf) encoding exactly the
  frames each stage produced, with nothing else, in the same run; for ``captioned`` also the bare
  transcode (decode + swscale + libx264, what ``ffmpeg -vf scale`` does), since decoding the input is
  work the encode-only limit leaves out;
* ``captioned signals``: the captioned stage on the same files with shot cuts and motion computed (the default)
  and with ``signals: false``: the extra cost per video of the cut and motion signals.

    python -m benchmarks.bench_curation [--n 12]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmarks.common import once, write_results
from curation.stages.captioned import CaptionedConfig, CaptionedStage
from curation.stages.pseudo_videos import PseudoVideoConfig, PseudoVideoStage
from media.video import decode_frames, encode_mp4
from vidrd.synthetic import moving_square


def textured(seed: int, w: int, h: int) -> np.ndarray:
    """A photo-like image: smooth gradients plus detail, so the encoder has real work."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(w, h)
    base = np.stack([np.sin(6 * xx + seed), np.cos(5 * yy - seed), np.sin(4 * (xx + yy))], -1) * 80 + 128
    return np.clip(base + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)


def transcode(path: str, w: int, h: int, cfg: CaptionedConfig) -> bytes:
    """The bare FFmpeg transcode: decode, swscale to the output size in YUV, libx264; nothing else."""
    import av
    from av.video.reformatter import VideoReformatter

    buf = io.BytesIO()
    with av.open(path) as src, av.open(buf, mode="w", format="mp4") as dst:
        ist = src.streams.video[0]
        ist.codec_context.thread_count = cfg.threads
        ost = dst.add_stream("libx264", rate=ist.average_rate)
        ost.width, ost.height, ost.pix_fmt = w, h, "yuv420p"
        ost.options = {"crf": str(cfg.crf), "preset": cfg.preset}
        ost.codec_context.thread_count = cfg.threads
        scale = VideoReformatter()  # one swscale context for the file, as ffmpeg's scale filter keeps
        for frame in src.decode(ist):
            for pkt in ost.encode(scale.reformat(frame, width=w, height=h, format="yuv420p", interpolation="BILINEAR")):
                dst.mux(pkt)
        for pkt in ost.encode():
            dst.mux(pkt)
    return buf.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=12, help="inputs per stage")
    ap.add_argument("--json")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    d = Path(tempfile.mkdtemp())
    rows = []

    # pseudo-videos
    images = []
    for i in range(args.n):
        p = d / f"img{i}.jpg"
        Image.fromarray(textured(i, 640, 480)).save(p, quality=90)
        images.append({"id": f"i{i}", "uri": str(p), "source": "laion", "captions": ["a photo"]})
    stage = PseudoVideoStage(PseudoVideoConfig())
    outs = []
    stage_s = once(lambda: outs.extend(stage.process(r)[0] for r in images))
    frames = [decode_frames(o.mp4)[0] for o in outs]
    cfg = stage.cfg
    enc_s = once(lambda: [encode_mp4(f, cfg.fps, cfg.crf, cfg.preset, cfg.threads) for f in frames])
    rows.append(dict(stage="pseudo-videos", inputs=args.n, frames=int(sum(len(f) for f in frames)),
                     stage_per_s=round(args.n / stage_s, 2), encode_only_per_s=round(args.n / enc_s, 2),
                     ratio=round(stage_s / enc_s, 2)))  # fmt: skip

    # captioned
    videos = []
    for i in range(args.n):
        clip = moving_square("red", "right", frames=120, width=640, height=360, seed=i)
        clip = np.clip(clip.astype(int) + textured(i, 640, 360)[None] // 4 - 32, 0, 255).astype(np.uint8)
        p = d / f"v{i}.mp4"
        p.write_bytes(encode_mp4(clip, 30.0, crf=23, preset="medium"))
        videos.append({"id": f"v{i}", "uri": str(p), "source": "webvid", "captions": ["a clip"], "duration": 4.0})
    stage2 = CaptionedStage(CaptionedConfig())
    outs = []
    stage_s = once(lambda: outs.extend(stage2.process(r)[0] for r in videos))
    frames = [decode_frames(o.mp4)[0] for o in outs]
    c2 = stage2.cfg
    enc_s = once(lambda: [encode_mp4(f, 30.0, c2.crf, c2.preset, c2.threads) for f in frames])
    tr_s = once(lambda: [transcode(r["uri"], frames[0].shape[2], frames[0].shape[1], c2) for r in videos])
    rows.append(dict(stage="captioned", inputs=args.n, frames=int(sum(len(f) for f in frames)),
                     stage_per_s=round(args.n / stage_s, 2), encode_only_per_s=round(args.n / enc_s, 2),
                     ratio=round(stage_s / enc_s, 2), transcode_only_per_s=round(args.n / tr_s, 2),
                     ratio_to_transcode=round(stage_s / tr_s, 2)))  # fmt: skip
    # shot cuts + motion: the same stage and files with the signals off
    # (best of 3 each, alternating, so both see the same machine state)
    plain = CaptionedStage(CaptionedConfig(cuts="keep", signals=False))
    on_s, off_s = [], []
    for _ in range(3):
        on_s.append(once(lambda: [stage2.process(r) for r in videos]))
        off_s.append(once(lambda: [plain.process(r) for r in videos]))
    on, off = min(on_s), min(off_s)
    rows.append(dict(stage="captioned signals (cuts + motion)", inputs=args.n, with_per_s=round(args.n / on, 2),
                     without_per_s=round(args.n / off, 2), extra_ms_per_video=round(1000 * (on - off) / args.n, 1),
                     extra_share=round(on / off - 1, 3)))  # fmt: skip
    for r in rows:
        print(json.dumps(r))
    write_results(args.json, rows, cores_used=1,
                  note="decoder, libx264 and OpenCV at 1 thread in the stages and in the limit")  # fmt: skip


if __name__ == "__main__":
    main()
