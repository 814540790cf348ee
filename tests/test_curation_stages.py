"""The captioned and pseudo-videos stages on their own (no Ray): outputs, bad input, determinism."""

import json
from pathlib import Path

import numpy as np
import pytest

from curation.stages.captioned import CaptionedConfig, CaptionedStage, WatermarkConfig, remove_watermark
from curation.stages.pseudo_videos import PseudoVideoConfig, PseudoVideoStage
from media.video import decode_frames
from tests.curation_inputs import image_corpus, outcome, video_corpus

SMALL_VIDEO = CaptionedConfig(short_side=32)
SMALL_IMAGE = PseudoVideoConfig(short_side=64, min_side=256)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    return video_corpus(tmp_path_factory.mktemp("videos"))


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return image_corpus(tmp_path_factory.mktemp("images"))


def test_every_video_input_is_kept_or_rejected_for_its_reason(videos):
    stage = CaptionedStage(SMALL_VIDEO)
    for r in videos:
        got, _ = outcome(stage, r)
        assert got == r["expect"], (r["id"], got)


def test_captioned_outputs(videos):
    stage = CaptionedStage(SMALL_VIDEO)
    by_id = {r["id"]: r for r in videos}
    (s,) = stage.process(by_id["good"])
    _frames, info = decode_frames(s.mp4)
    assert (info.frames, info.height, info.width) == (32, 32, 42)  # 64x48 -> short side 32
    assert info.fps == pytest.approx(24.0) and s.meta["fps"] == pytest.approx(24.0)
    assert s.key == "webvid-good" and s.caption == "caption of good"
    (v,) = stage.process(by_id["vatex"])
    assert v.meta["captions"] == ["a red square", "a red block moves", "red thing going right"]
    (p,) = stage.process(by_id["portrait"])
    assert (p.meta["width"], p.meta["height"]) == (32, 64)  # 36x80 cropped to 2:1 (36x72), then scaled
    (w,) = stage.process(by_id["wide"])
    assert w.meta["width"] == 2 * w.meta["height"]  # centre-cropped to the 2:1 limit
    (f,) = stage.process(by_id["fast"])
    assert f.meta["fps"] == pytest.approx(120.0) and f.meta["frames"] == 60
    (t,) = stage.process(by_id["trimmed"])
    assert 27 <= t.meta["frames"] <= 30  # 1.2 s of a 24 fps clip
    (u,) = stage.process(by_id["unicode"])
    assert "🚀" in u.caption and json.loads(json.dumps(u.meta))["captions"][0] == u.caption
    (g,) = stage.process(by_id["tgif_one"])
    assert g.meta["frames"] == 32 and g.meta["fps"] == pytest.approx(12.0, rel=0.1)


def test_a_phone_video_stored_rotated_is_curated_upright(tmp_path):
    """Portrait pixels stored as landscape plus a display matrix: the sample is portrait, the square where a
    player shows it."""
    from tests.curation_inputs import row, stored_rotated
    from vidrd.synthetic import moving_square

    upright = moving_square("green", "down", 32, width=48, height=96)
    (tmp_path / "phone.mp4").write_bytes(stored_rotated(upright, -90, fps=24))
    (s,) = CaptionedStage(SMALL_VIDEO).process(row("phone", str(tmp_path / "phone.mp4")))
    frames, info = decode_frames(s.mp4)
    assert (s.meta["width"], s.meta["height"]) == (info.width, info.height) == (32, 64)
    green = frames[..., 1].astype(int) - frames[..., 0]  # the square: far greener than the grey background
    rows = [np.argwhere(g > 60)[:, 0].mean() for g in green[[0, -1]]]
    assert rows[1] > rows[0] + 10  # it moves down the portrait frame, as recorded


def test_captioned_is_deterministic(videos):
    r = videos[0]
    a, b = CaptionedStage(SMALL_VIDEO).process(r)[0], CaptionedStage(SMALL_VIDEO).process(r)[0]
    assert a.mp4 == b.mp4 and a.meta == b.meta and a.caption == b.caption


def test_watermark_modes():
    frames = np.full((2, 40, 60, 3), 200, np.uint8)
    frames[:, 16:24, 20:40] = 0  # a dark "logo" in the middle
    cropped = remove_watermark(frames, WatermarkConfig(mode="crop", keep=(0.0, 0.0, 1.0, 0.5)))
    assert cropped.shape == (2, 20, 60, 3)
    blurred = remove_watermark(frames, WatermarkConfig(mode="blur", radius=4))
    assert blurred[:, 16:24, 20:40].mean() > frames[:, 16:24, 20:40].mean() + 20  # logo edges smeared out
    assert np.array_equal(blurred[:, :5], frames[:, :5])  # outside the box untouched
    with pytest.raises(ValueError, match=r"watermark\.mode"):
        WatermarkConfig(mode="magic")


def test_watermark_applies_only_to_webvid(videos):
    cfg = CaptionedConfig(short_side=32, watermark={"mode": "crop", "keep": (0.0, 0.0, 1.0, 0.5)})
    by_id = {r["id"]: r for r in videos}
    (w,) = CaptionedStage(cfg).process(by_id["good"])
    (v,) = CaptionedStage(cfg).process(by_id["vatex"])
    assert w.meta["watermark"] == "crop" and w.meta["height"] == 16
    assert v.meta["watermark"] == "none" and v.meta["height"] == 32


def test_every_image_input_is_kept_or_rejected_for_its_reason(images):
    stage = PseudoVideoStage(SMALL_IMAGE)
    for r in images:
        got, _ = outcome(stage, r)
        assert got == r["expect"], (r["id"], got)


def test_pseudo_video_outputs(images):
    stage = PseudoVideoStage(SMALL_IMAGE, seed=3)
    by_id = {r["id"]: r for r in images}
    (s,) = stage.process(by_id["rgb"])
    frames, info = decode_frames(s.mp4)
    assert 30 <= info.frames <= 39 and info.fps == pytest.approx(15.0)
    assert (info.width, info.height) == (86, 64)  # 4:3 image, short side 64
    cam = s.meta["camera"]
    assert cam["motion"] in ("zoom_in", "zoom_out", "pan") and cam["frames"] == info.frames
    assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).mean() > 1  # the camera moves
    (r,) = stage.process(by_id["exif_rotated"])
    assert r.meta["source_width"] == 300 and r.meta["source_height"] == 400  # EXIF rotation applied
    (a,) = stage.process(by_id["alpha"])
    assert a.meta["frames"] >= 30


def test_pseudo_videos_are_deterministic_per_seed(images):
    r = images[0]
    a, b = PseudoVideoStage(SMALL_IMAGE, seed=1).process(r)[0], PseudoVideoStage(SMALL_IMAGE, seed=1).process(r)[0]
    c = PseudoVideoStage(SMALL_IMAGE, seed=2).process(r)[0]
    assert json.dumps(a.meta, sort_keys=True) == json.dumps(b.meta, sort_keys=True) and a.caption == b.caption
    assert np.array_equal(decode_frames(a.mp4)[0], decode_frames(b.mp4)[0])
    assert a.meta["camera"] != c.meta["camera"]


def test_yuv_fast_path_matches_the_rgb_path(videos):
    from media.video import decode_resized, encode_mp4, transcode_resized

    for name in ("good", "odd", "fast"):
        r = next(x for x in videos if x["id"] == name)
        data = Path(r["uri"]).read_bytes()
        fast = transcode_resized(data, 32, 2.0, None, None, None, 20, "veryfast", 1)
        assert fast is not None
        frames, src, out = decode_resized(data, 32, 2.0, threads=1)
        slow = encode_mp4(frames, src.fps, 20, "veryfast", 1)
        a, ia = decode_frames(fast[0])
        b, ib = decode_frames(slow)
        assert (
            (ia.frames, ia.width, ia.height) == (ib.frames, ib.width, ib.height) == (out.frames, out.width, out.height)
        )
        assert ia.fps == pytest.approx(ib.fps)
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 6
    wide = next(x for x in videos if x["id"] == "wide")
    assert transcode_resized(Path(wide["uri"]).read_bytes(), 32) is None  # needs a crop: RGB path


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: CaptionedConfig(preset="warp9"), "preset='warp9'.*not accepted by the H.264 encoder"),
        (lambda: CaptionedConfig(max_aspect=0), "max_aspect must be a finite number >= 1"),
        (lambda: CaptionedConfig(crf=99), r"crf must be an integer in \[0, 51\]"),
        (lambda: CaptionedConfig(short_side=15), "short_side must be an even number"),
        (lambda: CaptionedConfig(min_frames=10, max_frames=5), "max_frames must be an integer >= min_frames"),
        (lambda: WatermarkConfig(mode="blur", box=(0.5, 0.5, 1.5, 0.9)), "watermark.box must lie inside the frame"),
        (lambda: WatermarkConfig(mode="crop", keep=(0.5, 0.5, 0.2, 0.9)), "watermark.keep must lie inside"),
        (lambda: PseudoVideoConfig(preset="warp9"), "not accepted by the H.264 encoder"),
        (lambda: PseudoVideoConfig(fps=0), r"fps must be in \(0, 240\]"),
        (lambda: PseudoVideoConfig(fps=8), "min_seconds x fps = 16 frames < min_frames"),
    ],
)
def test_settings_that_cannot_work_are_errors_before_any_input(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_every_stage_shares_one_config_base_and_one_seed_rule():
    from curation.stage import StageBase, sample_seed
    from curation.stages import STAGES
    from curation.video_settings import VideoOutputConfig
    from shards.clips import MIN_CLIP_FRAMES

    # The model stages load only models they are told to (tiny: random test models).
    models = {"short-videos": {"blip2": "tiny"},
              "long-videos": dict.fromkeys(("clip", "minigpt4_blip2", "minigpt4_llm", "minigpt4_checkpoint"), "tiny")}
    seeds = set()
    for name, (cls, cfg_cls) in STAGES.items():
        assert issubclass(cfg_cls, VideoOutputConfig) and issubclass(cls, StageBase)
        cfg = cfg_cls(**models.get(name, {}))
        assert cfg.min_frames == MIN_CLIP_FRAMES  # the trainer's clip span, written once
        stage = cls(cfg, seed=7)
        assert stage.name == name and stage.rng_seed("x") == sample_seed(7, name, "x")
        seeds.add(stage.rng_seed("x"))
    assert len(seeds) == len(STAGES)  # the same input id draws independently in each stage


def test_short_and_long_video_settings_are_checked_too():
    from curation.stages.long_videos import LongVideosConfig
    from curation.stages.short_videos import ShortVideosConfig

    with pytest.raises(ValueError, match=r"not accepted by the H\.264 encoder"):
        ShortVideosConfig(preset="warp9", blip2="tiny")
    with pytest.raises(ValueError, match="max_aspect"):
        LongVideosConfig(max_aspect=0.5)


def test_a_model_stage_loads_no_model_it_was_not_told_to_and_names_them_on_the_driver(capsys):
    """A curation stage never falls back to a random tiny model: each model is named in its settings, and the
    driver prints what will load before any worker starts, a tiny one loudly (on stderr)."""
    from curation.cli import announce_models
    from curation.runner import build_stage
    from curation.stages.long_videos import LongVideosConfig
    from curation.stages.short_videos import ShortVideosConfig

    with pytest.raises(ValueError, match="blip2: name the BLIP-2 captioner"):
        ShortVideosConfig()
    tiny_long = dict(clip="tiny", minigpt4_blip2="tiny", minigpt4_llm="tiny", minigpt4_checkpoint="tiny")
    for missing in tiny_long:
        with pytest.raises(ValueError, match=f"{missing}: name the"):
            LongVideosConfig(**{**tiny_long, missing: ""})
    # A precision name is checked when the settings are read, on any device, not when a worker loads the model.
    with pytest.raises(ValueError, match="dtype must be one of"):
        ShortVideosConfig(blip2="tiny", dtype="float8")
    with pytest.raises(ValueError, match="dtype must be one of"):
        LongVideosConfig(**tiny_long, dtype="half-ish")
    announce_models(build_stage("short-videos", {"blip2": "/w/blip2-opt-2.7b"}, 0))
    announce_models(build_stage("long-videos", tiny_long, 0))
    announce_models(build_stage("captioned", {}, 0))  # no models: nothing to say
    out, err = capsys.readouterr()
    assert out == "short-videos: blip2 = /w/blip2-opt-2.7b\n"
    assert err.count("TINY RANDOM") == 4 and "long-videos: clip = tiny" in err


def test_a_trim_time_that_is_not_a_number_is_its_own_reject(videos):
    from curation.stage import Rejected

    good = {k: v for k, v in next(r for r in videos if r["id"] == "trimmed").items() if k != "expect"}
    assert CaptionedStage().process(good)  # the row itself is fine
    for bad in (float("nan"), float("inf"), -1.0):
        with pytest.raises(Rejected) as e:
            CaptionedStage().process({**good, "start": bad})
        assert e.value.reason.value == "bad_annotation" and "start=" in str(e.value)


def test_an_unknown_storage_protocol_is_one_error_at_start():
    from curation.runner import check_protocols

    check_protocols("m.parquet", ["/local/a.mp4", "file:///b.mp4", "memory://c.mp4", None])
    with pytest.raises(ValueError, match=r"storage protocol .nosuchfs.*nosuchfs://bucket/x\.mp4"):
        check_protocols("m.parquet", ["/local/a.mp4", "nosuchfs://bucket/x.mp4"])
