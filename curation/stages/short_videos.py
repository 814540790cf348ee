"""Stage ``short-videos``: Kinetics-700 and Moments-in-Time clips captioned by BLIP-2 (paper 4.2).

Per clip (CPU): the class label is required (a row without one is a ``no_label`` reject); the video
is resized so its short side is ``short_side`` and re-encoded as in ``captioned``; one frame is picked
at random (seeded by the run seed and the clip id) and one of the prompt templates
(:data:`curation.captioning.BLIP2_TEMPLATES`, label filled in) is picked the same way.

With ``cuts: split`` each shot of the clip (``curation.signals``) becomes its own sample (key ``...-sNNNN``) with
its own frame and template, drawn the same way from the run seed, the clip id and the shot number.

On the model actor: BLIP-2 answers every (frame, prompt) of a batch of partitions, batched.

The answer becomes the caption unless it is unusable (empty, repeats the prompt, only the label,
repetitive): then the documented fallback ``"a video of {label}"`` is used, the reason is stored in
``.json`` and the run summary counts it (``caption_fallback:<reason>``). ``.json`` also records the
frame index, template id and text, model name and the raw answer, so every caption can be traced.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from curation.captioning import BLIP2_TEMPLATES, caption_or_fallback, pick_template
from curation.inputs import label_of, read_video_input, trim_of
from curation.model_stage import TINY_SPECS, ModelStage, require_model
from curation.stage import Rejected
from curation.video_prep import resize_video
from curation.video_settings import VideoOutputConfig
from devices import dtype_name, model_dtype, resolve_device
from manifests.keys import make_key
from manifests.schema import RejectReason
from media.video import VideoDecodeError, decode_frames
from shards.writer import Sample

logger = logging.getLogger(__name__)


@dataclass
class ShortVideosConfig(VideoOutputConfig):
    """Settings of the ``short-videos`` stage.

    ``blip2``: a local folder of a transformers BLIP-2 checkpoint (Salesforce/blip2-opt-2.7b or
    blip2-flan-t5-xl), a hub id where there is network, ``tiny`` / ``tiny-t5`` (random tiny models
    for tests and the demo; their captions are noise), or ``lavis:NAME:TYPE`` (e.g.
    ``lavis:blip2_opt:pretrain_opt2.7b``): BLIP-2 through LAVIS in its own environment (``vidrd env lavis``;
    ``curation.models.lavis_blip2``; ``lavis:tiny:DIR`` is a tiny one made by ``lavis_side.py tiny``).
    """

    blip2: str = ""
    device: str = "auto"
    dtype: str = "float16"
    batch_size: int = 32
    max_new_tokens: int = 30
    max_frames: int = 1200

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        require_model("blip2", self.blip2, "BLIP-2 captioner (a folder, hub id or lavis:NAME:TYPE)")
        dtype_name(self.dtype)  # a bad name is refused now, not when a worker loads the model
        if self.blip2.startswith("lavis:"):
            from curation.models.lavis_env import LavisEnvError, python

            if self.blip2.count(":") < 2:
                raise ValueError(f"blip2: {self.blip2!r}: expected lavis:NAME:TYPE (lavis:blip2_opt:pretrain_opt2.7b)")
            try:
                python(check=False)  # missing: an error now, naming the command that makes it
            except LavisEnvError as e:
                raise ValueError(f"blip2: {e}") from e
        super().__post_init__()


@dataclass
class ShortClip:
    """One sample to be: what ``prepare`` hands to the model actor and to ``finish`` (a list, one per shot)."""

    key: str
    mp4: bytes
    frame: np.ndarray
    frame_index: int
    template_id: int
    prompt: str
    label: str
    meta: dict[str, Any]
    events: tuple[str, ...] = ()


def load_blip2(spec: str, device: str, dtype: str, batch_size: int, max_new_tokens: int):
    """A :class:`~curation.models.blip2.Blip2Captioner` from a folder, hub id or ``tiny``/``tiny-t5``."""
    from curation.models.blip2 import Blip2Captioner
    from curation.models.tiny import tiny_blip2

    device = resolve_device(device)
    if spec.startswith("lavis:"):
        from curation.models.lavis_blip2 import LavisBlip2

        return LavisBlip2(spec[len("lavis:") :], device, max_new_tokens, batch_size)
    if spec in TINY_SPECS:
        folder = tiny_blip2(tempfile.mkdtemp(prefix="vidrd-blip2-"), "t5" if spec == "tiny-t5" else "opt")
        logger.warning("short-videos: BLIP-2 is a TINY RANDOM model (%s); captions are noise. Set stage.blip2 to a "
                       "Salesforce/blip2-opt-2.7b folder for real captions.", spec)  # fmt: skip
        cap = Blip2Captioner.from_pretrained(str(folder), device=device, dtype=model_dtype(dtype, device))
        cap.name = f"{spec}-random"
    else:
        cap = Blip2Captioner.from_pretrained(spec, device=device, dtype=model_dtype(dtype, device))
    cap.batch_size, cap.max_new_tokens = batch_size, max_new_tokens
    return cap


class ShortVideosStage(ModelStage):
    """Label-conditioned BLIP-2 captions for short labelled clips."""

    name = "short-videos"
    config_class = ShortVideosConfig
    cfg: ShortVideosConfig

    def model_specs(self) -> dict[str, str]:
        return {"blip2": self.cfg.blip2}

    def prepare(self, row: dict[str, Any]) -> list[ShortClip]:
        cfg, rid = self.cfg, row["id"]
        label = label_of(row, "short-videos captions from the label")
        start, end = trim_of(row)
        video = resize_video(read_video_input(row["uri"]), row["uri"], cfg, start, end, cfg.max_frames)
        video.require_frames(cfg.min_frames)
        clips, events = video.clips(cfg, (row.get("start"), row.get("end")))
        meta = self.base_meta(row, label=row.get("label"), **video.source_meta())
        out_clips = []
        seed = self.rng_seed(rid)
        for k, c in enumerate(clips):
            # Kept whole, the draw is the one this stage always made for the clip; each shot of a split video
            # draws its own frame and template (BLIP-2 captions what that shot shows).
            rng = np.random.default_rng(seed if c.whole else [seed, c.piece.shot])
            index = int(rng.integers(c.frames))
            template_id = pick_template(rng)
            try:  # the frame BLIP-2 sees is the frame of the clip we ship
                frame = decode_frames(c.mp4, [index])[0][0]
            except VideoDecodeError as e:
                raise Rejected(RejectReason.ENCODE_FAILED, f"re-encoded clip does not decode: {e}") from e
            key = make_key(row["source"], rid) if c.whole else make_key(row["source"], rid, segment=c.piece.shot)
            prompt = BLIP2_TEMPLATES[template_id].format(label=label)
            out_clips.append(ShortClip(key, c.mp4, frame, index, template_id, prompt, label, {**meta, **c.meta()},
                                       tuple(events) if k == 0 else ()))  # fmt: skip
        return out_clips

    def load_models(self):
        c = self.cfg
        return load_blip2(c.blip2, c.device, c.dtype, c.batch_size, c.max_new_tokens)

    def infer(self, models, items: Sequence[tuple[dict[str, Any], list[ShortClip]]]) -> list[list[dict[str, Any]]]:
        flat = [c for _, clips in items for c in clips]  # one BLIP-2 batch over every shot of every video
        answers = iter(models.caption([c.frame for c in flat], [c.prompt for c in flat]))
        return [[{"answer": next(answers), "model": models.name} for _ in clips] for _, clips in items]

    def finish(self, row: dict[str, Any], prepared: list[ShortClip], result: list[dict[str, Any]]) -> list[Sample]:
        samples = []
        for p, r in zip(prepared, result, strict=True):
            caption, fallback = caption_or_fallback(r["answer"], p.prompt, p.label)
            meta = {
                **p.meta, "captions": [caption], "caption_model": r["model"], "frame_index": p.frame_index,
                "template_id": p.template_id, "prompt": p.prompt, "raw_answer": r["answer"],
                "caption_fallback": fallback,
            }  # fmt: skip
            events = p.events + ((f"caption_fallback:{fallback}",) if fallback else ())
            samples.append(Sample(p.key, p.mp4, caption, meta, events))
        return samples
