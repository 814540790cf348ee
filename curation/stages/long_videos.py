"""Stage ``long-videos``: VideoLT long videos -> relevant segments captioned by MiniGPT-4 (paper 4.2).

Per video (CPU): the class label is required; one frame is sampled every ``sample_every`` seconds
(short side ``frame_side``; past ``max_samples`` samples the interval doubles, covering the whole video).

On the model actor, over all frames of a batch of videos at once:

1. CLIP scores each frame against the label (cosine similarity);
2. MiniGPT-4 is asked "Is this picture related to {label}?" for each frame that passed CLIP (all
   frames with ``ask_all``), read as P(yes) from one forward pass;
3. a frame is kept when its CLIP score >= ``clip_threshold`` and P(yes) >= ``relevance_threshold``;
   runs of kept frames become segments (:func:`curation.segments.segments`): shorter than
   ``min_segment_seconds`` dropped, longer than ``max_segment_seconds`` cut into equal pieces;
4. each segment is captioned by MiniGPT-4 from its middle frame with one of
   :data:`curation.captioning.MINIGPT4_TEMPLATES` (seeded, recorded); an unusable answer falls back to
   ``"a video of {label}"`` as in ``short-videos``.

Then (CPU) each segment is cut from the source video and re-encoded; with ``cuts: split`` a segment that spans
shot cuts becomes one sample per shot (keys ``...-sNNNN-pNNN``) sharing the segment's caption, ``caption_in_shot``
saying whether its caption frame lies in that shot. Every segment's ``.json`` holds
the whole video's timeline (frame times, CLIP scores, P(yes), decisions, all segments) so a
segmentation can be audited; ``vidrd shards show`` draws it. A video with no segment is a
``no_segment`` reject whose message gives the counts.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from curation.captioning import MINIGPT4_TEMPLATES, RELEVANCE_QUESTION, caption_or_fallback
from curation.inputs import label_of, read_video_input
from curation.model_stage import ModelStage, require_model
from curation.segments import segments
from curation.stage import Rejected
from curation.video_prep import resize_video
from curation.video_settings import VideoOutputConfig
from devices import dtype_name, model_dtype, resolve_device
from manifests.keys import make_key
from manifests.schema import RejectReason
from media.video import VideoDecodeError, decode_sampled
from shards.writer import Sample

logger = logging.getLogger(__name__)


@dataclass
class LongVideosConfig(VideoOutputConfig):
    """Settings of the ``long-videos`` stage.

    Models, each to be named (``tiny``: a random tiny model for tests and the demo, whose decisions are noise):

    * ``clip``: ``open_clip:MODEL:PRETRAINED`` (e.g. ``open_clip:ViT-L-14:/w/open_clip_pytorch_model.bin``),
      ``open_clip:local-dir:FOLDER`` (open_clip's folder layout: ``open_clip_config.json`` + weights)
      or a transformers CLIPModel folder (e.g. a copy of openai/clip-vit-large-patch14);
    * ``minigpt4_blip2`` / ``minigpt4_llm`` / ``minigpt4_checkpoint``: a transformers BLIP-2 folder
      (Salesforce/blip2-flan-t5-xxl), a Vicuna-7B folder and MiniGPT-4's ``pretrained_minigpt4_7b.pth``.
    """

    clip: str = ""
    minigpt4_blip2: str = ""
    minigpt4_llm: str = ""
    minigpt4_checkpoint: str = ""
    device: str = "auto"
    dtype: str = "float16"
    sample_every: float = 1.0
    max_samples: int = 3600
    frame_side: int = 224
    clip_threshold: float = 0.2
    relevance_threshold: float = 0.5
    ask_all: bool = False
    min_segment_seconds: float = 2.0
    max_segment_seconds: float = 20.0
    clip_batch_size: int = 256
    llm_batch_size: int = 16
    max_new_tokens: int = 40

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.sample_every <= 0:
            raise ValueError(f"sample_every must be > 0 seconds, got {self.sample_every}")
        if self.min_segment_seconds <= 0 or self.max_segment_seconds < 2 * self.min_segment_seconds:
            raise ValueError(
                "need 0 < min_segment_seconds and max_segment_seconds >= 2 x min_segment_seconds "
                f"(so cut pieces are never too short), got {self.min_segment_seconds}, {self.max_segment_seconds}"
            )
        if self.clip_batch_size < 1 or self.llm_batch_size < 1:
            raise ValueError("batch sizes must be >= 1")
        require_model("clip", self.clip, "CLIP model (open_clip:..., or a transformers folder)")
        require_model("minigpt4_blip2", self.minigpt4_blip2, "MiniGPT-4 vision part (a BLIP-2 folder)")
        require_model("minigpt4_llm", self.minigpt4_llm, "MiniGPT-4 language model (a Vicuna folder)")
        require_model("minigpt4_checkpoint", self.minigpt4_checkpoint, "MiniGPT-4 checkpoint (.pth)")
        dtype_name(self.dtype)  # a bad name is refused now, not when a worker loads the model
        tiny = [m == "tiny" for m in (self.minigpt4_blip2, self.minigpt4_llm, self.minigpt4_checkpoint)]
        if any(tiny) and not all(tiny):
            raise ValueError("minigpt4_blip2, minigpt4_llm and minigpt4_checkpoint are all 'tiny' or all paths")


@dataclass
class LongVideo:
    """What ``prepare`` hands on: the sampled frames of one video and facts about it."""

    frames: np.ndarray
    times: np.ndarray
    duration: float
    label: str
    seed: int
    source: dict[str, Any]


def load_clip(spec: str, device: str, dtype: str, batch_size: int):
    """A :class:`~curation.models.clip.ClipScorer` from ``open_clip:NAME:PRETRAINED``, ``open_clip:local-dir:FOLDER``,
    a transformers CLIP folder or ``tiny``."""
    from curation.models.clip import ClipScorer
    from curation.models.tiny import tiny_clip

    dev = resolve_device(device)
    dt = model_dtype(dtype, dev)
    if spec == "tiny":
        logger.warning("long-videos: CLIP is a TINY RANDOM model; set stage.clip to open_clip:ViT-L-14:<file> for "
                       "real scores")  # fmt: skip
        scorer = ClipScorer.from_transformers(str(tiny_clip(tempfile.mkdtemp(prefix="vidrd-clip-"))), dev, dt)
        scorer.name = "tiny-clip-random"
    elif spec.startswith("open_clip:local-dir:"):
        scorer = ClipScorer.from_open_clip(spec[len("open_clip:") :], None, dev, dt)
    elif spec.startswith("open_clip:"):
        _, name, pretrained = spec.split(":", 2)
        scorer = ClipScorer.from_open_clip(name, pretrained, dev, dt)
    else:
        scorer = ClipScorer.from_transformers(spec, dev, dt)
    scorer.batch_size = batch_size
    return scorer


def load_minigpt4(cfg: LongVideosConfig):
    """:class:`~curation.models.minigpt4.MiniGPT4` from the three configured pieces (or tiny random ones)."""
    from curation.models.minigpt4 import MiniGPT4
    from curation.models.tiny import tiny_minigpt4

    dev = resolve_device(cfg.device)
    paths = {"blip2": cfg.minigpt4_blip2, "llm": cfg.minigpt4_llm, "checkpoint": cfg.minigpt4_checkpoint}
    if cfg.minigpt4_llm == "tiny":
        logger.warning("long-videos: MiniGPT-4 is a TINY RANDOM model; see README 'Weights' for the real pieces")
        paths = {k: str(v) for k, v in tiny_minigpt4(tempfile.mkdtemp(prefix="vidrd-minigpt4-")).items()}
    m = MiniGPT4.from_pretrained(**paths, device=dev, dtype=model_dtype(cfg.dtype, dev),
                                 max_new_tokens=cfg.max_new_tokens, batch_size=cfg.llm_batch_size)  # fmt: skip
    if cfg.minigpt4_llm == "tiny":
        m.name = "tiny-minigpt4-random"
    return m


class LongVideosStage(ModelStage):
    """Segment long labelled videos by CLIP + MiniGPT-4 relevance and caption each segment."""

    name = "long-videos"
    config_class = LongVideosConfig
    cfg: LongVideosConfig

    def model_specs(self) -> dict[str, str]:
        c = self.cfg
        return {"clip": c.clip, "minigpt4_blip2": c.minigpt4_blip2, "minigpt4_llm": c.minigpt4_llm,
                "minigpt4_checkpoint": c.minigpt4_checkpoint}  # fmt: skip

    def prepare(self, row: dict[str, Any]) -> LongVideo:
        cfg, rid = self.cfg, row["id"]
        label = label_of(row, "long-videos scores frames against it")
        data = read_video_input(row["uri"])
        try:
            frames, times, info = decode_sampled(data, cfg.sample_every, cfg.frame_side, cfg.max_samples, cfg.threads)
        except VideoDecodeError as e:
            raise Rejected(RejectReason.UNDECODABLE, f"{row['uri']}: {e}") from e
        if not info.fps:
            raise Rejected(RejectReason.UNDECODABLE, f"{row['uri']}: no frame rate")
        if info.duration < cfg.min_segment_seconds:
            raise Rejected(
                RejectReason.TOO_SHORT, f"{info.duration:.2f} s < min_segment_seconds {cfg.min_segment_seconds}"
            )
        source = {"fps": info.fps, "frames": info.frames, "width": info.width, "height": info.height}
        return LongVideo(frames, times, info.duration, label, self.rng_seed(rid), source)

    def load_models(self):
        c = self.cfg
        return load_clip(c.clip, c.device, c.dtype, c.clip_batch_size), load_minigpt4(c)

    def infer(self, models, items: Sequence[tuple[dict[str, Any], LongVideo]]) -> list[dict[str, Any]]:
        clip, mgpt = models
        cfg = self.cfg
        videos = [v for _, v in items]
        flat = [(vi, fi) for vi, v in enumerate(videos) for fi in range(len(v.frames))]
        frame = [videos[vi].frames[fi] for vi, fi in flat]
        scores = clip.score(frame, [videos[vi].label for vi, _ in flat])
        ask = [k for k, s in enumerate(scores) if cfg.ask_all or s >= cfg.clip_threshold]
        p_yes = np.full(len(flat), np.nan, dtype=np.float32)
        if ask:
            questions = [RELEVANCE_QUESTION.format(label=videos[flat[k][0]].label) for k in ask]
            p_yes[ask] = mgpt.p_yes([frame[k] for k in ask], questions)
        results, jobs = [], []
        offset = 0
        for vi, v in enumerate(videos):
            n = len(v.frames)
            s, p = scores[offset : offset + n], p_yes[offset : offset + n]
            offset += n
            keep = (s >= cfg.clip_threshold) & (np.nan_to_num(p, nan=0.0) >= cfg.relevance_threshold)
            segs = segments(v.times.tolist(), keep.tolist(), v.duration, cfg.min_segment_seconds,
                            cfg.max_segment_seconds)  # fmt: skip
            rng = np.random.default_rng(v.seed)
            for seg in segs:
                seg["frame"] = (int(seg["first"]) + int(seg["last"])) // 2
                seg["template_id"] = int(rng.integers(len(MINIGPT4_TEMPLATES)))
                seg["prompt"] = MINIGPT4_TEMPLATES[seg["template_id"]].format(label=v.label)
                jobs.append((vi, seg))
            results.append({
                "times": v.times.tolist(), "clip_score": s.tolist(),
                "p_yes": [None if np.isnan(x) else float(x) for x in p], "keep": keep.tolist(), "segments": segs,
                "clip_model": clip.name, "minigpt4_model": mgpt.name,
            })  # fmt: skip
        if jobs:
            answers = mgpt.ask(
                [videos[vi].frames[seg["frame"]] for vi, seg in jobs], [seg["prompt"] for _, seg in jobs]
            )
            for (_, seg), a in zip(jobs, answers, strict=True):
                seg["answer"] = a
        return results

    def finish(self, row: dict[str, Any], prepared: LongVideo, result: dict[str, Any]) -> list[Sample]:
        cfg, rid = self.cfg, row["id"]
        segs = result["segments"]
        if not segs:
            kept = int(sum(result["keep"]))
            raise Rejected(
                RejectReason.NO_SEGMENT,
                f"{kept} of {len(result['keep'])} sampled frames kept (clip >= {cfg.clip_threshold}, "
                f"P(yes) >= {cfg.relevance_threshold}); no run of {cfg.min_segment_seconds:g} s or more",
            )
        # Read again rather than carried from prepare: a long video's bytes would otherwise travel through
        # the object store and the model actor for nothing.
        data = read_video_input(row["uri"])
        timeline = {k: result[k] for k in ("times", "clip_score", "p_yes", "keep")}
        timeline["segments"] = [{"start": s["start"], "end": s["end"]} for s in segs]
        samples: list[Sample] = []
        dropped = 0
        left_out: list[Rejected] = []  # segments with a cut (cuts: drop) or too little motion
        for k, seg in enumerate(segs):
            video = resize_video(data, f"{row['uri']}: segment {k}", cfg, seg["start"], seg["end"], None)
            if video.out.frames < cfg.min_frames:
                dropped += 1  # counted in the run summary; the video's other segments still count
                continue
            try:
                clips, piece_events = video.clips(cfg, (seg["start"], seg["end"]))
            except Rejected as e:
                left_out.append(e)
                continue
            caption, fallback = caption_or_fallback(seg["answer"], seg["prompt"], prepared.label)
            said_at = result["times"][seg["frame"]]
            meta = self.base_meta(row, **{
                "label": row.get("label"), "captions": [caption], "fps": video.src.fps, "segment": k,
                "source_frames": prepared.source["frames"], "source_width": prepared.source["width"],
                "source_height": prepared.source["height"],
                "clip_model": result["clip_model"], "caption_model": result["minigpt4_model"],
                "caption_frame_time": said_at, "template_id": seg["template_id"],
                "prompt": seg["prompt"], "raw_answer": seg["answer"], "caption_fallback": fallback,
                "clip_threshold": cfg.clip_threshold, "relevance_threshold": cfg.relevance_threshold,
                "timeline": timeline,
            })  # fmt: skip
            events = tuple(piece_events) + ((f"caption_fallback:{fallback}",) if fallback else ())
            for j, c in enumerate(clips):
                piece_meta = {**meta, **c.meta()}
                if not c.whole:  # a shot of the segment: the segment's caption, said of a frame maybe in another shot
                    piece_meta["caption_in_shot"] = bool(c.start <= said_at < c.end)
                key = make_key(row["source"], rid, segment=k, piece=None if c.whole else c.piece.shot)
                samples.append(Sample(key, c.mp4, caption, piece_meta, events if j == 0 else ()))
        if not samples:
            if left_out:  # the last segment's own reason (has_cut or static) names why nothing is left
                why = left_out[-1]
                raise Rejected(why.reason, f"no segment kept ({dropped} too short, {len(left_out)} left out: {why})")
            raise Rejected(RejectReason.NO_SEGMENT, f"all {len(segs)} segments under {cfg.min_frames} frames")
        samples[0].events += ("segment_dropped:too_few_frames",) * dropped
        samples[0].events += tuple(f"segment_dropped:{e.reason.value}" for e in left_out)
        return samples
